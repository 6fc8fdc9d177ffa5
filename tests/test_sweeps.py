"""Sweeps as a user runs them: a failed job does not stop the others, every failure is listed
at the end with a non-zero exit; the table scripts answer bad input with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["debug=smoke", "train.limit_batches=1", "batch_size=100"]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def finished_runs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*/summary.json"))]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.slow
def test_multirun_goes_on_past_a_failed_job_and_lists_it_at_the_end(tmp_path):
    result = cli("train.py", "-m", f"run_root={tmp_path}", *SMOKE, "lr=0.05,-1,0.1")
    assert result.returncode == 1, result.stderr
    assert sorted(r["final"]["lr"] for r in finished_runs(tmp_path)) == [0.05, 0.1]
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed job")]
    assert len(failed) == 1 and "lr=-1" in failed[0] and "lr must be" in failed[0]
    assert "1 job(s) of the sweep failed" in result.stderr.splitlines()[-1]


def two_grid_experiment(path: Path) -> Path:
    """An experiment definition of two grids (two multiruns); the first one's lr is bad."""
    definition = {
        "description": "two grids",
        "seeds": [0],
        "fixed": {},
        "axes": [{"optimizer": ["sgd"], "lr": [-1]}, {"optimizer": ["sgd"], "lr": [0.05]}],
        "rows": ["optimizer"],
        "columns": ["lr"],
        "metric": "test/acc",
    }
    path.write_text(json.dumps(definition))  # JSON is YAML
    return path


@pytest.mark.slow
def test_sweep_script_goes_on_past_a_failed_grid_and_exits_nonzero(tmp_path):
    definition = two_grid_experiment(tmp_path / "two.yaml")
    runs = tmp_path / "runs"
    result = cli("scripts/sweep.py", str(definition), "--", f"run_root={runs}", *SMOKE)
    assert result.returncode == 1, result.stderr
    (summary,) = finished_runs(runs)  # the second grid ran although the first failed
    assert summary["final"]["lr"] == 0.05
    assert result.stderr.count("failed (1): python train.py -m") == 1
    assert result.stderr.splitlines()[-1] == "error: 1 of 2 sweeps failed"


@pytest.mark.parametrize("script", ["scripts/aggregate.py", "scripts/sweep.py"])
def test_unknown_table_is_one_line(script):
    result = cli(script, "table99")
    assert result.returncode == 2
    assert "table99" in one_error_line(result) and "known: " in result.stderr


@pytest.mark.slow
def test_aggregate_with_a_truncated_summary_is_one_line_naming_it(tmp_path):
    runs = tmp_path / "runs"
    assert cli("train.py", f"run_root={runs}", *SMOKE, "study=demo").returncode == 0
    (summary,) = runs.glob("demo/*/summary.json")
    summary.write_bytes(summary.read_bytes()[:40])
    result = cli("scripts/aggregate.py", "demo", "--runs-dir", str(runs), "--out", str(tmp_path))
    assert result.returncode == 2
    assert str(summary) in one_error_line(result)


@pytest.mark.slow
def test_optuna_sweeper_maximises_the_runs_objective(tmp_path):
    """Hydra's Optuna sweeper, 2 trials of 1 epoch: train.py returns objective (test/acc)."""
    import yaml

    search = [
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.direction=maximize",
    ]
    result = cli("train.py", "-m", *search, "lr=interval(0.01,0.1)", f"run_root={tmp_path}", *SMOKE)
    assert result.returncode == 0, result.stderr
    runs = finished_runs(tmp_path)
    assert len(runs) == 2
    (found,) = tmp_path.glob("_hydra/*/*/optimization_results.yaml")
    best = yaml.safe_load(found.read_text())
    assert best["best_value"] == max(r["final"]["test/acc"] for r in runs)
    winners = [r["final"]["lr"] for r in runs if r["final"]["test/acc"] == best["best_value"]]
    assert best["best_params"]["lr"] in winners  # (the first of tied trials)


def test_launcher_is_an_option_of_hydras_launcher_group():
    """--launcher NAME is hydra/launcher=NAME for every preset in configs/hydra/launcher/ and
    every installed launcher; anything else is one line listing them."""
    presets = sorted(p.stem for p in (REPO / "configs" / "hydra" / "launcher").glob("*.yaml"))
    assert "slurm_ci" in presets
    for name in [*presets, "basic", "joblib"]:
        result = cli("scripts/sweep.py", "demo", "--dry-run", "--launcher", name)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"python train.py -m hydra/launcher={name} study=demo ")
    plain = cli("scripts/sweep.py", "demo", "--dry-run")
    assert plain.stdout.startswith("python train.py -m study=demo "), plain.stdout
    result = cli("scripts/sweep.py", "demo", "--dry-run", "--launcher", "slrum")
    line = one_error_line(result)
    assert result.returncode == 2 and "--launcher slrum" in line
    assert all(name in line for name in [*presets, "basic", "joblib"]), line
