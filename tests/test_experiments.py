"""Every experiment definition loads, is valid, expands to the runs it promises, and composes
with the Hydra configs; a broken definition fails with one line naming the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xsam.experiments import (
    EXPERIMENTS_DIR,
    ExperimentError,
    list_experiments,
    load_experiment,
)

REPO = Path(__file__).resolve().parents[1]
NAMES = list_experiments()
# runs per table: cells x 3 seeds (table 1: CIFAR 2 x 3 models + Tiny-ImageNet 1, x 4 optimizers)
EXPECTED_RUNS = {
    "baselines": 21,  # 6 optimizers and SGD 2x
    "baselines_cifar100": 21,
    "demo": 9,
    "fashion_mnist": 45,  # 9 methods x 5 seeds
    "fashion_mnist_geometry": 3,
    "fashion_mnist_rho": 28,  # SAM 5 rhos, ASAM 5, XSAM 4 rho_max, 2 seeds each
    "table1": 84,
    "table2": 24,
    "table3": 12,
    "table4": 18,
    "table5a": 12,
    "table5b": 27,
    "table5c": 9,
    "table6": 36,
}
OPTIONS = {"dataset", "model", "optimizer"}  # Hydra groups an axis may choose from


def test_every_table_of_the_protocol_is_defined() -> None:
    assert NAMES == sorted(EXPECTED_RUNS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("smoke", [False, True], ids=["full", "smoke"])
def test_definition_loads_and_expands(name: str, smoke: bool) -> None:
    definition = load_experiment(name)
    exp = definition.variant(smoke)
    runs = exp.overrides()
    assert len(runs) == EXPECTED_RUNS[name] == len(exp.cells()) * len(exp.seeds)
    assert len(exp.seeds) >= 2 and exp.metric == "test/acc"
    assert exp.reference == {}, "reference numbers are filled in by users, never invented"
    assert len({tuple(run) for run in runs}) == len(runs)
    for run in runs:
        assert run[0] == f"experiment={exp.group}" and run[-1].startswith("seed=")
    if smoke:  # the smoke overrides reach every run (a budget may scale epochs)
        assert exp.group == f"{name}_smoke" and definition.smoke
        for key, value in definition.smoke.items():
            assert any(o.startswith(f"{key}=") for o in runs[0]), (key, value)
    # one multirun per grid gives exactly the same runs
    assert sum(_product_size(sweep) for sweep in exp.sweeps()) == len(runs)


def _product_size(sweep: list[str]) -> int:
    size = 1
    for override in sweep:
        size *= len(override.split("=", 1)[1].split(","))
    return size


def test_table2_expands_to_hydra_overrides() -> None:
    runs = load_experiment("table2").overrides()
    assert runs[0] == [
        "experiment=table2",
        "dataset=cifar100",
        "model=resnet18",
        "optimizer.steps=1",
        "optimizer=sam",
        "seed=0",
    ]
    assert runs[-1][-3:] == ["optimizer.steps=5", "optimizer=xsam", "seed=2"]


def test_sweep_dry_run_prints_multirun_commands() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "sweep.py"),
            "table1",
            "--launcher",
            "slurm",
            "--dry-run",
            "--",
            "hydra.launcher.partition=gpu",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "python train.py -m hydra/launcher=slurm experiment=table1 "
        "dataset=cifar10,cifar100 model=resnet18,vgg11_bn,densenet121 "
        "optimizer=sgd,sgdplus,sam,xsam seed=0,1,2 hydra.launcher.partition=gpu",
        "python train.py -m hydra/launcher=slurm experiment=table1 "
        "dataset=tinyimagenet model=resnet18 optimizer=sgd,sgdplus,sam,xsam seed=0,1,2 "
        "hydra.launcher.partition=gpu",
    ]


GOOD = """\
name: bad
description: a definition with one thing wrong
group: bad
seeds: [0, 1, 2]
axes: {optimizer: [sam, xsam]}
rows: []
columns: [optimizer]
metric: test/acc
"""


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s.replace("seeds: [0, 1, 2]", "seeds: [0, 0]"), "seeds"),
        (lambda s: s.replace("columns: [optimizer]", "columns: []"), "rows"),
        (lambda s: s.replace("metric: test/acc\n", ""), "metric"),
        (lambda s: s + "reference: {sgd: 90.0}\n", "reference.sgd"),
        (lambda s: s + "reference: {xsam: high}\n", "reference.xsam"),
        (
            lambda s: s + "paired: {axis: optimizer, treatment: xsam, baseline: sgd}\n",
            "paired.baseline",
        ),
        (lambda s: s + "fixed: {optimizer: sam}\n", "fixed.optimizer"),
        (lambda s: s + "colums: [x]\n", "colums"),
        (lambda s: s.replace("name: bad", "name: other"), "name"),
        (lambda s: s.replace("[sam, xsam]", "[]"), "axes.optimizer"),
    ],
)
def test_invalid_definition_names_file_and_key(tmp_path: Path, edit, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(edit(GOOD))
    with pytest.raises(ExperimentError) as err:
        load_experiment(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: key '{key}'"), message


def test_valid_definition_and_unknown_name(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(GOOD)
    assert load_experiment("bad", root=tmp_path).cells() == [("sam",), ("xsam",)]
    with pytest.raises(ExperimentError, match="no such experiment definition .*known: bad"):
        load_experiment("nope", root=tmp_path)


@pytest.mark.skipif(
    not (REPO / "configs" / "config.yaml").is_file(),
    reason="the Hydra configs are not in this checkout",
)
@pytest.mark.parametrize("name", NAMES)
def test_definition_composes_with_the_configs(name: str) -> None:
    """Every option and key a table uses exists in configs/ (compose only, nothing is built)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from xsam.config_checks import check_config

    assert not _missing_options(load_experiment(name))
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        for smoke in (False, True):
            exp = load_experiment(name).variant(smoke)
            first_seed = dict(zip(exp.cells(), exp.overrides()[:: len(exp.seeds)], strict=True))
            cells = _covering_cells(exp) if not smoke else exp.cells()[:1]
            for cell in cells:
                cfg = compose("config", overrides=first_seed[cell])
                assert cfg.experiment == exp.group
                for key, value in zip(exp.axes, cell, strict=True):
                    if key not in OPTIONS:
                        assert str(OmegaConf.select(cfg, key)) == str(value), key
                for key, value in exp.settings_of(cell).items():  # a grid's `set`
                    assert str(OmegaConf.select(cfg, key)) == str(value), key
                check_config(cfg)  # every value the definition sets passes the validation


def _missing_options(exp) -> list[str]:
    """Group options a definition names that configs/ does not have."""
    values = {(k, v) for grid in exp.grids for k in OPTIONS & set(grid) for v in grid[k]}
    values |= {(k, v) for k, v in exp.fixed.items() if k in OPTIONS}
    return sorted(
        f"{k}={v}" for k, v in values if not (REPO / "configs" / k / f"{v}.yaml").is_file()
    )


def _covering_cells(exp) -> list[tuple]:
    """Cells that use every value of every axis at least once (composing is slow)."""
    cells: dict[tuple, None] = {}
    for grid in exp.grids:
        first = {key: values[0] for key, values in grid.items()}
        for key in exp.axes:
            for value in grid[key]:
                cells.setdefault(tuple({**first, key: value}[k] for k in exp.axes), None)
    return list(cells)


def test_experiments_dir_is_the_repository_folder() -> None:
    assert EXPERIMENTS_DIR == REPO / "experiments"
