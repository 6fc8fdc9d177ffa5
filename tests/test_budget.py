"""Compute-fair budgets: equal gradient evaluations derived by the experiment loader, and the
equal wall-clock budget of train.py (the schedule refitted to the realised epochs)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

import train
from xsam.budget import epochs_within, gradient_passes
from xsam.experiments import ExperimentError, load_experiment

REPO = Path(__file__).resolve().parents[1]


def definition(tmp_path: Path, **changes) -> Path:
    raw = {
        "description": "a budget test",
        "seeds": [0],
        "axes": {"dataset": ["digits"], "optimizer": ["sgd", "sam", "msam", "gsam"]},
        "rows": ["dataset"],
        "columns": ["optimizer", "epochs"],
        "metric": "test/acc",
        "budget": {"equal": "gradients", "epochs": 3},
        "smoke": {"epochs": 1},
    } | changes
    path = tmp_path / "fair.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def epochs_of(exp) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for cell in exp.cells():
        values = dict(zip(exp.axes, cell, strict=True))
        out.setdefault(values["optimizer"], []).append(values["epochs"])
    return out


def test_gradient_passes_follow_the_option_files():
    assert [gradient_passes(o) for o in ("sgd", "sam", "msam", "xsam", "gsam", "wsam")] == [
        1, 2, 4, 2, 2, 2,
    ]  # fmt: skip
    assert gradient_passes("sam", steps=5) == 6


def test_equal_gradients_gives_every_method_the_costliest_methods_evaluations(tmp_path):
    exp = load_experiment(definition(tmp_path))
    epochs = epochs_of(exp)
    assert epochs == {"sgd": [12], "sam": [6], "msam": [3], "gsam": [6]}
    evaluations = {o: e[0] * gradient_passes(o) for o, e in epochs.items()}
    assert set(evaluations.values()) == {12}
    assert "equal gradient evaluations" in exp.budget.describe(exp.axes)


def test_include_equal_epochs_keeps_sgd_beside_sgd_2x_and_smoke_scales(tmp_path):
    budget = {"equal": "gradients", "epochs": 5, "include_equal_epochs": True}
    axes = {"dataset": ["digits"], "optimizer": ["sgd", "sam"]}
    exp = load_experiment(definition(tmp_path, budget=budget, axes=axes))
    assert epochs_of(exp) == {"sgd": [5, 10], "sam": [5]}
    smoke = exp.variant(True)
    assert epochs_of(smoke) == {"sgd": [1, 2], "sam": [1]}
    assert "epochs" not in smoke.fixed and smoke.group == "fair_smoke"
    assert all(run[-2].startswith("epochs=") for run in smoke.overrides())


def test_steps_axis_is_split_per_step_count(tmp_path):
    """The steps axis overrides every option's steps: k + 1 passes each, the costliest 4."""
    axes = {"dataset": ["digits"], "optimizer": ["sam", "xsam"], "optimizer.steps": [1, 3]}
    columns = ["optimizer", "optimizer.steps", "epochs"]
    exp = load_experiment(definition(tmp_path, axes=axes, columns=columns))
    assert {c[1:] for c in exp.cells()} == {
        ("sam", 1, 6), ("sam", 3, 3), ("xsam", 1, 6), ("xsam", 3, 3),
    }  # fmt: skip


@pytest.mark.parametrize(
    "budget, key",
    [
        ({"equal": "flops"}, "budget.equal"),
        ({"equal": "gradients"}, "budget.epochs"),
        ({"equal": "gradients", "epochs": 0}, "budget.epochs"),
        ({"equal": "wall_clock"}, "budget.seconds"),
        ({"equal": "epochs", "seconds": 5}, "budget.seconds"),
        ({"equal": "gradients", "epochs": 3, "every": 1}, "budget.every"),
        ({"equal": "wall_clock", "seconds": 9, "include_equal_epochs": True}, "budget.include"),
    ],
)
def test_bad_budget_names_the_key(tmp_path, budget, key):
    with pytest.raises(ExperimentError, match=f"key '{key}"):
        load_experiment(definition(tmp_path, budget=budget))


def test_uneven_gradient_budget_is_refused(tmp_path):
    """sam (2 passes) next to a 2-step method (3 passes) at 1 epoch: 1.5 epochs."""
    axes = {"dataset": ["digits"], "optimizer": ["sam"], "optimizer.steps": [1, 2]}
    columns = ["optimizer", "optimizer.steps", "epochs"]
    budget = {"equal": "gradients", "epochs": 1}
    with pytest.raises(ExperimentError, match="budget.epochs=1"):
        load_experiment(definition(tmp_path, axes=axes, columns=columns, budget=budget))


def test_wall_clock_budget_is_a_fixed_override_and_named_in_the_header(tmp_path):
    budget = {"equal": "wall_clock", "seconds": 600, "epochs": 50}
    exp = load_experiment(definition(tmp_path, budget=budget, columns=["optimizer"]))
    assert exp.fixed == {"time_budget_s": 600, "epochs": 50}
    assert "time_budget_s=600" in exp.overrides()[0]
    assert "equal wall-clock: 600 s per run" in exp.budget.describe(exp.axes)


def test_default_budget_is_equal_epochs(tmp_path):
    raw = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    exp = load_experiment(REPO / "experiments" / "demo.yaml")
    assert "budget" not in raw and exp.budget.describe(exp.axes).startswith("equal epochs")


def test_baselines_tables_hold_gradient_evaluations_equal():
    for name, epochs in (("baselines", 20), ("baselines_cifar100", 200)):
        exp = load_experiment(name)
        got = epochs_of(exp)
        assert got == {
            "sgd": [epochs, 2 * epochs],
            **{o: [epochs] for o in ("sam", "asam", "gsam", "wsam", "xsam")},
        }
        assert exp.paired is not None and exp.paired.baseline == "sam"


# --- train.py: equal wall-clock -------------------------------------------------------------


def test_epochs_within_the_budget():
    assert epochs_within(100.0, 30.0, cap=10) == 3
    assert epochs_within(100.0, 30.0, cap=2) == 2
    assert epochs_within(1.0, 30.0, cap=10) == 1  # always at least the measured epoch


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


FAST = ["progress=false", "logger.mode=disabled", "batch_size=200", "optimizer=gsam"]


@pytest.mark.parametrize("budget_s, realised", [(1e-6, 1), (1e9, 2)])
def test_time_budget_fixes_the_epochs_and_the_cosine_still_ends_at_zero(
    tmp_path, budget_s, realised
):
    """Budgets far below and far above an epoch: the run takes 1 epoch, or the cap of 2 (no
    timing is asserted); either way the cosine schedule reaches lr 0 at the realised end."""
    cfg, choices = compose([f"run_root={tmp_path}", "epochs=2", f"time_budget_s={budget_s}", *FAST])
    summary = train.run(cfg, choices)
    (run_dir,) = [p.parent for p in tmp_path.glob("*/*/summary.json")]
    assert summary["final"]["epoch"] == realised
    assert json.loads((run_dir / "budget.json").read_text())["epochs"] == realised
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert ckpt["schedule"]["T_max"] == realised
    assert ckpt["schedule"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-12)


def test_unset_time_budget_leaves_the_config_hash_alone():
    cfg, _ = compose([])
    assert "time_budget_s" not in train.semantic_config(cfg)
    cfg, _ = compose(["time_budget_s=60"])
    assert train.semantic_config(cfg)["time_budget_s"] == 60


@pytest.mark.parametrize("where", ["fixed", "smoke"])
def test_equal_gradients_refuses_steps_it_would_not_count(tmp_path, where):
    """optimizer.steps outside the axes would change every method's passes unseen by the
    budget (msam's 4 passes would be counted for a 2-step run)."""
    with pytest.raises(ExperimentError, match=f"key '{where}.optimizer.steps'"):
        load_experiment(definition(tmp_path, **{where: {"optimizer.steps": 2}}))
