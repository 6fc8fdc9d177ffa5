"""Compose the Markdown and LaTeX files of a table from the pieces in :mod:`render`."""

from __future__ import annotations

from pathlib import Path

from xsam.markdown import table_lines
from xsam.tables.render import (
    LATEX,
    MARKDOWN,
    Provenance,
    baseline_table,
    grid,
    listings,
    paired_table,
    pairs_table,
    reference_rows,
    render_csv,
    summary_lines,
)
from xsam.tables.table import Table

_REF_HEADER = ["cell", "ours", "reference", "ours - reference"]


def to_markdown(table: Table, provenance: Provenance) -> str:
    exp = table.experiment
    out = [f"# {exp.name}", "", exp.description, ""]
    out += [f"- {line}" for line in summary_lines(table, provenance)] + [""]
    sections = [("Test accuracy (%)", *grid(table, MARKDOWN))]
    if exp.error:
        sections.append(("Test error (%)", *grid(table, MARKDOWN, error=True)))
    refs = reference_rows(table, MARKDOWN)
    if refs:
        sections.append(("Reference numbers (accuracy, %)", _REF_HEADER, refs))
    for extra in (
        baseline_table(table, MARKDOWN),
        pairs_table(table, MARKDOWN),
        paired_table(table, MARKDOWN),
    ):
        if extra is not None:
            sections.append(extra)
    for title, header, rows in sections:
        out += [f"## {title}", "", *table_lines(header, rows), ""]
    for title, items in listings(table):
        out += [f"## {title}", "", *(f"- {item}" for item in items), ""]
    return "\n".join(out)


def to_latex(table: Table, provenance: Provenance) -> str:
    """booktabs tabulars; the header and the lists are ``%`` comments."""
    exp = table.experiment
    lines = summary_lines(table, provenance)
    out = [f"% {lines[0]}", f"% {exp.name}: {exp.description}", *(f"% {x}" for x in lines[1:])]
    for title, items in listings(table):
        out += [f"% {title}:", *(f"%   {item}" for item in items)]
    labels = max(1, len(exp.rows))
    sections = [("Test accuracy (%)", *grid(table, LATEX), labels)]
    if exp.error:
        sections.append(("Test error (%)", *grid(table, LATEX, error=True), labels))
    refs = reference_rows(table, LATEX)
    if refs:
        sections.append(("Reference numbers (accuracy, %)", _REF_HEADER, refs, 1))
    for extra in (baseline_table(table, LATEX), pairs_table(table, LATEX)):
        if extra is not None:
            title, header, rows = extra
            sections.append((title.replace("`", ""), header, rows, labels))
    paired = paired_table(table, LATEX)
    if paired is not None:
        title, header, rows = paired
        sections.append((title.replace("`", ""), header, rows, len(header) - 5))
    for title, header, rows, labels in sections:
        out += ["", f"% {title}", *_tex_table(header, rows, labels)]
    return "\n".join(out) + "\n"


def _tex_table(header: list[str], rows: list[list[str]], labels: int) -> list[str]:
    spec = "l" * labels + "r" * (len(header) - labels)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(header) + r" \\", "\\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    return lines + ["\\bottomrule", "\\end{tabular}"]


def write_outputs(table: Table, provenance: Provenance, out_dir: Path) -> list[Path]:
    """Write ``<name>.csv``, ``.md`` and ``.tex`` into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = table.experiment.name
    texts = {
        ".csv": render_csv(table),
        ".md": to_markdown(table, provenance),
        ".tex": to_latex(table, provenance),
    }
    paths = []
    for suffix, text in texts.items():
        path = out_dir / f"{name}{suffix}"
        path.write_text(text)
        paths.append(path)
    return paths
