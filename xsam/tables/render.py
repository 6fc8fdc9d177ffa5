"""Write a :class:`Table` as CSV (one row per run), Markdown and LaTeX.

Markdown and LaTeX say the same things: mean ± std (n) per cell, in bold only where a cell
beats every other cell of its row with a paired 95% interval that excludes 0, missing cells
marked and listed, reference numbers and differences where given, the paired comparisons with
their intervals, and a header saying the file is generated, by which command, from which runs,
and every way its runs depart from the definition's protocol.
The output holds no timestamps, so rebuilding from the same runs gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xsam.experiments import cell_key, format_value
from xsam.tables.paired import CONFIDENCE, PairedRow, beats_all, cell_difference, paired_rows
from xsam.tables.table import Cell, Table

MISSING, REFUSED = "missing", "refused: mixed commits"


@dataclass(frozen=True)
class Provenance:
    """Where a table came from, for its header."""

    command: str  # the command that rebuilds it
    definition: str  # the experiment definition file
    sources: tuple[str, ...]  # e.g. "run directories runs/table1/*", "W&B ent/proj"


@dataclass(frozen=True)
class Style:
    """How one output format writes the pieces of a cell."""

    spread: Callable[[str, str | None], str]  # (mean, std or None when n = 1) -> text
    bold: str  # a format string with one {}
    mixed_mark: str  # appended to a cell that mixes code versions, when allowed
    escape: Callable[[str], str]


MARKDOWN = Style(lambda m, s: f"{m} ± {s or '–'}", "**{}**", " †", lambda s: s.replace("|", "\\|"))
LATEX = Style(
    lambda m, s: f"${m} \\pm {s}$" if s else f"${m} \\pm$ --",
    r"{{\boldmath\bfseries {}}}",  # \textbf alone would not bold the math
    r"$^\dagger$",
    lambda s: (
        s.replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("#", r"\#")
    ),
)


def render_csv(table: Table) -> str:
    """One row per finished run placed in a cell: choices, seed, commit, run id, final metrics."""
    exp = table.experiment
    runs = _placed_runs(table)
    choice_keys = sorted({k for _, run, _ in runs for k in run.choices} - set(exp.axes))
    metric_keys = sorted({k for _, run, _ in runs for k in run.final})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "table",
            "cell",
            *exp.axes,
            *choice_keys,
            "seed",
            "run_id",
            "commit",
            "dirty",
            "started",
            "status",
            "source",
            *metric_keys,
        ]
    )
    for values, run, status in runs:
        writer.writerow(
            [
                exp.name,
                cell_key(values),
                *map(format_value, values),
                *(format_value(run.choices.get(k, "")) for k in choice_keys),
                run.seed,
                run.run_id,
                run.commit,
                format_value(run.dirty),
                run.started,
                status,
                run.source,
                *(_csv_value(run.final.get(k)) for k in metric_keys),
            ]
        )
    return out.getvalue()


def _placed_runs(table: Table) -> list[tuple[tuple[Any, ...], Any, str]]:
    rows = []
    for values, cell in table.cells.items():
        kept = [
            (run, "refused (mixed commits)" if cell.refused else "used")
            for _, run in sorted(cell.runs.items())
        ]
        dups = [
            (old, f"duplicate (superseded by {new.run_id})")
            for v, old, new in table.duplicates
            if v == values
        ]
        for run, status in sorted(kept + dups, key=lambda r: (r[0].seed, r[0].started)):
            rows.append((values, run, status))
    return rows


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else format_value(value)


def cell_text(table: Table, cell: Cell, style: Style, error: bool = False) -> str:
    """``mean ± std (n)``; ``± –`` when n = 1; ``missing`` or ``refused`` without numbers."""
    stats = table.stats(cell, error)
    if stats is None:
        return REFUSED if cell.refused else MISSING
    mean, std, n = stats
    text = style.spread(f"{mean:.2f}", None if math.isnan(std) else f"{std:.2f}") + f" ({n})"
    return text + (style.mixed_mark if len(cell.versions) > 1 else "")


def grid(table: Table, style: Style, error: bool = False) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the main table; a cell is bold when it beats every other
    cell of its row on matched seeds (:func:`xsam.tables.paired.beats_all`)."""
    exp = table.experiment
    row_keys, col_keys = _row_and_column_keys(table)
    header = [*(style.escape(k) for k in exp.rows)] or [""]
    header += [style.escape(column_label(exp.columns, col)) for col in col_keys]
    body = []
    for row in row_keys:
        cells = [table.cells.get(row + col) for col in col_keys]
        present = [c for c in cells if c is not None]
        texts = [
            ""
            if c is None
            else style.bold.format(cell_text(table, c, style, error))
            if beats_all(table, c, present)
            else cell_text(table, c, style, error)
            for c in cells
        ]
        body.append(_row_label(exp, row, style, error) + texts)
    return header, body


def _row_and_column_keys(table: Table) -> tuple[list[tuple], list[tuple]]:
    n_rows = len(table.experiment.rows)
    return (
        list(dict.fromkeys(values[:n_rows] for values in table.cells)),
        list(dict.fromkeys(values[n_rows:] for values in table.cells)),
    )


def _row_label(exp, row: tuple, style: Style, error: bool = False) -> list[str]:
    return [style.escape(format_value(v)) for v in row] or [
        style.escape(_metric_label(exp.metric, error))
    ]


def bold_rows(table: Table) -> tuple[int, int]:
    """(rows with a bold cell, rows with two or more reported cells)."""
    row_keys, col_keys = _row_and_column_keys(table)
    bold = compared = 0
    for row in row_keys:
        cells = [c for col in col_keys if (c := table.cells.get(row + col)) is not None]
        if sum(table.stats(c) is not None for c in cells) > 1:
            compared += 1
            bold += any(beats_all(table, c, cells) for c in cells)
    return bold, compared


def baseline_table(table: Table, style: Style) -> tuple[str, list[str], list[list[str]]] | None:
    """Each column minus the baseline column, row by row: mean [95% interval] (n)."""
    exp = table.experiment
    if exp.baseline is None:
        return None
    _, col_keys = _row_and_column_keys(table)
    pairs = [(col, exp.baseline) for col in col_keys if col != exp.baseline]
    title = (
        f"Paired differences against {column_label(exp.columns, exp.baseline)} "
        f"(`{exp.metric}` points, mean [{CONFIDENCE:.0%} t interval] (n matched seeds); "
        "bold where the interval excludes 0)"
    )
    header, body = comparison_grid(table, style, pairs, lambda a, b: column_label(exp.columns, a))
    return title, header, body


def pairs_table(table: Table, style: Style) -> tuple[str, list[str], list[list[str]]] | None:
    """The definition's ``pairs`` (treatment column, baseline column), row by row."""
    exp = table.experiment
    if not exp.pairs:
        return None
    title = (
        f"Paired differences (`{exp.metric}` points, mean [{CONFIDENCE:.0%} t interval] "
        "(n matched seeds); bold where the interval excludes 0)"
    )

    def label(a, b):
        return f"{column_label(exp.columns, a)} - {column_label(exp.columns, b)}"

    header, body = comparison_grid(table, style, list(exp.pairs), label)
    return title, header, body


def comparison_grid(table: Table, style: Style, pairs, label) -> tuple[list[str], list[list[str]]]:
    """One column per (treatment, baseline) pair of column keys, one row per table row."""
    exp = table.experiment
    row_keys, _ = _row_and_column_keys(table)
    header = [*(style.escape(k) for k in exp.rows)] or [""]
    header += [style.escape(label(a, b)) for a, b in pairs]
    body = []
    for row in row_keys:
        texts = []
        for a, b in pairs:
            cell, base = table.cells.get(row + a), table.cells.get(row + b)
            if cell is None or base is None:
                texts.append("")
            elif table.stats(cell) is None or table.stats(base) is None:
                texts.append(MISSING)
            else:
                texts.append(difference_text(cell_difference(table, cell, base), style))
        body.append(_row_label(exp, row, style) + texts)
    return header, body


def difference_text(row: PairedRow, style: Style) -> str:
    """``+0.42 [+0.10, +0.74] (5)``; the interval is '–' for fewer than 2 seeds."""
    if not row.n:
        return MISSING
    low, high = row.interval
    interval = "–" if math.isnan(low) else f"{low:+.2f}, {high:+.2f}"
    text = f"{row.mean:+.2f} [{interval}] ({row.n})"
    return style.bold.format(text) if row.n > 1 and row.significant else text


_GROUPS = ("dataset", "model", "optimizer", "schedule")  # Hydra groups: their choice says it


def column_label(keys: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """Group choices by value (``xsam``); other keys as ``steps=3`` (the last key part)."""
    return (
        " / ".join(
            format_value(v) if k in _GROUPS else f"{k.rsplit('.', 1)[-1]}={format_value(v)}"
            for k, v in zip(keys, values, strict=True)
        )
        or "value"
    )


def _metric_label(metric: str, error: bool) -> str:
    return f"100 - {metric}" if error else metric


def summary_lines(table: Table, provenance: Provenance) -> list[str]:
    """The header: what the file is, how it was made, from which runs."""
    exp = table.experiment
    used = table.used_runs()
    versions = Counter(run.version for run in used)
    mixed = [c for c in table.cells.values() if len(c.versions) > 1]
    lines = [
        f"Generated file, do not edit: rebuild with `{provenance.command}`.",
        f"Definition `{provenance.definition}`, W&B group `{exp.group}`, "
        f"seeds {', '.join(map(str, exp.seeds))}.",
        f"Sources: {'; '.join(provenance.sources)}.",
        f"Runs: {len(used)} finished runs in the table, from code versions "
        + (", ".join(f"{v} ({n})" for v, n in sorted(versions.items())) or "none")
        + f"; one row per run in `{exp.name}.csv`.",
        f"Metric: final-epoch `{exp.metric}` (%), mean ± std (n) over seeds, sample std (ddof=1).",
        _bold_line(table),
        f"Budget: {exp.budget.describe(exp.axes)}.",
    ]
    if table.departures is not None:
        lines.append(
            "Protocol: every run has the settings the definition composes for its cell."
            if not table.departures
            else f"NOT THE PROTOCOL: {_plural(len(table.departures), 'run')} "
            "departs from the settings the definition composes (listed below)."
        )
    if exp.name.endswith("_smoke"):
        lines.append(
            "SMOKE VARIANT, not the protocol: "
            + ", ".join(f"{k}={format_value(v)}" for k, v in exp.fixed.items())
            + "."
        )
    if mixed and table.allow_mixed:
        lines.append(
            f"{_plural(len(mixed), 'cell')} mixing code versions (marked †) "
            "allowed by --allow-mixed-commits."
        )
    elif mixed:
        lines.append(
            f"{_plural(len(mixed), 'cell')} refused: runs from different code "
            "versions (rerun at one commit, or pass --allow-mixed-commits)."
        )
    return lines


def _bold_line(table: Table) -> str:
    bold, compared = bold_rows(table)
    rule = (
        f"Bold: a cell ahead of every other cell of its row, each paired difference over "
        f"matched seeds with a {CONFIDENCE:.0%} t interval above 0"
    )
    if not compared:
        return f"{rule}; no row has two reported cells."
    if not bold:
        return f"{rule}; no cell is bold: in no row does one cell beat all the others."
    return f"{rule}; rows with such a cell: {bold} of {compared}."


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def listings(table: Table) -> list[tuple[str, list[str]]]:
    """The lists under the tables: (title, items); empty lists are dropped except Missing."""
    exp = table.experiment
    missing = [
        f"{c.key}: "
        + (
            "no finished run"
            if not c.runs
            else _plural(len(table.missing_seeds(c)), "missing seed")
            + " "
            + ", ".join(map(str, table.missing_seeds(c)))
        )
        for c in table.cells.values()
        if table.missing_seeds(c)
    ]
    n_empty = sum(not c.runs for c in table.cells.values())
    mixed = [
        f"{c.key}: "
        + ", ".join(f"seed {s} {r.version} ({r.run_id})" for s, r in sorted(c.runs.items()))
        for c in table.cells.values()
        if len(c.versions) > 1
    ]
    refused_title = "allowed by --allow-mixed-commits" if table.allow_mixed else "refused"
    lists = [
        (
            f"Missing: {_plural(n_empty, 'cell')} without a run, "
            f"{_plural(len(missing) - n_empty, 'cell')} with fewer than {len(exp.seeds)} seeds",
            missing or ["none"],
        ),
        (f"Cells mixing code versions ({refused_title})", mixed),
        (
            "Cells whose runs differ in more than the seed (config keys)",
            [
                f"{c.key}: {', '.join(diff)}"
                for c in table.cells.values()
                if (diff := table.config_differences(c))
            ],
        ),
        (
            "Duplicate seeds (the newest finished run is kept)",
            [
                f"{cell_key(v)} seed {new.seed}: kept {new.run_id} ({new.started}), "
                f"superseded {old.run_id} ({old.started})"
                for v, old, new in table.duplicates
            ],
        ),
        (
            "Unfinished runs (no summary.json: running, crashed or killed)",
            [f"{run.source} (seed {run.seed})" for run in table.unfinished],
        ),
        (
            "Runs that depart from the protocol (config key=run value (protocol: value))",
            [f"{run.source}: {', '.join(diff)}" for run, diff in table.departures or []],
        ),
        (
            "Ignored runs (in no cell of this table)",
            [f"{run.source}: {why}" for run, why in table.ignored],
        ),
    ]
    return [(title, items) for title, items in lists if items]


def reference_rows(table: Table, style: Style) -> list[list[str]]:
    """[cell, ours, reference, ours - reference] for each cell with a reference number."""
    rows = []
    for values, cell in table.cells.items():
        ref = table.experiment.reference.get(cell_key(values))
        if ref is None:
            continue
        stats = table.stats(cell)
        diff = "" if stats is None else f"{stats[0] - ref:+.2f}"
        rows.append([style.escape(cell.key), cell_text(table, cell, style), f"{ref:.2f}", diff])
    return rows


def paired_table(table: Table, style: Style) -> tuple[str, list[str], list[list[str]]] | None:
    """Title, header and rows of the paired comparison, or None when the table has none."""
    paired = table.experiment.paired
    if paired is None:
        return None
    exp = table.experiment
    others = [k for k in exp.axes if k != paired.axis]
    title = (
        f"Paired: {paired.treatment} - {paired.baseline} on matched seeds (`{exp.metric}` points)"
    )
    header = [style.escape(k) for k in others] + [
        "n",
        "mean difference",
        f"{CONFIDENCE:.0%} t interval",
        "min",
        "max",
    ]
    return title, header, [_paired_row(row, style) for row in paired_rows(table, paired)]


def _paired_row(row: PairedRow, style: Style) -> list[str]:
    label = [style.escape(format_value(v)) for v in row.label]
    if not row.n:
        return label + ["0", MISSING, "", "", ""]
    text = style.spread(f"{row.mean:+.2f}", None if math.isnan(row.std) else f"{row.std:.2f}")
    low, high = row.interval
    interval = "–" if math.isnan(low) else f"[{low:+.2f}, {high:+.2f}]"
    if row.n > 1 and row.significant:
        interval = style.bold.format(interval)
    return label + [
        str(row.n),
        text,
        interval,
        f"{min(row.diffs):+.2f}",
        f"{max(row.diffs):+.2f}",
    ]
