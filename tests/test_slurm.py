"""Sweeps through SLURM with the submitit launcher: preemption, requeue, exact resume, skips.

The tests marked ``slurm`` need a SLURM cluster that runs jobs on this machine, with no GPU:

    bash .ci/slurm_up.sh && source /tmp/slurm/env.sh    # one node, on loopback
    python -m pytest -m slurm tests/test_slurm.py        # 3 to 5 minutes on 2 CPUs
    bash .ci/slurm_down.sh

Without one (no ``SLURM_CONF``, or ``sinfo`` cannot reach it) they are skipped, with the reason.
The launcher presets are checked here too, without a cluster.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PRESETS = sorted(p.stem for p in (CONFIGS / "hydra" / "launcher").glob("*.yaml"))
# two runs of the digits demo; an epoch of 89 steps takes 1 to 3 s on one CPU
SWEEP = [
    "study=slurm_test",
    "optimizer=sam,xsam",
    "seed=0",
    "epochs=6",
    "batch_size=16",
    "progress=false",
    "logger.mode=offline",
]
SLURM = ["hydra/launcher=slurm_ci"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def slurm_missing() -> str | None:
    """Why the cluster tests cannot run here, or None."""
    start = "start the test cluster: bash .ci/slurm_up.sh && source /tmp/slurm/env.sh"
    if not os.environ.get("SLURM_CONF"):
        return f"SLURM_CONF is not set; {start}"
    for tool in ("sinfo", "squeue", "scancel", "sbatch", "sacct"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH; {start}"
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError) as err:
        return f"sinfo cannot reach the cluster of SLURM_CONF={os.environ['SLURM_CONF']} ({err})"
    return None


needs_slurm = pytest.mark.skipif(slurm_missing() is not None, reason=str(slurm_missing()))


# ------------------------------------------------------------------ presets, no cluster needed
def launcher_params(preset: str, *overrides: str) -> dict:
    """What the launcher hands to submitit, composed as `train.py -m` would."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"hydra/launcher={preset}", *overrides], return_hydra_config=True
        )
    return instantiate(cfg.hydra.launcher).params


@pytest.mark.parametrize("preset", PRESETS)
def test_every_launcher_preset_composes(preset):
    params = launcher_params(preset)
    assert params["additional_parameters"]["requeue"] is True
    # submitit counts a signal after min(80 %, limit - 10 min) of the limit as a time-out
    assert params["timeout_min"] >= 11
    assert params["tasks_per_node"] == (params["gpus_per_node"] or 1)


def test_multigpu_preset_starts_one_task_per_gpu():
    params = launcher_params("slurm_multigpu", "hydra.launcher.gpus_per_node=8")
    assert params["tasks_per_node"] == 8 and params["gpus_per_node"] == 8


def test_test_cluster_preset_asks_for_what_one_small_node_has():
    params = launcher_params("slurm_ci")
    assert params["gpus_per_node"] is None and params["cpus_per_task"] == 1
    assert params["mem_gb"] <= 4


def test_train_main_pickles_by_value_as_submitit_ships_it():
    """`python train.py -m hydra/launcher=slurm` sends __main__.main to the jobs by value:
    cloudpickle must be able to pickle it with every global that its functions reach."""
    import cloudpickle

    import train

    cloudpickle.register_pickle_by_value(train)
    try:
        cloudpickle.dumps(train.main)
    finally:
        cloudpickle.unregister_pickle_by_value(train)


# ------------------------------------------------------------------ helpers for the cluster tests
def launch(args: list[str], run_root: Path, log: Path) -> subprocess.Popen:
    """`python train.py -m ...` in the background (the sweep's driver), output to a file."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), "-m", *args, f"run_root={run_root}"],
            cwd=REPO,
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, f"sweep failed ({proc.returncode}):\n{log.read_text()[-4000:]}"


def sweep_dirs(run_root: Path) -> list[Path]:
    """Hydra's folder of each multirun under run_root, oldest first."""
    return sorted((run_root / "_hydra").glob("*/*-multirun"))


def job_ids(sweep: Path) -> dict[int, str]:
    """Hydra job number (= array task) -> SLURM job id ``ARRAY_TASK``, from submitit's folders."""
    found = (re.fullmatch(r"\d+_(\d+)", p.name) for p in (sweep / ".submitit").glob("*_*"))
    return {int(m[1]): m[0] for m in found if m}


def cancel_jobs(run_root: Path) -> None:
    """Cancel whatever the sweeps under run_root submitted (and nothing else)."""
    folders = (p.name for s in sweep_dirs(run_root) for p in (s / ".submitit").glob("*"))
    jobs = {m[1] for m in (re.fullmatch(r"(\d+)(_\d+)?", f) for f in folders) if m}
    if jobs:
        subprocess.run(["scancel", *sorted(jobs)], capture_output=True, timeout=30)


def job_log(sweep: Path, num: int) -> str:
    """All that job `num` of a sweep wrote: submitit's stdout and stderr, Hydra's train.log."""
    job = sweep / ".submitit" / job_ids(sweep)[num]
    files = [*sorted(job.glob("*_log.*")), sweep / str(num) / "train.log"]
    return "\n".join(f.read_text(errors="replace") for f in files if f.exists())


def job_number(sweep: Path, run_dir: Path) -> int:
    """The Hydra job of the sweep that trains run_dir, from the job's overrides."""
    optimizer = json.loads((run_dir / "meta.json").read_text())["choices"]["optimizer"]
    for overrides in sweep.glob("*/.hydra/overrides.yaml"):
        if f"- optimizer={optimizer}\n" in overrides.read_text():
            return int(overrides.parent.parent.name)
    raise AssertionError(f"no job of {sweep} trains {run_dir}")


def wait_for(what: str, condition, proc: subprocess.Popen, log: Path, timeout: float):
    """Poll condition() until it holds; fail early if proc (the sweep's driver) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended ({proc.returncode}):\n{log.read_text()[-4000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_dirs(run_root: Path) -> dict[str, Path]:
    return {p.name: p for p in (run_root / "slurm_test").glob("*") if (p / "meta.json").exists()}


def metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")} for x in lines]


def wandb_ids(run_dir: Path) -> list[str]:
    """The W&B run id of each start of the run (offline-run-<date>_<time>-<id>; the id is the
    config hash and a per-directory suffix, itself joined by '-')."""
    return [p.name.split("-", 3)[3] for p in sorted((run_dir / "wandb").glob("offline-run-*"))]


def snapshot(run_root: Path) -> dict[str, int]:
    files = (p for p in (run_root / "slurm_test").rglob("*") if p.is_file())
    return {str(p): p.stat().st_mtime_ns for p in files}


# ------------------------------------------------------------------ the cluster tests
@pytest.mark.slurm
@needs_slurm
def test_preempted_sweep_requeues_resumes_and_matches_an_unpreempted_run(tmp_path):
    root, ref = tmp_path / "slurm", tmp_path / "plain"
    sweep = plain = None
    try:
        sweep = launch([*SLURM, *SWEEP], root, tmp_path / "sweep.log")
        first = wait_for(
            "a first checkpoint",
            lambda: next(iter(root.glob("slurm_test/*/checkpoint.pt")), None),
            sweep,
            tmp_path / "sweep.log",
            timeout=240,
        ).parent  # epoch 1 is saved: the job is in epoch 2 (or about to start it)
        (sweep_dir,) = sweep_dirs(root)
        num = job_number(sweep_dir, first)
        victim = job_ids(sweep_dir)[num]
        subprocess.run(["scancel", "--signal=USR2", victim], check=True, timeout=30)
        # the same two runs without SLURM, while the preempted job waits to restart
        plain = launch(SWEEP, ref, tmp_path / "plain.log")
        finish(sweep, tmp_path / "sweep.log", timeout=420)
        finish(plain, tmp_path / "plain.log", timeout=300)
    finally:
        cancel_jobs(root)
        for proc in (sweep, plain):
            if proc is not None and proc.poll() is None:
                proc.kill()

    got, want = run_dirs(root), run_dirs(ref)
    assert sorted(got) == sorted(want) and len(got) == 2, (sorted(got), sorted(want))
    for name in want:
        assert (got[name] / "summary.json").exists(), name
        assert metrics(got[name]) == metrics(want[name]), name
        a, b = (torch.load(d[name] / "checkpoint.pt", weights_only=False) for d in (got, want))
        for key, tensor in b["model"].items():
            assert torch.equal(a["model"][key], tensor), (name, key)
        assert a["optimizer"]["alpha"] == b["optimizer"]["alpha"], name

    log = job_log(sweep_dir, num)
    assert "this job is preempted" in log and "Requeued job" in log, log[-3000:]
    assert "preempted: checkpoint at epoch" in log, log[-3000:]  # mid-epoch, then requeued
    assert "resuming" in log, log[-3000:]
    meta = json.loads((first / "meta.json").read_text())
    assert "resumed" in meta
    ids = wandb_ids(first)  # one offline run per start: the same W&B run, continued
    assert len(ids) == 2 and set(ids) == {meta["run_id"]}
    assert meta["run_id"].startswith(meta["config_hash"][:8])  # the same config as the
    assert len(wandb_ids(want[first.name])) == 1  # unpreempted run, whose W&B run is its own

    # relaunching the sweep trains nothing: both runs have finished
    before = snapshot(root)
    try:
        again = launch([*SLURM, *SWEEP], root, tmp_path / "again.log")
        finish(again, tmp_path / "again.log", timeout=240)
    finally:
        cancel_jobs(root)
    assert snapshot(root) == before
    newest = sweep_dirs(root)[-1]
    logs = [p.read_text() for p in newest.glob("*/train.log")]
    assert len(logs) == 2 and all("already finished" in x for x in logs), logs


# Each SLURM task is one process running the same Hydra job; submitit's
# TorchDistributedEnvironment exports what torchrun would, and train.py's init_distributed joins.
DDP_APP = """
import json, os
from pathlib import Path

import hydra


@hydra.main(config_path={configs!r}, config_name="config", version_base="1.3")
def main(cfg):
    import submitit
    import torch
    import torch.distributed as dist

    from xsam.distributed import init_distributed

    if "WORLD_SIZE" not in os.environ and submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
    ranks = init_distributed(use_cuda=False)
    total = torch.tensor([ranks.rank + 1.0])
    dist.all_reduce(total)
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    seen = {{k: os.environ[k] for k in names}} | {{"sum": total.item()}}
    Path(cfg.run_root, f"rank{{ranks.rank}}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


main()
"""


@pytest.mark.slurm
@needs_slurm
def test_tasks_per_node_start_one_process_group(tmp_path):
    """What slurm_multigpu does with GPUs, on CPUs: two tasks, one gloo process group."""
    app = tmp_path / "ddp_app.py"
    app.write_text(textwrap.dedent(DDP_APP.format(configs=str(CONFIGS))))
    args = [*SLURM, "hydra.launcher.tasks_per_node=2", "study=slurm_ddp", "seed=0"]
    log = tmp_path / "ddp.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, str(app), "-m", *args, f"run_root={tmp_path}"],
                cwd=tmp_path,
                env={**ENV, "PYTHONPATH": str(REPO)},  # this checkout's xsam
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finish(proc, log, timeout=180)
    finally:
        cancel_jobs(tmp_path)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["RANK"] for s in seen] == ["0", "1"] and [s["LOCAL_RANK"] for s in seen] == ["0", "1"]
    assert {s["WORLD_SIZE"] for s in seen} == {"2"} and {s["sum"] for s in seen} == {3.0}
    assert len({(s["MASTER_ADDR"], s["MASTER_PORT"]) for s in seen}) == 1
