"""The W&B side of a run, read back with wandb's own offline tools: one run id per run
directory, the job type, the step metric, no duplicated summary keys, one table per search."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import compose_run, run_dirs

import train

SMOKE = ["debug=smoke", "epochs=2", "logger.mode=offline"]


def inspect(offline: Path, *flags: str) -> str:
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", *flags, "--json", str(offline)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def two_roots(tmp_path, monkeypatch):
    """The same config under two run roots (two users, two clusters)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    dirs = []
    for root in (tmp_path / "a", tmp_path / "b"):
        train.run(*compose_run([f"run_root={root}", *SMOKE]))
        (run_dir,) = run_dirs(root)
        dirs.append(run_dir)
    return dirs


def test_wandb_run_is_one_per_run_directory_and_reads_back(two_roots):
    metas = [json.loads((d / "meta.json").read_text()) for d in two_roots]
    assert metas[0]["config_hash"] == metas[1]["config_hash"]
    assert metas[0]["run_id"] != metas[1]["run_id"]  # never one shared online run
    run_dir, meta = two_roots[0], metas[0]
    (offline,) = (run_dir / "wandb").glob(f"offline-run-*-{meta['run_id']}")
    summary = json.loads(inspect(offline, "--summary"))
    assert summary["run_id"] == meta["run_id"]
    assert not [k for k in summary["summary"] if k.startswith("summary/")]
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["summary"]["test/acc"] == final["test/acc"]
    records = [json.loads(line) for line in inspect(offline).splitlines()]
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run.get("job_type", run.get("jobType")) == "train"
    metrics = {
        m["metric"].get("glob_name") or m["metric"]["name"]: m["metric"]
        for m in records
        if m["type"] == "metric"
    }
    assert metrics["*"]["step_metric"] == "step" and "test/acc" in metrics
    rows = [r["history"]["item"] for r in records if r["type"] == "history"]
    tables = [row for row in rows if row.get("diag/search_curve._type") == "table-file"]
    searches = [json.loads(x) for x in (run_dir / "diagnostics.jsonl").read_text().splitlines()]
    assert len(tables) == len(searches) == 2  # one table per search (one per epoch here)
    assert all(row["diag/search_curve.nrows"] == 21 for row in tables)
    assert not [k for row in rows for k in row if k.startswith("diag/search_loss/")]


def test_resumed_run_keeps_its_wandb_run_id(two_roots, monkeypatch):
    run_dir = two_roots[0]
    run_id = json.loads((run_dir / "meta.json").read_text())["run_id"]
    (run_dir / "summary.json").unlink()  # unfinished again: the rerun resumes it
    train.run(*compose_run([f"run_root={run_dir.parents[1]}", *SMOKE]))
    assert json.loads((run_dir / "meta.json").read_text())["run_id"] == run_id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) == 2
