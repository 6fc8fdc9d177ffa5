"""Table aggregation on fixture runs, compared with the golden files in tests/golden/.

The fixture runs are written by :func:`write_fixture` (deterministic, no training): a full
cell, a duplicate seed, a crashed run (no summary.json), a cell with one seed, missing cells,
a cell mixing two commits, and runs that belong to no cell.

Regenerate the golden files after an intended change of the output, and review the diff:

    UPDATE_GOLDEN=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_tables.py

Write the fixture runs somewhere to try the scripts by hand (``runs/`` is git-ignored):

    python tests/test_tables.py <a folder>      # <a folder>/{experiments,runs}/
    XSAM_BASE=<a folder> python scripts/aggregate.py experiments/fixture.yaml --out out
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from xsam.experiments import load_experiment
from xsam.tables.collect import collect, merge_sources, read_run_dir, record_from_wandb
from xsam.tables.paired import paired_rows
from xsam.tables.table import build_table

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
COMMIT_A, COMMIT_B = "a1" * 20, "b2" * 20

FIXTURE_YAML = """\
description: Fixture table for the aggregation tests (not a paper table).
seeds: [0, 1, 2]
fixed: {dataset: digits}
axes:
  model: [small_cnn, resnet18, vgg11_bn]
  optimizer: [sgd, sam, xsam]
rows: [model]
columns: [optimizer]
metric: test/acc
paired: {axis: optimizer, treatment: xsam, baseline: sam}
reference: {small_cnn/sam: 94.0, small_cnn/xsam: 95.0, resnet18/sam: 88.0}
smoke: {epochs: 1}
"""

# (model, optimizer, seed, final test/acc or None for a crashed run, commit, started, dataset
#  [, batch_size])
FIXTURE_RUNS = [
    ("small_cnn", "sgd", 0, 90.0, COMMIT_A, "2025-01-01T10:00:00", "digits"),
    ("small_cnn", "sgd", 1, 91.0, COMMIT_A, "2025-01-01T10:01:00", "digits"),
    ("small_cnn", "sgd", 2, 92.5, COMMIT_A, "2025-01-01T10:02:00", "digits"),
    ("small_cnn", "sam", 0, 93.0, COMMIT_A, "2025-01-01T10:03:00", "digits"),
    ("small_cnn", "sam", 1, 93.5, COMMIT_A, "2025-01-01T10:04:00", "digits"),
    ("small_cnn", "sam", 2, 94.25, COMMIT_A, "2025-01-01T10:05:00", "digits"),
    ("small_cnn", "xsam", 0, 94.0, COMMIT_A, "2025-01-01T10:06:00", "digits"),
    ("small_cnn", "xsam", 1, 80.0, COMMIT_A, "2025-01-01T10:07:00", "digits"),  # superseded
    ("small_cnn", "xsam", 1, 95.0, COMMIT_A, "2025-01-02T09:00:00", "digits"),  # the rerun
    ("small_cnn", "xsam", 2, 95.5, COMMIT_A, "2025-01-01T10:08:00", "digits"),
    ("resnet18", "sgd", 0, 85.0, COMMIT_A, "2025-01-01T11:00:00", "digits"),
    ("resnet18", "sgd", 1, 86.0, COMMIT_A, "2025-01-01T11:01:00", "digits"),
    ("resnet18", "sgd", 2, None, COMMIT_A, "2025-01-01T11:02:00", "digits"),  # crashed
    ("resnet18", "sam", 0, 87.0, COMMIT_A, "2025-01-01T11:03:00", "digits"),  # n = 1
    ("resnet18", "xsam", 0, 88.0, COMMIT_A, "2025-01-01T11:04:00", "digits"),  # mixed
    ("resnet18", "xsam", 1, 89.0, COMMIT_B, "2025-01-01T11:05:00", "digits"),  # commits
    ("vgg11_bn", "sgd", 0, 80.0, COMMIT_A, "2025-01-01T12:00:00", "digits"),
    ("vgg11_bn", "sgd", 1, 81.0, COMMIT_A, "2025-01-01T12:01:00", "digits"),
    ("vgg11_bn", "sgd", 2, 81.5, COMMIT_A, "2025-01-01T12:02:00", "digits", 128),  # batch
    ("small_cnn", "sgd", 7, 99.0, COMMIT_A, "2025-01-01T13:00:00", "digits"),  # seed 7
    ("small_cnn", "sgdplus", 0, 92.0, COMMIT_A, "2025-01-01T13:01:00", "digits"),  # no column
    ("small_cnn", "sam", 0, 70.0, COMMIT_A, "2025-01-01T13:02:00", "cifar10"),  # not fixed
]


def _curve(final: float, seed: int, epochs: int = 3) -> list[dict]:
    """Per-epoch metrics ending at ``final``; train metrics vary with the seed."""
    return [
        {
            "epoch": e,
            "step": 10 * e,
            "train/loss": round(1.0 / e + 0.01 * seed, 4),
            "train/acc": round(final - 3.0 * (epochs - e) + 1.0, 4),
            "test/loss": round(0.5 / e, 4),
            "test/acc": round(final - 4.0 * (epochs - e), 4),
            "lr": round(0.05 / e, 4),
            "xsam/alpha": 1.0,
            "time/epoch": 1.5,
        }
        for e in range(1, epochs + 1)
    ]


def write_run(
    root: Path,
    model: str,
    optimizer: str,
    seed: int,
    final: float | None,
    commit: str,
    started: str,
    dataset: str,
    batch_size: int = 125,
) -> Path:
    """One run directory in the format of docs/INTERFACES.md."""
    config_hash = hashlib.sha1(f"{dataset}{model}{optimizer}{seed}{started}".encode()).hexdigest()
    run_id = f"{dataset}-{model}-{optimizer}-s{seed}-{config_hash[:8]}"
    path = root / "fixture" / run_id
    path.mkdir(parents=True)
    choices = {
        "dataset": dataset,
        "model": model,
        "optimizer": optimizer,
        "schedule": "cosine",
        "logger": "wandb",
    }
    git = {"commit": commit, "dirty": False}
    meta = {
        "choices": choices,
        "git": git,
        "run_id": run_id,
        "config_hash": config_hash,
        "host": "fixture-host",
        "torch": "2.4.0",
        "started": started,
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=1))
    (path / "config.yaml").write_text(
        f"experiment: fixture\nseed: {seed}\nepochs: 3\nbatch_size: {batch_size}\nlr: 0.05\n"
        f"dataset:\n  name: {dataset}\n  num_classes: 10\n"
        f"optimizer:\n  rho: 0.15\n  steps: 1\n  rho_max: 0.3\n"
    )
    curve = _curve(final if final is not None else 50.0, seed)
    lines = curve if final is not None else curve[:1]
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    if final is not None:
        summary = {
            "status": "finished",
            "final": curve[-1],
            "best_epoch": 3,
            "best/test_acc": final,
            "compute": {"forward_passes": 60, "backward_passes": 60, "wall_time_s": 4.5},
            "choices": choices,
            "git": git,
            "seed": seed,
            "run_id": run_id,
            "config_hash": config_hash,
            "experiment": "fixture",
        }
        (path / "summary.json").write_text(json.dumps(summary, indent=1))
    return path


def write_fixture(root: Path) -> None:
    """``root/experiments/fixture.yaml`` and the runs under ``root/runs/fixture/``."""
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "experiments" / "fixture.yaml").write_text(FIXTURE_YAML)
    for run in FIXTURE_RUNS:
        write_run(root / "runs", *run)


@pytest.fixture()
def fixture_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_fixture(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XSAM_BASE", str(tmp_path))  # the scripts' relative paths: xsam.paths
    return tmp_path


def _aggregate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "aggregate.py"), "experiments/fixture.yaml", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check_golden(produced: Path, golden_name: str) -> None:
    golden = GOLDEN / golden_name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(produced.read_text())
    assert produced.read_text() == golden.read_text(), (
        f"{golden_name} differs from the golden file; if intended, regenerate it "
        "(UPDATE_GOLDEN=1, see this file's docstring) and review the diff"
    )


def test_aggregate_matches_golden_and_refuses_mixed_commits(fixture_dir: Path) -> None:
    done = _aggregate(fixture_dir, "--out", "out")
    assert done.returncode == 1, done.stderr  # a refused cell is an error
    assert "refused 1 cells mixing code versions: resnet18/xsam" in done.stderr
    for suffix in (".csv", ".md", ".tex"):
        _check_golden(fixture_dir / "out" / f"fixture{suffix}", f"fixture{suffix}")


def test_aggregate_allow_mixed_commits_matches_golden(fixture_dir: Path) -> None:
    """Called from another directory: relative paths are under the base folder all the same."""
    elsewhere = fixture_dir / "elsewhere"
    elsewhere.mkdir()
    done = _aggregate(elsewhere, "--out", "out", "--allow-mixed-commits")
    assert not any(elsewhere.iterdir())
    assert done.returncode == 0, done.stderr
    _check_golden(fixture_dir / "out" / "fixture.md", "fixture_allow_mixed.md")


def _table(allow_mixed: bool = False):
    exp = load_experiment("experiments/fixture.yaml")
    records, _ = collect(exp.group, Path("runs"), None, metric_keys=("test/acc",))
    return build_table(exp, records, allow_mixed=allow_mixed)


def test_cells_dedup_missing_crashed_mixed(fixture_dir: Path) -> None:
    table = _table()
    cells = {cell.key: cell for cell in table.cells.values()}
    assert table.stats(cells["small_cnn/xsam"]) == pytest.approx((94.833333, 0.763763, 3))
    assert [(old.seed, old.final["test/acc"]) for _, old, _ in table.duplicates] == [(1, 80.0)]
    mean, std, n = table.stats(cells["resnet18/sam"])
    assert (mean, n) == (87.0, 1) and std != std  # n = 1: std is nan, shown "± –"
    assert table.stats(cells["resnet18/xsam"]) is None and cells["resnet18/xsam"].refused
    assert table.stats(cells["vgg11_bn/sam"]) is None and not cells["vgg11_bn/sam"].runs
    assert [run.seed for run in table.unfinished] == [2]
    assert len(table.ignored) == 3
    assert [
        (c.key, table.config_differences(c))
        for c in table.cells.values()
        if table.config_differences(c)
    ] == [("vgg11_bn/sgd", ["batch_size"])]
    assert table.stats(cells["small_cnn/sgd"], error=True)[0] == pytest.approx(100 - 91.166667)


def test_paired_differences_on_matched_seeds(fixture_dir: Path) -> None:
    table = _table(allow_mixed=True)
    rows = {row.label: row for row in paired_rows(table, table.experiment.paired)}
    assert rows[("small_cnn",)].diffs == pytest.approx((1.0, 1.5, 1.25))
    assert (rows[("small_cnn",)].mean, rows[("small_cnn",)].std) == pytest.approx((1.25, 0.25))
    assert rows[("resnet18",)].seeds == (0,) and rows[("resnet18",)].diffs == (1.0,)
    assert rows[("vgg11_bn",)].n == 0


def test_plot_curves_writes_png(fixture_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "plot_curves.py"),
            "experiments/fixture.yaml",
            "--out",
            "out",
        ],
        cwd=fixture_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    png = fixture_dir / "out" / "fixture_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_crashed_run_reads_as_unfinished(fixture_dir: Path) -> None:
    crashed = next((fixture_dir / "runs" / "fixture").glob("digits-resnet18-sgd-s2-*"))
    record = read_run_dir(crashed, "x", with_curve=True)
    assert not record.finished and record.seed == 2 and len(record.curve) == 1


class FakeWandbRun(SimpleNamespace):
    """Stands in for ``wandb.apis.public.Run``: W&B's API server cannot be reached offline."""

    def history(self, keys, samples, pandas):
        assert pandas is False
        return [{k: row[k] for k in keys if k in row} for row in self.rows]


def test_wandb_run_converts_to_the_run_dir_record(fixture_dir: Path) -> None:
    run_dir = next((fixture_dir / "runs" / "fixture").glob("digits-small_cnn-sam-s1-*"))
    from_dir = read_run_dir(run_dir, "runs/x", with_curve=True)
    meta = json.loads((run_dir / "meta.json").read_text())
    fake = FakeWandbRun(
        id=from_dir.run_id,
        state="finished",
        created_at=meta["started"],
        config={**from_dir.config, "choices": meta["choices"], "git": meta["git"]},
        # plain keys: the last logged values; "summary/..." the final epoch (train.py)
        summary={
            "test/acc": -1.0,
            **{f"summary/{k}": v for k, v in from_dir.final.items()},
            "_runtime": 4.5,
            "_step": 3,
        },
        rows=list(from_dir.curve),
    )
    record = record_from_wandb(fake, "ent/proj", metric_keys=("test/acc",))
    assert record.source == f"wandb:ent/proj/{from_dir.run_id}"
    for field in (
        "run_id",
        "finished",
        "choices",
        "config",
        "seed",
        "commit",
        "dirty",
        "started",
        "final",
    ):
        assert getattr(record, field) == getattr(from_dir, field), field
    assert [r["test/acc"] for r in record.curve] == [r["test/acc"] for r in from_dir.curve]
    crashed = record_from_wandb(
        FakeWandbRun(id="x", state="crashed", config={"seed": 0}, summary={"test/acc": 50.0}),
        "ent/proj",
    )
    assert not crashed.finished and crashed.commit == "" and crashed.final == {"test/acc": 50.0}
    merged = merge_sources([from_dir], [record, crashed])  # the run dir hides its W&B copy
    assert [r.source for r in merged] == ["runs/x", "wandb:ent/proj/x"]


def test_collect_wandb_asks_for_the_group(fixture_dir: Path) -> None:
    from xsam.tables.collect import collect_wandb

    calls = []

    class FakeApi:
        def runs(self, path, filters):
            calls.append((path, filters))
            return [FakeWandbRun(id="r1", state="finished", config={"seed": 1}, summary={})]

    records = collect_wandb("ent/proj", "table1", api_factory=FakeApi)
    assert calls == [("ent/proj", {"group": "table1"})] and records[0].run_id == "r1"


E2E_YAML = """\
description: The pipeline end to end, train.py included.
seeds: [0, 1]
fixed: {dataset: digits, model: small_cnn}
axes: {optimizer: [sam, xsam]}
rows: []
columns: [optimizer]
metric: test/acc
paired: {axis: optimizer, treatment: xsam, baseline: sam}
smoke: {epochs: 1}
"""


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "train.py").is_file(), reason="train.py is not in this checkout")
def test_sweep_train_aggregate_end_to_end(tmp_path: Path) -> None:
    """sweep.py launches train.py on the digits; aggregate.py and plot_curves.py read its runs."""
    (tmp_path / "e2e.yaml").write_text(E2E_YAML)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env["XSAM_BASE"] = str(tmp_path)  # e2e.yaml, runs/ and out/ are there

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / name), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    runs = f"--runs-dir={tmp_path / 'runs'}"
    done = script(
        "sweep.py", "e2e.yaml", "--smoke", "--", f"run_root={tmp_path / 'runs'}", "progress=false"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    done = script("aggregate.py", "e2e.yaml", "--smoke", runs, "--out", "out")
    assert done.returncode == 0, done.stderr
    assert "4 runs in 2 of 2 cells; 0 unfinished" in done.stdout
    rows = (tmp_path / "out" / "e2e_smoke.csv").read_text().splitlines()
    assert len(rows) == 5 and all(",used," in row for row in rows[1:])
    assert script("plot_curves.py", "e2e.yaml", "--smoke", runs, "--out", "out").returncode == 0
    assert (tmp_path / "out" / "e2e_smoke_curves.png").stat().st_size > 0


if __name__ == "__main__":
    write_fixture(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}/experiments/fixture.yaml and {sys.argv[1]}/runs/fixture/")
