"""Experiment definitions: one YAML per paper table in ``experiments/``.

A definition is data that both the sweep launcher and the table builder read:

```yaml
name: table2                      # = the file name; results/<name>.csv, .md, .tex
description: Multi-step SAM versus XSAM on CIFAR-100 with ResNet-18
group: table2                     # W&B group = the `experiment` config value = runs/<group>/
seeds: [0, 1, 2]
fixed: {dataset: cifar100, model: resnet18}   # overrides common to every run
axes:                             # config key -> values; the runs are their product
  optimizer: [sam, xsam]
  optimizer.steps: [1, 2, 3, 5]
rows: [optimizer.steps]           # rows + columns = the axes, each once
columns: [optimizer]
metric: test/acc                  # final-epoch value; error = 100 - metric is reported too
paired: {axis: optimizer, treatment: xsam, baseline: sam}   # optional
reference: {}                     # cell key -> reported number, for users to fill in
smoke: {epochs: 1}                # overrides for the smoke variant (group <group>_smoke)
budget: {equal: epochs}           # optional: epochs | gradients | wall_clock (xsam.budget)
```

``axes`` may also be a list of such mappings with the same keys: the runs are then the union
of their products (table 1 has Tiny-ImageNet with ResNet-18 only). Each mapping of the list
may also hold ``set: {key: value}``, overrides for its runs alone that are not axes (the
Fashion-MNIST table gives SAM and ASAM their own rho this way); a run is placed in a cell
only when it has them. A cell key is the cell's
values in ``rows + columns`` order joined by ``/`` (``cifar10/resnet18/xsam``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from xsam.budget import Budget, parse_budget

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
_REQUIRED = ("name", "description", "group", "seeds", "axes", "rows", "columns", "metric")
_OPTIONAL = ("fixed", "paired", "baseline", "pairs", "reference", "smoke", "error", "budget")
_SCALAR = (str, int, float, bool)


class ExperimentError(ValueError):
    """A definition that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Paired:
    """Compare ``treatment`` with ``baseline`` along ``axis``, seed by seed."""

    axis: str
    treatment: str
    baseline: str


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    group: str
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
        """The smoke variant: its own name and group (``<name>_smoke``), so its runs and
        results never mix with the real ones, and ``smoke`` overrides on top of ``fixed``."""
        if not smoke:
            return self
        fixed, budget, grids = {**self.fixed, **self.smoke}, self.budget, self.grids
        if budget.equal == "gradients" and "epochs" in fixed:  # the budget scales, SGD 2x stays
            budget = budget.with_epochs(fixed.pop("epochs"))
            grids = budget.grids()
        return replace(
            self,
            name=f"{self.name}_smoke",
            group=f"{self.group}_smoke",
            fixed=fixed,
            smoke={},
            budget=budget,
            grids=grids,
        )

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
        return [f"experiment={self.group}"] + [
            f"{k}={format_value(v)}" for k, v in self.fixed.items()
        ]


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


def load_experiment(name_or_path: str | Path, root: Path = EXPERIMENTS_DIR) -> Experiment:
    """Load ``root/<name>.yaml`` (or a path to a YAML file) and validate it."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(root) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(list_experiments(root)) or "none"
        raise ExperimentError(f"{path}: no such experiment definition (known: {known})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from exc
    return _parse(raw, path)


def _parse(raw: Any, path: Path) -> Experiment:
    def fail(key: str, why: str) -> ExperimentError:
        return ExperimentError(f"{path}: key '{key}': {why}")

    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: expected a mapping at the top level")
    for key in _REQUIRED:
        if key not in raw:
            raise fail(key, "missing")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise fail(unknown[0], f"unknown (allowed: {', '.join(_REQUIRED + _OPTIONAL)})")
    for key in ("name", "description", "group", "metric"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise fail(key, "expected a non-empty string")
    if raw["name"] != path.stem:
        raise fail("name", f"'{raw['name']}' differs from the file name '{path.stem}'")
    seeds = raw["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(type(s) is int for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise fail("seeds", "expected a non-empty list of distinct integers")
    source_grids, settings = _parse_grids(raw["axes"], fail)
    budget = parse_budget(raw.get("budget"), source_grids, fail)
    if budget.equal == "gradients" and any(settings):
        raise fail("budget", "equal gradients derives its own grids: no grid may hold 'set'")
    try:
        grids = budget.grids()
    except ValueError as exc:
        raise fail("budget", str(exc)) from exc
    settings = settings if budget.equal != "gradients" else tuple({} for _ in grids)
    rows, columns = (_parse_keys(raw[k], k, fail) for k in ("rows", "columns"))
    if sorted(rows + columns) != sorted(grids[0]):
        raise fail("rows", f"rows + columns must list each axis once: {sorted(grids[0])}")
    fixed = budget.fixed() | _parse_overrides(raw.get("fixed") or {}, "fixed", fail)
    smoke = _parse_overrides(raw.get("smoke") or {}, "smoke", fail)
    set_keys = {key for grid_settings in settings for key in grid_settings}
    for name, values in (("fixed", fixed), ("smoke", smoke)):
        for key in values:
            scaled = name == "smoke" and key == "epochs" and budget.equal == "gradients"
            if (key in grids[0] and not scaled) or key in set_keys or key in ("experiment", "seed"):
                raise fail(
                    f"{name}.{key}", "also set by the axes, a grid's set, the seeds or the group"
                )
    error = raw.get("error", True)
    if not isinstance(error, bool):
        raise fail("error", "expected true or false")
    exp = Experiment(
        name=raw["name"],
        description=" ".join(raw["description"].split()),
        group=raw["group"],
        seeds=tuple(seeds),
        grids=grids,
        rows=rows,
        columns=columns,
        metric=raw["metric"],
        fixed=fixed,
        smoke=smoke,
        error=error,
        path=path,
        paired=_parse_paired(raw.get("paired"), budget.source_grids, fail),
        budget=budget,
        settings=settings,
    )
    _check_settings_agree(exp, fail)
    return replace(
        exp,
        reference=_parse_reference(raw.get("reference") or {}, exp, fail),
        baseline=_parse_column(raw.get("baseline"), exp, fail, "baseline"),
        pairs=tuple(
            tuple(_parse_column(c, exp, fail, f"pairs[{i}]") for c in pair)
            for i, pair in enumerate(_parse_pairs(raw.get("pairs"), fail))
        ),
    )


def _parse_grids(axes: Any, fail) -> tuple[tuple[dict[str, tuple[Any, ...]], ...], tuple]:
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
        settings.append(_parse_overrides(grid.pop("set", {}) or {}, f"{where}.set", fail))
        for key in settings[-1]:
            if key in grid or key in ("experiment", "seed"):
                raise fail(f"{where}.set.{key}", "also an axis, the seed or the group")
        for key, values in grid.items():
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, _SCALAR) for v in values)
            ):
                raise fail(f"{where}.{key}", "expected a non-empty list of scalars")
            if len({format_value(v) for v in values}) != len(values):
                raise fail(f"{where}.{key}", "values repeat")
        if set(grid) != set(grids[0]):
            raise fail(where, f"keys {sorted(grid)} differ from axes[0] {sorted(grids[0])}")
        parsed.append({key: tuple(values) for key, values in grid.items()})
    return tuple(parsed), tuple(settings)


def _check_settings_agree(exp: Experiment, fail) -> None:
    """A cell that two grids hold must get the same ``set`` overrides from both."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, (grid, settings) in enumerate(zip(exp.grids, exp._grid_settings(), strict=True)):
        for cell in itertools.product(*(grid[key] for key in exp.axes)):
            if cell in seen and seen[cell] != settings:
                raise fail(f"axes[{i}].set", f"cell {cell_key(cell)} is also in an earlier grid")
            seen.setdefault(cell, settings)


def _parse_pairs(raw: Any, fail) -> list[list[Any]]:
    """``pairs: [[xsam/1/20, sam/1/20], ...]``: (treatment, baseline) column keys."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise fail("pairs", "expected a list of [treatment, baseline] column keys")
    return raw


def _parse_column(raw: Any, exp: Experiment, fail, where: str) -> tuple[Any, ...] | None:
    """A column key (``sgd/0/20``: the values of ``columns`` joined by '/')."""
    if raw is None:
        return None
    n_rows = len(exp.rows)
    for cell in exp.cells():
        if cell_key(cell[n_rows:]) == format_value(raw):
            return cell[n_rows:]
    columns = sorted({cell_key(c[n_rows:]) for c in exp.cells()})
    raise fail(where, f"'{raw}' is not a column (one of: {', '.join(columns)})")


def _parse_keys(keys: Any, name: str, fail) -> tuple[str, ...]:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise fail(name, "expected a list of axis keys")
    return tuple(keys)


def _parse_overrides(values: Any, name: str, fail) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise fail(name, "expected a mapping from a config key to a value")
    for key, value in values.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, _SCALAR)):
            raise fail(f"{name}.{key}", "expected a scalar value")
    return dict(values)


def _parse_paired(raw: Any, grids, fail) -> Paired | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"axis", "treatment", "baseline"}:
        raise fail("paired", "expected a mapping with axis, treatment and baseline")
    paired = Paired(**{k: raw[k] for k in ("axis", "treatment", "baseline")})
    if paired.axis not in grids[0]:
        raise fail("paired.axis", f"'{paired.axis}' is not an axis")
    for side in ("treatment", "baseline"):
        value = getattr(paired, side)
        if not all(any(same_value(value, v) for v in g[paired.axis]) for g in grids):
            raise fail(f"paired.{side}", f"'{value}' is not a value of axis '{paired.axis}'")
    return paired


def _parse_reference(raw: Any, exp: Experiment, fail) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise fail("reference", "expected a mapping from a cell key to a number")
    keys = {cell_key(cell) for cell in exp.cells()}
    for key, value in raw.items():
        if key not in keys:
            raise fail(
                f"reference.{key}",
                "not a cell key (values of rows + columns, "
                f"joined by '/', e.g. '{next(iter(keys))}')",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"reference.{key}", "expected a number")
    return {k: float(v) for k, v in raw.items()}
