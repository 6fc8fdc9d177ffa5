"""The one Markdown table writer: results tables (:mod:`xsam.tables`), the geometry table,
the benchmarks (:mod:`xsam.benchmarking`) and the GPU check's report all write through it."""

from collections.abc import Iterable, Sequence


def table_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A GitHub Markdown table, one string per line. Cells are written as given: formatting
    and escaping ``|`` are the caller's (an empty cell reads ``|  |``)."""
    lines = [_row(header), "|" + " --- |" * len(header)]
    return lines + [_row(row) for row in rows]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
