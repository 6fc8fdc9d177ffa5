"""Paired comparison on matched seeds: treatment minus baseline, seed by seed.

Pairing removes the variation that two runs with the same seed share (initialization, data
order), so the spread of the differences is what decides whether a gain is real.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from xsam.experiments import Paired, same_value
from xsam.tables.table import Table


@dataclass(frozen=True)
class PairedRow:
    """The differences for one setting of the other axes (``label``), over matched seeds."""

    label: tuple[Any, ...]  # the cell values without the paired axis
    seeds: tuple[int, ...]
    diffs: tuple[float, ...]  # treatment - baseline, per seed (accuracy points)

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.diffs) if self.diffs else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.diffs) if self.n > 1 else math.nan


def paired_rows(table: Table, paired: Paired) -> list[PairedRow]:
    """One row per setting of the other axes where both sides have a reported cell."""
    exp = table.experiment
    i = exp.axes.index(paired.axis)
    rows = []
    for values, cell in table.cells.items():
        if not same_value(values[i], paired.treatment) or cell.refused:
            continue
        base_values = values[:i] + (_match(exp, paired),) + values[i + 1 :]
        base = table.cells.get(base_values)
        if base is None or base.refused:
            continue
        seeds = tuple(s for s in exp.seeds if s in cell.runs and s in base.runs)
        diffs = tuple(table.metric(cell.runs[s]) - table.metric(base.runs[s]) for s in seeds)
        rows.append(PairedRow(values[:i] + values[i + 1 :], seeds, diffs))
    return rows


def _match(exp, paired: Paired) -> Any:
    """The baseline as spelled in the axis (YAML may say 1 where the axis has 1.0)."""
    return next(
        v for grid in exp.grids for v in grid[paired.axis] if same_value(v, paired.baseline)
    )
