"""Experiment definitions: one YAML per paper table in ``experiments/``.

A definition is data that both the sweep launcher and the table builder read. Its keys,
their types and which are required are the dataclass :class:`Definition` (an OmegaConf
structured schema: an unknown key, a wrong type or a missing key is OmegaConf's error, turned
into one line naming the file and the key); the rules that tie keys together (rows + columns
are the axes, ``paired`` and ``baseline`` name axis values, ...) are the short functions below.
The name is the file's stem (``experiments/table2.yaml`` is ``table2``: its runs' study label,
``runs/table2/``, the W&B group and ``results/table2.*``); the smoke variant is
``table2_smoke``. The format, key by key: docs/TABLES.md.

``axes`` is a mapping from a config key to values (the runs are their product, x seeds) or a
list of such mappings with the same keys (the union of their products); a mapping of a list
may hold ``set: {key: value}``, overrides for its runs alone. A cell key is the cell's values
in ``rows + columns`` order joined by ``/`` (``cifar10/resnet18/xsam``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from xsam.budget import Budget, parse_budget
from xsam.paths import REPO, resolve
from xsam.run_identity import STUDY

EXPERIMENTS_DIR = REPO / "experiments"
_SCALAR = (str, int, float, bool)
# a union keeps 2 an int and 2.0 a float, as YAML wrote them (Hydra overrides tell them apart)
Scalar = bool | int | float | str | None


class ExperimentError(ValueError):
    """A definition that cannot be used; the message names the file and the key."""


# --- the schema: what OmegaConf checks -------------------------------------------------------


@dataclass
class PairedSpec:
    axis: str = MISSING
    treatment: Any = MISSING
    baseline: Any = MISSING


@dataclass
class BudgetSpec:  # the values' meaning and their rules: xsam.budget
    equal: str = MISSING
    epochs: int | None = None
    seconds: int | float | None = None
    include_equal_epochs: bool = False


@dataclass
class Definition:
    """The keys of a definition file (docs/TABLES.md); ``???`` ones are required."""

    description: str = MISSING
    seeds: list[int] = MISSING
    axes: Any = MISSING  # a mapping or a list of mappings: checked by _grids
    rows: list[str] = MISSING
    columns: list[str] = MISSING
    metric: str = MISSING
    fixed: dict[str, Scalar] = field(default_factory=dict)
    smoke: dict[str, Scalar] = field(default_factory=dict)
    paired: PairedSpec | None = None
    baseline: Any = None  # a column key
    pairs: list[list[Any]] = field(default_factory=list)  # [treatment, baseline] column keys
    reference: dict[str, float] = field(default_factory=dict)
    error: bool = True
    budget: BudgetSpec | None = None


# --- the loaded definition -------------------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    """Compare ``treatment`` with ``baseline`` along ``axis``, seed by seed."""

    axis: str
    treatment: str
    baseline: str


@dataclass(frozen=True)
class Experiment:
    name: str  # the file's stem; ``<stem>_smoke`` for the smoke variant
    description: str
    seeds: tuple[int, ...]
    grids: tuple[dict[str, tuple[Any, ...]], ...]
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    metric: str
    fixed: dict[str, Any] = field(default_factory=dict)
    paired: Paired | None = None
    reference: dict[str, float] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)
    error: bool = True
    path: Path | None = None
    settings: tuple[dict[str, Any], ...] = ()  # per grid: its ``set`` overrides
    baseline: tuple[Any, ...] | None = None  # a column's values: paired differences against it
    pairs: tuple[tuple[tuple[Any, ...], tuple[Any, ...]], ...] = ()  # (treatment, baseline) columns
    budget: Budget = field(default_factory=Budget)

    @property
    def group(self) -> str:
        """The runs' study label: ``runs/<group>/`` and the W&B group (= the name)."""
        return self.name

    @property
    def axes(self) -> tuple[str, ...]:
        """The axis keys in table order: rows, then columns."""
        return self.rows + self.columns

    def cells(self) -> list[tuple[Any, ...]]:
        """Every cell's values (in ``axes`` order), in definition order, without repeats."""
        seen: dict[tuple[Any, ...], None] = {}
        for grid in self.grids:
            for values in itertools.product(*(grid[key] for key in self.axes)):
                seen.setdefault(values, None)
        return list(seen)

    def variant(self, smoke: bool) -> Experiment:
        """The smoke variant: its own name (``<name>_smoke``, and so its own runs and results,
        which never mix with the real ones), ``smoke`` overrides on top of ``fixed``."""
        if not smoke:
            return self
        fixed, budget, grids = {**self.fixed, **self.smoke}, self.budget, self.grids
        if budget.equal == "gradients" and "epochs" in fixed:  # the budget scales, SGD 2x stays
            budget = budget.with_epochs(fixed.pop("epochs"))
            grids = budget.grids()
        name = f"{self.name}_smoke"
        return replace(self, name=name, fixed=fixed, smoke={}, budget=budget, grids=grids)

    def settings_of(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        """The ``set`` overrides of the (first) grid that holds ``cell``."""
        for grid, settings in zip(self.grids, self._grid_settings(), strict=True):
            if all(
                any(same_value(v, g) for g in grid[k]) for k, v in zip(self.axes, cell, strict=True)
            ):
                return settings
        raise KeyError(cell_key(cell))

    def cell_overrides(self, cell: tuple[Any, ...]) -> list[str]:
        """The Hydra overrides of a cell's runs, without the seed."""
        return (
            self._head()
            + [f"{k}={format_value(v)}" for k, v in zip(self.axes, cell, strict=True)]
            + [f"{k}={format_value(v)}" for k, v in self.settings_of(cell).items()]
        )

    def overrides(self) -> list[list[str]]:
        """One Hydra override list per run: cells x seeds (what ``sweeps`` expands to)."""
        return [
            self.cell_overrides(cell) + [f"seed={seed}"]
            for cell in self.cells()
            for seed in self.seeds
        ]

    def sweeps(self) -> list[list[str]]:
        """One Hydra multirun override list per grid (comma-separated values)."""
        return [
            self._head()
            + [f"{k}={','.join(map(format_value, grid[k]))}" for k in self.axes]
            + [f"{k}={format_value(v)}" for k, v in settings.items()]
            + [f"seed={','.join(map(str, self.seeds))}"]
            for grid, settings in zip(self.grids, self._grid_settings(), strict=True)
        ]

    def _grid_settings(self) -> tuple[dict[str, Any], ...]:
        return self.settings or tuple({} for _ in self.grids)

    def _head(self) -> list[str]:
        return [f"{STUDY}={self.group}"] + [f"{k}={format_value(v)}" for k, v in self.fixed.items()]


def cell_key(values: tuple[Any, ...]) -> str:
    """The cell key used in ``reference``: values joined by ``/``."""
    return "/".join(format_value(v) for v in values)


def format_value(value: Any) -> str:
    """A value as it is written on a Hydra command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def same_value(a: Any, b: Any) -> bool:
    """Config equality that does not care whether YAML said ``2`` or ``2.0``."""
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return format_value(a) == format_value(b)


def list_experiments(root: Path = EXPERIMENTS_DIR) -> list[str]:
    """Names of the definitions in ``root``."""
    return sorted(p.stem for p in Path(root).glob("*.yaml"))


# --- loading: the schema first, then the rules between keys -----------------------------------


def load_experiment(name_or_path: str | Path, root: Path = EXPERIMENTS_DIR) -> Experiment:
    """Load ``root/<name>.yaml``, or a YAML file (a relative path: under the base folder of
    :mod:`xsam.paths`), and validate it."""
    path = resolve(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(root) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(list_experiments(root)) or "none"
        raise ExperimentError(f"{path}: no such experiment definition (known: {known})")
    return _build(_read_schema(path), path)


def _read_schema(path: Path) -> dict[str, Any]:
    """The file merged onto :class:`Definition`, as plain containers."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: expected a mapping at the top level")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Definition), OmegaConf.create(raw))
    except OmegaConfBaseException as err:
        raise ExperimentError(f"{path}: key '{err.full_key}': {_why(err)}") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ExperimentError(f"{path}: key '{missing[0]}': missing")
    return OmegaConf.to_container(merged)


def _why(err: OmegaConfBaseException) -> str:
    if isinstance(err, ConfigKeyError) and err.full_key in ("name", "group"):
        return "derived from the file name: remove it"  # definitions once copied both
    why = err.msg.splitlines()[0]
    if isinstance(err, ConfigKeyError):
        return f"unknown ({why})"
    return why


def _build(raw: dict[str, Any], path: Path) -> Experiment:
    def fail(key: str, why: str) -> ExperimentError:
        return ExperimentError(f"{path}: key '{key}': {why}")

    for key in ("description", "metric"):
        if not raw[key].strip():
            raise fail(key, "expected a non-empty string")
    if not raw["seeds"] or len(set(raw["seeds"])) != len(raw["seeds"]):
        raise fail("seeds", "expected a non-empty list of distinct integers")
    source_grids, settings = _grids(raw["axes"], fail)
    budget, grids, settings = _budget(raw["budget"], source_grids, settings, fail)
    rows, columns = tuple(raw["rows"]), tuple(raw["columns"])
    if sorted(rows + columns) != sorted(grids[0]):
        raise fail("rows", f"rows + columns must list each axis once: {sorted(grids[0])}")
    fixed = budget.fixed() | _overrides(raw["fixed"], "fixed", fail)
    smoke = _overrides(raw["smoke"], "smoke", fail)
    for name, overrides in (("fixed", fixed), ("smoke", smoke)):
        if budget.equal == "gradients" and "optimizer.steps" in overrides:
            # the budget counts each method's passes from its axis value or its option's YAML
            raise fail(f"{name}.optimizer.steps", "equal gradients needs the steps as an axis")
    _check_overlaps(fixed, smoke, grids, settings, budget, fail)
    exp = Experiment(
        name=path.stem,
        description=" ".join(raw["description"].split()),
        seeds=tuple(raw["seeds"]),
        grids=grids,
        rows=rows,
        columns=columns,
        metric=raw["metric"],
        fixed=fixed,
        smoke=smoke,
        error=raw["error"],
        path=path,
        paired=_paired(raw["paired"], budget.source_grids, fail),
        budget=budget,
        settings=settings,
    )
    _check_settings_agree(exp, fail)
    return replace(
        exp,
        reference=_reference(raw["reference"], exp, fail),
        baseline=_column(raw["baseline"], exp, fail, "baseline"),
        pairs=_pairs(raw["pairs"], exp, fail),
    )


def _grids(axes: Any, fail) -> tuple[tuple[dict[str, tuple[Any, ...]], ...], tuple]:
    """The grids and, for each, its ``set`` overrides."""
    grids = axes if isinstance(axes, list) else [axes]
    if not grids:
        raise fail("axes", "expected a mapping or a non-empty list of mappings")
    parsed, settings = [], []
    for i, grid in enumerate(grids):
        where = "axes" if isinstance(axes, dict) else f"axes[{i}]"
        if not isinstance(grid, dict) or not grid:
            raise fail(where, "expected a non-empty mapping from a config key to values")
        grid = dict(grid)
        settings.append(_overrides(grid.pop("set", None) or {}, f"{where}.set", fail))
        for key in settings[-1]:
            if key in grid or key in (STUDY, "seed"):
                raise fail(f"{where}.set.{key}", "also an axis, the seed or the study label")
        for key, values in grid.items():
            _check_axis_values(values, f"{where}.{key}", fail)
        if set(grid) != set(grids[0]):
            raise fail(where, f"keys {sorted(grid)} differ from axes[0] {sorted(grids[0])}")
        parsed.append({key: tuple(values) for key, values in grid.items()})
    return tuple(parsed), tuple(settings)


def _check_axis_values(values: Any, where: str, fail) -> None:
    if not isinstance(values, list) or not values or not all(_is_scalar(v) for v in values):
        raise fail(where, "expected a non-empty list of scalars")
    if len({format_value(v) for v in values}) != len(values):
        raise fail(where, "values repeat")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, _SCALAR)


def _overrides(values: Any, where: str, fail) -> dict[str, Any]:
    """A mapping of overrides: ``fixed``, ``smoke``, a grid's ``set``. Checked here because
    OmegaConf merges a list or a mapping into a union-typed value unchecked, and ``axes`` is
    free-form in the schema."""
    if not isinstance(values, dict):
        raise fail(where, "expected a mapping from a config key to a value")
    for key, value in values.items():
        if not (value is None or _is_scalar(value)):
            raise fail(f"{where}.{key}", "expected a scalar value")
    return dict(values)


def _budget(raw: dict | None, source_grids, settings, fail):
    """The budget, the grids it gives (equal gradients derives its own) and their settings."""
    budget = parse_budget(raw, source_grids, fail)
    if budget.equal == "gradients" and any(settings):
        raise fail("budget", "equal gradients derives its own grids: no grid may hold 'set'")
    try:
        grids = budget.grids()
    except ValueError as exc:
        raise fail("budget", str(exc)) from exc
    return budget, grids, settings if budget.equal != "gradients" else tuple({} for _ in grids)


def _check_overlaps(fixed, smoke, grids, settings, budget: Budget, fail) -> None:
    """A key is set in one place only: an axis, a grid's set, fixed/smoke, or the seeds."""
    set_keys = {key for grid_settings in settings for key in grid_settings}
    for name, values in (("fixed", fixed), ("smoke", smoke)):
        for key in values:
            scaled = name == "smoke" and key == "epochs" and budget.equal == "gradients"
            if (key in grids[0] and not scaled) or key in set_keys or key in (STUDY, "seed"):
                raise fail(
                    f"{name}.{key}", "also set by the axes, a grid's set, the seeds or the name"
                )


def _check_settings_agree(exp: Experiment, fail) -> None:
    """A cell that two grids hold must get the same ``set`` overrides from both."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, (grid, settings) in enumerate(zip(exp.grids, exp._grid_settings(), strict=True)):
        for cell in itertools.product(*(grid[key] for key in exp.axes)):
            if cell in seen and seen[cell] != settings:
                raise fail(f"axes[{i}].set", f"cell {cell_key(cell)} is also in an earlier grid")
            seen.setdefault(cell, settings)


def _paired(raw: dict | None, grids, fail) -> Paired | None:
    if raw is None:
        return None
    paired = Paired(**raw)
    if paired.axis not in grids[0]:
        raise fail("paired.axis", f"'{paired.axis}' is not an axis")
    for side in ("treatment", "baseline"):
        value = getattr(paired, side)
        if not all(any(same_value(value, v) for v in g[paired.axis]) for g in grids):
            raise fail(f"paired.{side}", f"'{value}' is not a value of axis '{paired.axis}'")
    return paired


def _pairs(raw: list[list[Any]], exp: Experiment, fail) -> tuple:
    """``pairs: [[xsam/1/20, sam/1/20], ...]``: (treatment, baseline) column keys."""
    for i, pair in enumerate(raw):
        if len(pair) != 2:
            raise fail(f"pairs[{i}]", "expected [treatment, baseline] column keys")
    return tuple(
        tuple(_column(c, exp, fail, f"pairs[{i}]") for c in pair) for i, pair in enumerate(raw)
    )


def _column(raw: Any, exp: Experiment, fail, where: str) -> tuple[Any, ...] | None:
    """A column key (``sgd/0/20``: the values of ``columns`` joined by '/')."""
    if raw is None:
        return None
    n_rows = len(exp.rows)
    for cell in exp.cells():
        if cell_key(cell[n_rows:]) == format_value(raw):
            return cell[n_rows:]
    columns = sorted({cell_key(c[n_rows:]) for c in exp.cells()})
    raise fail(where, f"'{raw}' is not a column (one of: {', '.join(columns)})")


def _reference(raw: dict[str, float], exp: Experiment, fail) -> dict[str, float]:
    keys = {cell_key(cell) for cell in exp.cells()}
    for key in raw:
        if key not in keys:
            raise fail(
                f"reference.{key}",
                "not a cell key (values of rows + columns, "
                f"joined by '/', e.g. '{next(iter(keys))}')",
            )
    return raw
