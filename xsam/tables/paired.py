"""Paired comparison on matched seeds: treatment minus baseline, seed by seed.

Pairing removes the variation that two runs with the same seed share (initialization, data
order), so the spread of the differences is what decides whether a gain is real. A difference
is called real when its two-sided 95% t interval over the matched seeds excludes 0:

    mean(d) ± t_{0.975, n-1} * std(d) / sqrt(n),   d = treatment - baseline per seed, n >= 2

(the interval of ``scipy.stats.ttest_rel``; it assumes the differences are roughly normal).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from xsam.experiments import Paired, same_value
from xsam.tables.table import Cell, Table

CONFIDENCE = 0.95


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

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% t interval of the mean difference; (nan, nan) for fewer than 2 seeds."""
        return t_interval(self.diffs)

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (in either direction)."""
        low, high = self.interval
        return low > 0 or high < 0


def t_interval(diffs: tuple[float, ...], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t interval of the mean of paired differences; (nan, nan) when n < 2."""
    from scipy.stats import t  # scipy is a dependency of the tables only

    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    mean, std = statistics.fmean(diffs), statistics.stdev(diffs)
    half = float(t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def cell_difference(table: Table, treatment: Cell, baseline: Cell) -> PairedRow:
    """``treatment - baseline`` (accuracy points) on the seeds both cells have."""
    seeds = tuple(s for s in table.experiment.seeds if s in treatment.runs and s in baseline.runs)
    diffs = tuple(table.metric(treatment.runs[s]) - table.metric(baseline.runs[s]) for s in seeds)
    return PairedRow(treatment.values, seeds, diffs)


def beats_all(table: Table, cell: Cell, others: list[Cell]) -> bool:
    """``cell`` is ahead of every other reported cell with an interval that excludes 0."""
    rivals = [o for o in others if o is not cell and table.stats(o) is not None]
    if table.stats(cell) is None or not rivals:
        return False
    return all(cell_difference(table, cell, o).interval[0] > 0 for o in rivals)


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
        diff = cell_difference(table, cell, base)
        rows.append(PairedRow(values[:i] + values[i + 1 :], diff.seeds, diff.diffs))
    return rows


def _match(exp, paired: Paired) -> Any:
    """The baseline as spelled in the axis (YAML may say 1 where the axis has 1.0)."""
    return next(
        v for grid in exp.grids for v in grid[paired.axis] if same_value(v, paired.baseline)
    )
