"""The tables claim only what their statistics support: bold only for a paired win over every
other cell of the row, 95% t intervals that match scipy's, departures from the protocol named;
and the experiment definitions' per-grid ``set``, ``baseline`` and ``pairs``."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats

from xsam.experiments import ExperimentError, load_experiment
from xsam.tables.collect import RunRecord
from xsam.tables.documents import to_markdown
from xsam.tables.paired import PairedRow, t_interval
from xsam.tables.render import MARKDOWN, Provenance, baseline_table, grid, pairs_table
from xsam.tables.table import build_table

DEFINITION = """\
description: significance fixture
seeds: [0, 1, 2, 3]
fixed: {{dataset: digits}}
axes:
  - {{optimizer: [sgd], optimizer.steps: [0]}}
  - {{optimizer: [sam, xsam], optimizer.steps: [1], set: {{optimizer.rho: 0.2}}}}
rows: []
columns: [optimizer, optimizer.steps]
metric: test/acc
baseline: sgd/0
pairs: [[xsam/1, sam/1]]
{extra}"""
PROVENANCE = Provenance("python scripts/aggregate.py sig", "sig.yaml", ("fixture",))


def definition(tmp_path: Path, extra: str = ""):
    path = tmp_path / "sig.yaml"
    path.write_text(DEFINITION.format(extra=extra))
    return load_experiment(path)


def run(optimizer: str, seed: int, acc: float, rho: float | None = 0.2, lr: float = 0.05):
    steps = 0 if optimizer == "sgd" else 1
    optim = {"steps": steps} | ({} if optimizer == "sgd" else {"rho": rho})
    return RunRecord(
        run_id=f"{optimizer}-{seed}-{acc}",
        source=f"runs/sig/{optimizer}-s{seed}",
        finished=True,
        choices={"dataset": "digits", "optimizer": optimizer},
        config={"seed": seed, "lr": lr, "optimizer": optim},
        seed=seed,
        commit="c" * 40,
        dirty=False,
        started=f"2026-01-01T00:0{seed}",
        final={"test/acc": acc},
    )


def table_of(exp, accs: dict[str, list[float]], **kwargs):
    records = [run(opt, s, a) for opt, values in accs.items() for s, a in enumerate(values)]
    return build_table(exp, records, **kwargs)


def bold_cells(table) -> list[str]:
    header, body = grid(table, MARKDOWN)
    return [h for h, text in zip(header[1:], body[0][1:], strict=True) if text.startswith("**")]


def test_t_interval_is_scipys_paired_interval():
    a, b = [91.0, 92.5, 90.0, 93.0], [90.0, 92.0, 90.5, 91.0]
    low, high = t_interval(tuple(x - y for x, y in zip(a, b, strict=True)))
    expected = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert low == pytest.approx(expected.low) and high == pytest.approx(expected.high)
    assert all(v != v for v in t_interval((1.0,)))  # nan for one seed


def test_a_difference_inside_the_noise_is_not_bold(tmp_path):
    # xsam is ahead of sam on average (+0.25) but the paired differences change sign
    table = table_of(
        definition(tmp_path),
        {"sgd": [80, 81, 80, 81], "sam": [90, 91, 90, 91], "xsam": [91, 90.5, 91, 90.5]},
    )
    assert bold_cells(table) == []
    assert "no cell is bold: in no row does one cell beat all the others." in to_markdown(
        table, PROVENANCE
    )


def test_a_clear_win_over_every_cell_is_bold(tmp_path):
    table = table_of(
        definition(tmp_path),
        {"sgd": [80, 81, 80, 81], "sam": [90, 91, 90, 91], "xsam": [91, 92.1, 90.9, 92]},
    )
    assert bold_cells(table) == ["xsam / steps=1"]
    assert "rows with such a cell: 1 of 1." in to_markdown(table, PROVENANCE)


def test_beating_one_cell_but_not_all_is_not_bold(tmp_path):
    table = table_of(
        definition(tmp_path),
        {"sgd": [92, 91, 93, 92], "sam": [90, 91, 90, 91], "xsam": [91, 92.1, 90.9, 92]},
    )
    assert bold_cells(table) == []  # xsam beats sam clearly, but not sgd


def test_baseline_and_pairs_report_intervals(tmp_path):
    table = table_of(
        definition(tmp_path),
        {"sgd": [80, 81, 80, 81], "sam": [90, 91, 90, 91], "xsam": [91, 90.5, 91, 90.5]},
    )
    _, header, body = baseline_table(table, MARKDOWN)
    assert header == ["", "sam / steps=1", "xsam / steps=1"]
    assert body[0][1] == "**+10.00 [+10.00, +10.00] (4)**"  # identical differences
    _, header, body = pairs_table(table, MARKDOWN)
    diffs = (1.0, -0.5, 1.0, -0.5)
    low, high = t_interval(diffs)
    assert body[0][1] == f"+0.25 [{low:+.2f}, {high:+.2f}] (4)"  # not bold: straddles 0
    assert PairedRow((), (0, 1, 2, 3), diffs).significant is False


def test_departures_from_the_protocol_are_named_in_the_header(tmp_path):
    exp = definition(tmp_path)
    records = [run(o, s, 90.0 + s) for o in ("sgd", "sam", "xsam") for s in range(4)]
    records[-1] = run("xsam", 3, 93.0, lr=0.1)  # one run with another learning rate

    def protocol(cell):
        return {
            "seed": 0,
            "lr": 0.05,
            "optimizer": {"steps": cell[1]} | ({"rho": 0.2} if cell[1] else {}),
        }

    table = build_table(exp, records, protocol=protocol)
    assert [(r.run_id, d) for r, d in table.departures] == [
        (records[-1].run_id, ["lr=0.1 (protocol: 0.05)"])
    ]
    text = to_markdown(table, PROVENANCE)
    assert "NOT THE PROTOCOL: 1 run departs" in text and "lr=0.1 (protocol: 0.05)" in text
    clean = build_table(exp, records[:-1], protocol=protocol)
    assert "Protocol: every run has the settings" in to_markdown(clean, PROVENANCE)


def test_the_smoke_variant_never_reads_like_the_protocol(tmp_path):
    exp = definition(tmp_path, "smoke: {epochs: 1}\n").variant(smoke=True)
    text = to_markdown(build_table(exp, []), PROVENANCE)
    assert "SMOKE VARIANT, not the protocol: dataset=digits, epochs=1." in text


def test_grid_settings_reach_the_commands_and_place_only_matching_runs(tmp_path):
    exp = definition(tmp_path)
    assert exp.overrides()[4] == [
        "study=sig",
        "dataset=digits",
        "optimizer=sam",
        "optimizer.steps=1",
        "optimizer.rho=0.2",
        "seed=0",
    ]
    assert exp.sweeps()[1][-2:] == ["optimizer.rho=0.2", "seed=0,1,2,3"]
    table = build_table(exp, [run("sam", 0, 90.0), run("sam", 1, 90.0, rho=0.05)])
    assert [r.seed for r in table.cells[("sam", 1)].runs.values()] == [0]
    assert "optimizer.rho=0.05, the table sets 0.2 for sam/1" in table.ignored[0][1]


@pytest.mark.parametrize(
    "extra, message",
    [
        ("", None),
        ("smoke: {optimizer.rho: 0.1}\n", "smoke.optimizer.rho"),
    ],
)
def test_a_set_key_cannot_also_be_fixed_or_smoked(tmp_path, extra, message):
    if message is None:
        definition(tmp_path, extra)
        return
    with pytest.raises(ExperimentError, match=message):
        definition(tmp_path, extra)


def test_bad_baseline_pairs_and_conflicting_sets_name_the_key(tmp_path):
    text = DEFINITION.format(extra="")
    cases = [
        (text.replace("baseline: sgd/0", "baseline: adam/0"), "key 'baseline'"),
        (text.replace("pairs: [[xsam/1, sam/1]]", "pairs: [[xsam/1]]"), r"key 'pairs\[0\]'"),
        (
            text.replace(
                "  - {optimizer: [sgd], optimizer.steps: [0]}",
                "  - {optimizer: [sgd, sam], optimizer.steps: [0, 1]}",
            ),
            r"axes\[1\].set",
        ),
    ]
    for body, message in cases:
        path = tmp_path / "sig.yaml"
        path.write_text(body)
        with pytest.raises(ExperimentError, match=message):
            load_experiment(path)
