"""Write a :class:`Table` as CSV (one row per run), Markdown and LaTeX.

Markdown and LaTeX say the same things: mean ± std (n) per cell with the best of each row in
bold, missing cells marked and listed, reference numbers and differences where given, the
paired comparison, and a header saying the file is generated, by which command, from which runs.
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
from xsam.tables.paired import PairedRow, paired_rows
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
    """The header and the rows of the main table, best cell of each row in bold."""
    exp = table.experiment
    n_rows = len(exp.rows)
    row_keys = list(dict.fromkeys(values[:n_rows] for values in table.cells))
    col_keys = list(dict.fromkeys(values[n_rows:] for values in table.cells))
    header = [*(style.escape(k) for k in exp.rows)] or [""]
    header += [style.escape(column_label(exp.columns, col)) for col in col_keys]
    body = []
    for row in row_keys:
        cells = [table.cells.get(row + col) for col in col_keys]
        means = [_rounded_mean(table, c, error) for c in cells]
        numbers = [m for m in means if m is not None]
        best = (min(numbers) if error else max(numbers)) if len(numbers) > 1 else None
        texts = ["" if c is None else cell_text(table, c, style, error) for c in cells]
        texts = [
            style.bold.format(t) if m is not None and m == best else t
            for t, m in zip(texts, means, strict=True)
        ]
        label = [style.escape(format_value(v)) for v in row] or [
            style.escape(_metric_label(exp.metric, error))
        ]
        body.append(label + texts)
    return header, body


def _rounded_mean(table: Table, cell: Cell | None, error: bool) -> float | None:
    stats = None if cell is None else table.stats(cell, error)
    return None if stats is None else round(stats[0], 2)


def column_label(keys: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """Group choices by value (``xsam``); other keys as ``steps=3`` (the last key part)."""
    return (
        " / ".join(
            format_value(v) if "." not in k else f"{k.rsplit('.', 1)[1]}={v}"
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
        f"Metric: final-epoch `{exp.metric}` (%), mean ± std (n) over seeds, sample std "
        "(ddof=1); bold: best in its row.",
        f"Budget: {exp.budget.describe(exp.axes)}.",
    ]
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
    header = [style.escape(k) for k in others] + ["n", "mean difference", "min", "max"]
    return title, header, [_paired_row(row, style) for row in paired_rows(table, paired)]


def _paired_row(row: PairedRow, style: Style) -> list[str]:
    label = [style.escape(format_value(v)) for v in row.label]
    if not row.n:
        return label + ["0", MISSING, "", ""]
    text = style.spread(f"{row.mean:+.2f}", None if math.isnan(row.std) else f"{row.std:.2f}")
    return label + [str(row.n), text, f"{min(row.diffs):+.2f}", f"{max(row.diffs):+.2f}"]
