"""Compute-fair budgets: how many epochs each run of a comparison gets.

A SAM-family step costs k + 1 gradient evaluations (the clean pass and k ascent passes), the
base optimizer's one; equal epochs therefore give SGD half of SAM's compute, and the SAM paper
itself gives SGD twice the epochs. An experiment definition chooses what is held equal:

```yaml
budget: {equal: epochs}                      # the default: every run the same epochs
budget: {equal: gradients, epochs: 10}       # the costliest method gets 10 epochs, every other
                                             # the same number of gradient evaluations (SGD
                                             # next to SAM: 20); derives an `epochs` axis
budget: {equal: gradients, epochs: 10, include_equal_epochs: true}
                                             # also the cheaper methods at 10 epochs (SGD
                                             # next to SGD 2x)
budget: {equal: wall_clock, seconds: 600}    # every run stops its schedule at 600 s
```

Equal wall-clock is ``time_budget_s`` in ``train.py``: the first epoch is timed (training and
evaluation), the run is fixed at as many whole epochs as fit the budget at that pace (at most
``epochs``), and the schedule is rebuilt for that count, so a cosine schedule still ends at 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

OPTIMIZER_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "optimizer"
KINDS = ("epochs", "gradients", "wall_clock")


@dataclass(frozen=True)
class Budget:
    equal: str = "epochs"
    epochs: int | None = None  # gradients: the costliest method's; wall_clock: the cap
    seconds: float | None = None  # wall_clock only
    include_equal_epochs: bool = False  # gradients: also every method at ``epochs``
    source_grids: tuple[dict[str, tuple[Any, ...]], ...] = field(default=(), compare=False)

    def grids(self, root: Path = OPTIMIZER_CONFIGS) -> tuple[dict[str, tuple[Any, ...]], ...]:
        """The run grids: the definition's, or (equal gradients) split by optimizer with the
        ``epochs`` axis that gives each the same gradient evaluations."""
        if self.equal != "gradients":
            return self.source_grids
        split = [(g, values, gradient_passes(*values, root=root)) for g, values in _methods(self)]
        costliest = max(passes for _, _, passes in split)
        grids = []
        for grid, values, passes in split:
            epochs = self.epochs * costliest / passes
            if epochs != int(epochs):
                raise ValueError(
                    f"budget.epochs={self.epochs}: {values[0]} would get {epochs:g} epochs "
                    f"({passes} gradient evaluations per step against {costliest})"
                )
            keys = ("optimizer", "optimizer.steps")[: len(values)]
            method = {k: (v,) for k, v in zip(keys, values, strict=True)}
            if self.include_equal_epochs and epochs != self.epochs:
                grids.append({**grid, **method, "epochs": (self.epochs,)})
            grids.append({**grid, **method, "epochs": (int(epochs),)})
        return tuple(grids)

    def fixed(self) -> dict[str, Any]:
        """Overrides every run shares."""
        if self.equal != "wall_clock":
            return {}
        return {"time_budget_s": self.seconds} | ({"epochs": self.epochs} if self.epochs else {})

    def with_epochs(self, epochs: int) -> Budget:
        return replace(self, epochs=epochs)

    def describe(self, axes: tuple[str, ...]) -> str:
        """One line for a table's header."""
        if self.equal == "gradients":
            also = f"; the cheaper ones also at {self.epochs}" if self.include_equal_epochs else ""
            return (
                f"equal gradient evaluations: the costliest method {_epochs(self.epochs)}, each "
                "other as many epochs as give it the same gradient evaluations (the `epochs` "
                f"column{also})"
            )
        if self.equal == "wall_clock":
            cap = f", at most {self.epochs} epochs" if self.epochs else ""
            return (
                f"equal wall-clock: {self.seconds:g} s per run (whole epochs at the first "
                f"epoch's pace{cap}; the schedule fitted to them)"
            )
        if "epochs" in axes:
            return "epochs as the `epochs` axis sets them"
        return "equal epochs: every run the same number of epochs"


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def parse_budget(raw: Any, grids, fail) -> Budget:
    """The ``budget`` key of a definition; ``fail(key, why)`` makes the error."""
    if raw is None:
        return Budget(source_grids=grids)
    if not isinstance(raw, dict) or raw.get("equal") not in KINDS:
        raise fail("budget.equal", f"expected one of {', '.join(KINDS)}")
    allowed = ("equal", "epochs", "seconds", "include_equal_epochs")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise fail(f"budget.{unknown[0]}", f"unknown (allowed: {', '.join(allowed)})")
    include = raw.get("include_equal_epochs", False)
    if not isinstance(include, bool) or (include and raw["equal"] != "gradients"):
        raise fail("budget.include_equal_epochs", "true or false, for equal: gradients only")
    epochs, seconds = raw.get("epochs"), raw.get("seconds")
    if epochs is not None and (type(epochs) is not int or epochs < 1):
        raise fail("budget.epochs", "expected an integer >= 1")
    if raw["equal"] == "gradients":
        if epochs is None:
            raise fail("budget.epochs", "equal gradients needs the costliest method's epochs")
        if "optimizer" not in grids[0] or "epochs" in grids[0]:
            raise fail("budget", "equal gradients needs an optimizer axis and no epochs axis")
    if raw["equal"] == "wall_clock" and not (
        isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0
    ):
        raise fail("budget.seconds", "equal wall-clock needs seconds > 0")
    if raw["equal"] != "wall_clock" and seconds is not None:
        raise fail("budget.seconds", "only for equal: wall_clock")
    return Budget(raw["equal"], epochs, seconds, include, source_grids=grids)


def _methods(budget: Budget):
    """(grid without the method axes, (optimizer[, steps])) for every method of every grid."""
    for grid in budget.source_grids:
        rest = {k: v for k, v in grid.items() if k not in ("optimizer", "optimizer.steps")}
        steps = grid.get("optimizer.steps")
        for name in grid["optimizer"]:
            for values in ((name, k) for k in steps) if steps else [(name,)]:
                yield rest, values


def gradient_passes(
    optimizer: str, steps: int | None = None, root: Path = OPTIMIZER_CONFIGS
) -> int:
    """Gradient evaluations per step of an optimizer option: steps + 1 (steps = 0 is the base
    optimizer alone, one pass). ``steps`` from the option's YAML unless given."""
    k = option_steps(optimizer, root) if steps is None else steps
    return int(k) + 1


def option_steps(name: str, root: Path = OPTIMIZER_CONFIGS) -> int:
    """The ``steps`` an optimizer option composes to: its own, else its last parent's."""
    path = Path(root) / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"optimizer option '{name}': no {path.name} in {root}")
    raw = yaml.safe_load(path.read_text()) or {}
    if "steps" in raw:
        return raw["steps"]
    parents = [d for d in raw.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    if parents:  # a later default overrides an earlier one
        return option_steps(parents[-1], root)
    raise ValueError(f"optimizer option '{name}': no steps in {path.name} or its parents")


def epochs_within(budget_s: float, first_epoch_s: float, cap: int) -> int:
    """Whole epochs that fit ``budget_s`` at the first epoch's pace: at least 1, at most cap."""
    return max(1, min(cap, math.floor(budget_s / max(first_epoch_s, 1e-9))))


BUDGET_FILE = "budget.json"  # in the run directory: what the time budget fixed


def save_realised(run_dir: Path, epochs: int, first_epoch_s: float, budget_s: float) -> None:
    record = {"time_budget_s": budget_s, "first_epoch_s": first_epoch_s, "epochs": epochs}
    (Path(run_dir) / BUDGET_FILE).write_text(json.dumps(record, indent=2) + "\n")


def realised_epochs(run_dir: Path) -> int | None:
    """The epochs a time budget fixed for this run (a resumed run keeps them), or None."""
    path = Path(run_dir) / BUDGET_FILE
    return json.loads(path.read_text())["epochs"] if path.is_file() else None
