"""Every experiment definition loads, is valid, expands to the runs it promises, and composes
with the Hydra configs; a broken definition fails with one line naming the file and the key."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xsam.experiments import (
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
    assert len(runs) == EXPECTED_RUNS[name]  # counted by hand from the paper's tables
    assert len(exp.seeds) >= 2 and exp.metric == "test/acc"
    assert len({tuple(run) for run in runs}) == len(runs)
    label = f"{name}_smoke" if smoke else name  # the file name, not a copied key
    assert exp.name == exp.group == label
    for run in runs:
        assert run[0] == f"study={label}" and run[-1].startswith("seed=")
    if smoke:  # the smoke overrides reach every run (a budget may scale epochs)
        assert definition.smoke
        for key in definition.smoke:
            assert all(any(o.startswith(f"{key}=") for o in run) for run in runs), key
    # one multirun per grid gives exactly the same runs: Hydra's product of each sweep
    assert sorted(run for sweep in exp.sweeps() for run in _expand(sweep)) == sorted(
        sorted(run) for run in runs
    )


def _expand(sweep: list[str]) -> list[list[str]]:
    """The runs Hydra's basic sweeper makes of ``key=a,b`` overrides: their product."""
    choices = [[f"{key}={v}" for v in values.split(",")] for key, values in
               (o.split("=", 1) for o in sweep)]  # fmt: skip
    return [sorted(run) for run in itertools.product(*choices)]


def test_table2_expands_to_hydra_overrides() -> None:
    runs = load_experiment("table2").overrides()
    assert runs[0] == [
        "study=table2",
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
            "slurm_ci",
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
        "python train.py -m hydra/launcher=slurm_ci study=table1 "
        "dataset=cifar10,cifar100 model=resnet18,vgg11_bn,densenet121 "
        "optimizer=sgd,sgdplus,sam,xsam seed=0,1,2 hydra.launcher.partition=gpu",
        "python train.py -m hydra/launcher=slurm_ci study=table1 "
        "dataset=tinyimagenet model=resnet18 optimizer=sgd,sgdplus,sam,xsam seed=0,1,2 "
        "hydra.launcher.partition=gpu",
    ]


GOOD = """\
description: a definition with one thing wrong
seeds: [0, 1, 2]
axes: {optimizer: [sam, xsam]}
rows: []
columns: [optimizer]
metric: test/acc
"""


@pytest.mark.parametrize(
    ("edit", "key", "why"),
    [
        # the schema (OmegaConf): unknown keys, types, missing keys
        (lambda s: s + "colums: [x]\n", "colums", "unknown"),
        (lambda s: s + "name: bad\n", "name", "derived from the file name"),
        (lambda s: s + "group: bad\n", "group", "derived from the file name"),
        (lambda s: s.replace("metric: test/acc\n", ""), "metric", "missing"),
        (lambda s: s.replace("rows: []\n", ""), "rows", "missing"),
        (lambda s: s.replace("[0, 1, 2]", "[0, 1.5]"), "seeds[1]", "Integer"),
        (lambda s: s + "error: maybe\n", "error", "bool"),
        (lambda s: s + "reference: {xsam: high}\n", "reference.xsam", "Float"),
        (lambda s: s + "budget: {epochs: 3}\n", "budget.equal", "missing"),
        (lambda s: s + "budget: {equal: epochs, secs: 3}\n", "budget.secs", "unknown"),
        (
            lambda s: s + "paired: {axis: optimizer, treatment: xsam}\n",
            "paired.baseline",
            "missing",
        ),
        (lambda s: s + "fixed: {epochs: [1, 2]}\n", "fixed.epochs", "scalar"),
        # the rules between keys
        (lambda s: s.replace("seeds: [0, 1, 2]", "seeds: [0, 0]"), "seeds", "distinct"),
        (lambda s: s.replace("columns: [optimizer]", "columns: []"), "rows", "each axis once"),
        (lambda s: s + "reference: {sgd: 90.0}\n", "reference.sgd", "not a cell key"),
        (
            lambda s: s + "paired: {axis: optimizer, treatment: xsam, baseline: sgd}\n",
            "paired.baseline",
            "not a value of axis",
        ),
        (lambda s: s + "fixed: {optimizer: sam}\n", "fixed.optimizer", "also set by the axes"),
        (lambda s: s + "fixed: {study: other}\n", "fixed.study", "also set by"),
        (lambda s: s + "baseline: sgd\n", "baseline", "not a column"),
        (lambda s: s + "pairs: [[xsam]]\n", "pairs[0]", "[treatment, baseline]"),
        (lambda s: s.replace("[sam, xsam]", "[]"), "axes.optimizer", "non-empty list"),
        (lambda s: s.replace("[sam, xsam]", "[sam, sam]"), "axes.optimizer", "repeat"),
    ],
)
def test_invalid_definition_names_file_and_key(tmp_path: Path, edit, key: str, why: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(edit(GOOD))
    with pytest.raises(ExperimentError) as err:
        load_experiment(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: key '{key}': "), message
    assert why in message, message


def test_the_good_definition_is_good(tmp_path: Path) -> None:
    """The cases above fail for their one edit, not for something GOOD already lacks."""
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD + "reference: {xsam: 95}\npairs: [[xsam, sam]]\nbaseline: sam\n")
    exp = load_experiment(path)
    assert (exp.name, exp.reference, exp.pairs, exp.baseline) == (
        "bad", {"xsam": 95.0}, ((("xsam",), ("sam",)),), ("sam",),
    )  # fmt: skip


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
                assert cfg.study == exp.group
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


def test_definitions_are_found_from_any_directory(tmp_path: Path) -> None:
    """A name is a file of the repository's experiments/, whatever the caller's directory;
    a relative path is read under the base folder (the repository, or $XSAM_BASE)."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "table2.yaml").write_text(GOOD)  # a decoy beside the caller
    code = (
        "from xsam.experiments import load_experiment as load; "
        "print(load('table2').path); print(load('experiments/table2.yaml').description)"
    )
    env = {k: v for k, v in os.environ.items() if k != "XSAM_BASE"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    path, description = done.stdout.splitlines()
    assert Path(path) == REPO / "experiments" / "table2.yaml"
    assert description.startswith("Multi-step ascent")
    done = subprocess.run(
        [sys.executable, "-c", code.split("; print(load('table2').path)")[0] +
         "; print(load('experiments/table2.yaml').description)"],
        cwd=REPO, capture_output=True, text=True, env={**env, "XSAM_BASE": str(tmp_path)},
    )  # fmt: skip
    assert done.stdout.strip() == "a definition with one thing wrong", done.stderr
