"""From run records to table cells: match, deduplicate, refuse mixed code versions.

A run belongs to a cell when its axis values (Hydra choices, else the resolved config) are the
cell's values, its fixed values are the definition's, and its seed is one of the definition's
seeds. A cell's number is the final-epoch metric, mean ± sample std (ddof=1) over its seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xsam.experiments import Experiment, cell_key, same_value
from xsam.run_identity import NOT_IN_RUN_IDENTITY, STUDY
from xsam.tables.collect import RunRecord

# not what a run computes (the hash's list), nor what tells seeds and tables apart (the study
# label, and "experiment", its name in the configs of runs made before the rename)
_NOT_COMPARED = ("seed", STUDY, "experiment", *NOT_IN_RUN_IDENTITY)


@dataclass
class Cell:
    """One table cell: the runs kept for it (one per seed) and their metric values."""

    values: tuple[Any, ...]
    runs: dict[int, RunRecord] = field(default_factory=dict)  # seed -> newest finished run
    refused: bool = False  # runs from different code versions, not allowed

    @property
    def key(self) -> str:
        return cell_key(self.values)

    @property
    def versions(self) -> list[str]:
        return sorted({run.version for run in self.runs.values()})


@dataclass
class Table:
    """Everything the renderers need; lists are in definition order."""

    experiment: Experiment
    cells: dict[tuple[Any, ...], Cell]
    allow_mixed: bool
    duplicates: list[tuple[tuple[Any, ...], RunRecord, RunRecord]]  # (cell, superseded, kept)
    unfinished: list[RunRecord]
    ignored: list[tuple[RunRecord, str]]  # (run, why it is in no cell)
    # (run, ["key=run value (protocol: value)", ...]) for placed runs that depart from the
    # config the definition composes for their cell; None when it was not checked
    departures: list[tuple[RunRecord, list[str]]] | None = None

    def metric(self, run: RunRecord, error: bool = False) -> float:
        acc = float(run.final[self.experiment.metric])
        return 100.0 - acc if error else acc

    def stats(self, cell: Cell, error: bool = False) -> tuple[float, float, int] | None:
        """(mean, std, n) of a cell, std = nan for n = 1; None when missing or refused."""
        if cell.refused or not cell.runs:
            return None
        values = [self.metric(run, error) for _, run in sorted(cell.runs.items())]
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return statistics.fmean(values), std, len(values)

    def missing_seeds(self, cell: Cell) -> list[int]:
        return [seed for seed in self.experiment.seeds if seed not in cell.runs]

    def config_differences(self, cell: Cell) -> list[str]:
        """Config keys whose values differ between the cell's runs (seed and settings that do
        not change what a run computes left out): a cell should differ only in its seeds."""
        flat = [_flatten(run.config) for _, run in sorted(cell.runs.items())]
        keys = sorted({k for f in flat for k in f})
        return [
            k
            for k in keys
            if k.split(".")[0] not in _NOT_COMPARED and len({repr(f.get(k)) for f in flat}) > 1
        ]

    def used_runs(self) -> list[RunRecord]:
        return [
            run
            for cell in self.cells.values()
            if not cell.refused
            for _, run in sorted(cell.runs.items())
        ]


def build_table(
    exp: Experiment,
    records: list[RunRecord],
    allow_mixed: bool = False,
    protocol: Callable[[tuple[Any, ...]], dict[str, Any]] | None = None,
) -> Table:
    """Place every record in its cell, keep the newest finished run per seed.

    ``protocol(cell)``, when given, is the resolved config the definition composes for a
    cell's runs; every placed run is compared with it (:attr:`Table.departures`)."""
    table = Table(
        exp,
        {values: Cell(values) for values in exp.cells()},
        allow_mixed,
        duplicates=[],
        unfinished=[],
        ignored=[],
    )
    for run in sorted(records, key=lambda r: (r.started, r.run_id)):
        values, why = locate(exp, run)
        if why:
            table.ignored.append((run, why))
        elif not run.finished:
            table.unfinished.append(run)
        elif exp.metric not in run.final:
            table.ignored.append((run, f"no '{exp.metric}' in its final metrics"))
        else:
            cell = table.cells[values]
            if run.seed in cell.runs:  # sorted oldest first: the newer run replaces it
                table.duplicates.append((values, cell.runs[run.seed], run))
            cell.runs[run.seed] = run
    for cell in table.cells.values():
        cell.refused = len(cell.versions) > 1 and not allow_mixed
    order = {values: i for i, values in enumerate(table.cells)}
    table.duplicates.sort(key=lambda d: (order[d[0]], d[2].seed))
    if protocol is not None:
        table.departures = [
            (run, diff)
            for values, cell in table.cells.items()
            if cell.runs
            for expected in [_flatten(protocol(values))]
            for _, run in sorted(cell.runs.items())
            if (
                diff := departures(_on_any_storage(expected), _on_any_storage(_flatten(run.config)))
            )
        ]
    return table


def departures(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """``key=actual (protocol: expected)`` for each compared key whose values differ; keys
    the run lacks (written by older code, before the key existed) are not compared."""
    keys = sorted(actual)
    return [
        f"{k}={actual.get(k, '(absent)')} (protocol: {expected.get(k, '(absent)')})"
        for k in keys
        if k.split(".")[0] not in _NOT_COMPARED and not _same(expected.get(k), actual.get(k))
    ]


def _on_any_storage(flat: dict[str, Any]) -> dict[str, Any]:
    """Paths under the config's ``data_root`` written relative to it: the same run on another
    machine's storage is the same run."""
    root = flat.get("data_root")
    if not isinstance(root, str) or not root:
        return flat
    return {
        k: "<data_root>" + v[len(root) :] if isinstance(v, str) and v.startswith(root) else v
        for k, v in flat.items()
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return same_value(a, b) if a is not None and b is not None else a is b


def locate(exp: Experiment, run: RunRecord) -> tuple[tuple[Any, ...] | None, str]:
    """The run's cell values, or None and the reason it belongs to no cell of ``exp``."""
    why = _differs(run, exp.fixed, "the table fixes")
    if why:
        return None, why
    values = []
    for key in exp.axes:
        try:
            actual = run.value(key)
        except KeyError:
            return None, f"no '{key}' in its config"
        match = [v for v in _axis_values(exp, key) if same_value(actual, v)]
        if not match:
            return None, f"{key}={actual} is not in the table"
        values.append(match[0])
    cell = tuple(values)
    if cell not in exp.cells():
        return None, f"{cell_key(cell)} is not a cell of the table"
    why = _differs(run, exp.settings_of(cell), "the table sets", f" for {cell_key(cell)}")
    if why:
        return None, why
    if run.seed not in exp.seeds:
        return None, f"seed {run.seed} is not one of {list(exp.seeds)}"
    return cell, ""


def _differs(run: RunRecord, expected: dict[str, Any], verb: str, where: str = "") -> str:
    """Why the run does not have the ``expected`` config values ('' when it has them)."""
    for key, value in expected.items():
        try:
            actual = run.value(key)
        except KeyError:
            return f"no '{key}' in its config"
        if not same_value(actual, value):
            return f"{key}={actual}, {verb} {value}{where}"
    return ""


def _axis_values(exp: Experiment, key: str) -> list[Any]:
    return [v for grid in exp.grids for v in grid[key]]


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
