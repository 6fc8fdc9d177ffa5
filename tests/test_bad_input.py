"""Bad input as a user types it: each case runs train.py in a subprocess on real files and must
exit with status 2, print one line naming the setting or file, and leave every byte under
run_root as it was (no run directory touched, nothing in runs/_hydra/)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli import run_train

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["debug=smoke", "train.limit_batches=1", "batch_size=100"]


def train_cli(*args: str) -> subprocess.CompletedProcess:
    return run_train(args, wandb_mode="disabled", timeout=300)


def snapshot(root: Path, hydra: bool = True) -> dict[str, bytes]:
    """Every file under root, by path; without Hydra's log folders if ``hydra`` is False."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in files
        if hydra or p.relative_to(root).parts[0] != "_hydra"
    }


def assert_only_hydras_log_was_added(root: Path, before: dict[str, bytes]) -> None:
    """An error found once the run has started (a damaged run file) leaves the run directory
    byte-identical; Hydra's log folder of the command holds its config and train.log."""
    assert snapshot(root, hydra=False) == {k: v for k, v in before.items() if "_hydra" not in k}
    added = set(snapshot(root)) - set(before)
    assert {Path(a).name for a in added} <= {
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
        "train.log",
    }


def run_dir_of(root: Path) -> Path:
    (path,) = [p.parent for p in root.glob("debug/*/meta.json")]
    return path


def assert_rejected(result: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 2, exactly one line of output, naming each of ``names``, no traceback."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in names:
        assert name in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A run root holding one finished smoke run (its bytes are the reference)."""
    root = tmp_path_factory.mktemp("runs")
    done = train_cli(f"run_root={root}", *SMOKE)
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.parametrize(
    "override, named",
    [
        ("optimizer.eta=-1", "optimizer.eta must be"),
        ("optimizer.eps=-1", "optimizer.eps must be"),
        ("optimizer.base.momentum=-1", "optimizer.base (torch.optim.SGD): Invalid momentum"),
        ("optimizer/base=adamw optimizer.base.betas=[2,0.9]", "optimizer.base"),
        ("schedule.T_max=0", "schedule.T_max must be"),
        ("diagnostics.sharpness_batches=0", "diagnostics.sharpness_batches must be"),
        ("diagnostics.every=-1", "diagnostics.every must be"),
        ("diagnostics.directions_every=-3", "diagnostics.directions_every must be"),
        ("diagnostics.sphere_every=-1", "diagnostics.sphere_every must be"),
        ("time_budget_s=-5", "time_budget_s must be"),
        ("optimizer=gsam diagnostics.sphere_every=5", "diagnostics.sphere_every probes the XSAM"),
        (
            "dataset=mnist dataset.splits.train_subset=70000",
            "dataset.splits.train_subset must be in",
        ),
        ("optimizer=wsam optimizer.decouple=maybe", "optimizer.decouple must be"),
        ("dataset.splits.label_noise=1.5", "dataset.splits.label_noise must be"),
        ("dataset=fashion_mnist dataset.splits.holdout=-3", "dataset.splits.holdout must be"),
        ("dataset=mnist dataset.splits.train_subset=0", "dataset.splits.train_subset must be"),
        ("optimizer.rho_max=inf", "optimizer.rho_max must be finite"),
        ("optimizer.rho=abc", "optimizer.rho must be a number"),
        ("optimizer.steps=0", "optimizer.steps must be an integer >= 1"),
        ("dataset=cifar10 dataset.splits.cutout_p=1.5", "dataset.splits.cutout_p must be in"),
        ("dataset=cifar10 dataset.splits.padding=-1", "dataset.splits.padding must be"),
        ("dataset=fashion_mnist dataset.splits.flip=maybe", "dataset.splits.flip must be"),
        ("optimizer.rho=inf", "optimizer.rho must be finite"),
        ("optimizer.alpha=nan", "optimizer.alpha must be finite"),
        ("lr=inf", "lr must be finite"),
        ("deterministic=maybe", "deterministic must be true or false"),
        ("optimizer.search_every=0", "optimizer.search_every must be"),
        ("optimizer.adaptive=yes", "optimizer.adaptive must be"),
        ("resume=sometimes", "resume must be one of"),
        ("objective=accuracy", "objective must be"),
        ("train.limit_batches=0", "train.limit_batches must be"),
        ("study=a/b", "study must be"),
    ],
)
def test_bad_setting_is_one_line_exit_2_and_nothing_written(finished, override, named):
    before = snapshot(finished)
    result = train_cli(f"run_root={finished}", *SMOKE, *override.split())
    assert_rejected(result, named)
    assert snapshot(finished) == before


def test_run_root_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = train_cli(f"run_root={tmp_path / 'afile' / 'runs'}", *SMOKE)
    assert_rejected(result, "run_root=", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_run_root_not_writable_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert_rejected(train_cli(f"run_root={locked / 'runs'}", *SMOKE), "not writable")
    finally:
        locked.chmod(0o755)
    assert not list(locked.iterdir())


# --- damaged run directories -------------------------------------------------------------------


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def old_checkpoint(path: Path) -> None:
    """What xsam wrote before: numpy's RNG state as an ndarray inside the pickle."""
    import numpy as np

    ckpt = torch.load(path, weights_only=True)
    ckpt["rng"]["numpy"] = np.random.get_state()
    torch.save(ckpt, path)


DAMAGE = {
    "checkpoint.pt truncated": ("checkpoint.pt", lambda p: truncate(p, 0.5), "is damaged"),
    "checkpoint.pt zero bytes": ("checkpoint.pt", lambda p: truncate(p, 0), "is damaged"),
    "checkpoint.pt of an older xsam": ("checkpoint.pt", old_checkpoint, "weights_only"),
    "metrics.jsonl half-written line": (
        "metrics.jsonl",
        lambda p: append(p, '{"epoch": 2, "train/lo'),
        "unreadable line 2",
    ),
    "meta.json truncated": ("meta.json", lambda p: truncate(p, 0.6), "not valid JSON"),
    "summary.json truncated": ("summary.json", lambda p: truncate(p, 0.3), "not valid JSON"),
    "summary.json zero bytes": ("summary.json", lambda p: truncate(p, 0), "not valid JSON"),
    "budget.json half-written": (
        "budget.json",
        lambda p: p.write_text('{"time_budget_s": 60, "first_ep'),
        "not valid JSON",
    ),
}


@pytest.fixture
def run_root(tmp_path, finished) -> Path:
    """A copy of the finished run root, to damage."""
    for rel, data in snapshot(finished).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_file_stops_with_one_line_and_is_left_as_it_is(run_root, case):
    name, damage, problem = DAMAGE[case]
    run_dir = run_dir_of(run_root)
    if name == "checkpoint.pt":
        (run_dir / "summary.json").unlink()  # an unfinished run resumes from its checkpoint
    damage(run_dir / name)
    before = snapshot(run_root)
    result = train_cli(f"run_root={run_root}", *SMOKE)
    assert_rejected(result, str(run_dir / name), problem, "resume=from_last_good")
    assert_only_hydras_log_was_added(run_root, before)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["checkpoint.pt truncated", "metrics.jsonl half-written line"])
def test_resume_from_last_good_keeps_the_damaged_file_aside_and_goes_on(run_root, case):
    name, damage, _ = DAMAGE[case]
    run_dir = run_dir_of(run_root)
    good_metrics = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "summary.json").unlink()
    damage(run_dir / name)
    damaged = (run_dir / name).read_bytes()
    result = train_cli(f"run_root={run_root}", *SMOKE, "resume=from_last_good")
    assert result.returncode == 0, result.stderr
    (aside,) = run_dir.glob(f"{name}.damaged-*")
    assert aside.read_bytes() == damaged  # kept as it was, under a new name
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    if name == "metrics.jsonl":  # the readable lines go on; the torn one is only in the copy
        assert (run_dir / "metrics.jsonl").read_text() == good_metrics


@pytest.mark.slow
def test_resume_restart_sets_every_run_file_aside(run_root):
    run_dir = run_dir_of(run_root)
    truncate(run_dir / "meta.json", 0.5)
    before = {n: (run_dir / n).read_bytes() for n in ("checkpoint.pt", "metrics.jsonl")}
    result = train_cli(f"run_root={run_root}", *SMOKE, "resume=restart")
    assert result.returncode == 0, result.stderr
    for name, data in before.items():
        (aside,) = run_dir.glob(f"{name}.restart-*")
        assert aside.read_bytes() == data
    assert json.loads((run_dir / "meta.json").read_text())["run_id"]
    assert (run_dir / "summary.json").exists()


def test_config_mismatch_with_the_run_directory_names_the_keys(run_root):
    run_dir = run_dir_of(run_root)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("rho: 0.15", "rho: 0.2"))
    before = snapshot(run_root)
    result = train_cli(f"run_root={run_root}", *SMOKE)
    assert_rejected(result, str(config), "optimizer.rho")
    assert_only_hydras_log_was_added(run_root, before)


@pytest.mark.parametrize("case", ["checkpoint.pt truncated", "checkpoint.pt of an older xsam"])
def test_eval_checkpoint_on_a_damaged_checkpoint_is_one_line(run_root, case):
    name, damage, problem = DAMAGE[case]
    run_dir = run_dir_of(run_root)
    damage(run_dir / name)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "eval_checkpoint.py"), str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(run_dir / name) in lines[0] and problem in lines[0], lines
