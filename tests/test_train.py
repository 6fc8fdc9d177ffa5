"""train.py end to end on the embedded digits: smoke runs, resume, W&B, bad input."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from cli import run_train
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf, open_dict

import train
from xsam.config_checks import ConfigError
from xsam.optim import XSAM

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
OPTIMIZERS = sorted(p.stem for p in (CONFIGS / "optimizer").glob("*.yaml"))
FAST = ["epochs=2", "progress=false", "logger.mode=disabled", "batch_size=200"]


def compose_run(overrides: list[str]):
    """The task config and the group choices, as @hydra.main would hand them to run()."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/*/meta.json"))


def train_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return run_train(args, wandb_mode="offline", timeout=600, **kwargs)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_two_epoch_smoke_run_per_optimizer(tmp_path, optimizer):
    cfg, choices = compose_run([f"optimizer={optimizer}", f"run_root={tmp_path}", *FAST])
    summary = train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.startswith(f"digits-small_cnn-{optimizer}-s0-")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert summary["final"] == records[-1] and summary["status"] == "finished"
    steps = records[-1]["step"]
    k = cfg.optimizer.steps
    assert summary["compute"]["backward_passes"] == steps * (k + 1 if k else 1)
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in records)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["choices"]["optimizer"] == optimizer and "commit" in meta["git"]
    if k:  # every epoch reports the angle, SAM's too (formed on the epoch's last step)
        assert all(0 <= r["xsam/angle"] <= torch.pi for r in records)


@pytest.mark.parametrize("every", [0, 3])
def test_sam_forms_its_angle_on_exactly_the_logged_steps(tmp_path, monkeypatch, every):
    """The loop asks for the angle on the steps it records (every ``diagnostics.every``-th and
    each epoch's last): each record has it, and the steps between them never form the plane
    (their cost is SAM's own, which test_optim_api shows gives the same weights)."""
    args = ["optimizer=sam", f"diagnostics.every={every}", "train.limit_batches=4"]
    cfg, choices = compose_run([f"run_root={tmp_path}", *FAST, *args])
    asked, step_and_report = [], XSAM.step_and_report

    def recorded(opt, closure, *, angle=False):  # the real step, its angle request noted
        asked.append(angle)
        return step_and_report(opt, closure, angle=angle)

    monkeypatch.setattr(XSAM, "step_and_report", recorded)
    train.run(cfg, choices)
    logged = {4, 8} | ({3, 6} if every else set())  # 2 epochs of 4 steps
    assert [i + 1 for i, a in enumerate(asked) if a] == sorted(logged)
    (run_dir,) = run_dirs(tmp_path)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["xsam/angle"] <= torch.pi for r in records)
    if every:
        lines = (run_dir / "diagnostics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines if "diag/angle" in line]
        assert steps == [3, 6]


def test_relaunching_a_finished_run_does_nothing(tmp_path, caplog):
    caplog.set_level("INFO")
    cfg, choices = compose_run([f"run_root={tmp_path}", *FAST])
    train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert train.run(cfg, choices) == summary  # (a sweeper reads its objective from it)
    assert "already finished" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_run_directory_name_follows_the_config(tmp_path):
    a, _ = compose_run([f"run_root={tmp_path}", "seed=1"])
    b, _ = compose_run([f"run_root={tmp_path / 'elsewhere'}", "seed=1", "logger.mode=disabled"])
    c, _ = compose_run([f"run_root={tmp_path}", "seed=1", "optimizer.rho=0.2"])
    digest = [train.config_hash(train.semantic_config(x)) for x in (a, b, c)]
    assert digest[0] == digest[1] != digest[2]


def test_settings_that_compute_nothing_leave_the_hash_alone():
    """Runs made before train.limit_batches and adaptive_scope existed keep their directory."""
    digest = lambda o: train.config_hash(train.semantic_config(compose_run(o)[0]))  # noqa: E731
    assert digest([]) == digest(["optimizer.adaptive_scope=weight"])  # not adaptive: unused
    assert digest(["optimizer=asam"]) != digest(["optimizer=asam", "optimizer.adaptive_scope=all"])
    assert digest([]) != digest(["train.limit_batches=2"])
    assert digest([]) != digest(["diagnostics.sphere_every=5"])
    assert digest([]) != digest(["dataset.splits.label_noise=0.4"])
    # pinned: the run directories of the code before these settings existed (a relaunched
    # sweep must find its finished runs, not train them again)
    assert digest([])[:8] == "d1603167"
    assert digest(["dataset=cifar10", "model=resnet18", "optimizer=sam"])[:8] == "d2e69a69"


@pytest.mark.parametrize(
    "override, key",
    [
        ("lr=-0.1", "lr"),
        ("batch_size=0", "batch_size"),
        ("optimizer.rho=-1", "optimizer.rho"),
        ("epochs=two", "epochs"),
        ("optimizer.steps=0", "optimizer.steps"),
        ("logger.mode=sometimes", "logger.mode"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, key):
    cfg, choices = compose_run([f"run_root={tmp_path}", *FAST, override])  # the last one wins
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train.run(cfg, choices)
    assert not list(tmp_path.iterdir())


def test_bad_input_on_the_command_line_exits_nonzero_and_writes_nothing(tmp_path):
    root = f"run_root={tmp_path}"
    cfg, choices = compose_run([root, *FAST])
    train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    bad = train_cli([root, "lr=-1", *FAST])
    assert bad.returncode != 0
    errors = [
        line for line in bad.stderr.splitlines() + bad.stdout.splitlines() if "lr must be" in line
    ]
    assert len(errors) == 1, bad.stderr
    unknown = train_cli([root, "optimizer.rhoo=0.1", *FAST])
    assert unknown.returncode != 0 and "optimizer.rhoo" in unknown.stderr
    missing = train_cli([root, "dataset=cifar10", "data_root=/nonexistent", *FAST])
    assert missing.returncode == 2 and "/nonexistent/cifar10" in missing.stdout + missing.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_non_finite_loss_stops_the_run_with_a_clear_message(tmp_path):
    cfg, choices = compose_run([f"run_root={tmp_path}", "lr=1e30", "optimizer=sgd", *FAST])
    with pytest.raises(train.engine.NonFiniteLoss, match="non-finite loss"):
        train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path)
    assert not (run_dir / "checkpoint.pt").exists()  # nothing bad was saved
    assert not (run_dir / "summary.json").exists()


def test_kill_mid_epoch_and_resume_is_bit_identical(tmp_path):
    args = [
        "epochs=3",
        "batch_size=16",
        "progress=false",
        "logger.mode=disabled",
        "optimizer.search_every=7",
    ]
    reference = train_cli([f"run_root={tmp_path / 'ref'}", *args])
    assert reference.returncode == 0, reference.stderr
    root = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), f"run_root={root}", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not list(root.glob("*/*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (killed_dir,) = run_dirs(root)
    assert not (killed_dir / "summary.json").exists(), "the run finished before it was killed"
    resumed = train_cli([f"run_root={root}", *args])
    assert resumed.returncode == 0, resumed.stderr
    (ref_dir,) = run_dirs(tmp_path / "ref")
    assert killed_dir.name == ref_dir.name
    ref, got = (torch.load(d / "checkpoint.pt", weights_only=False) for d in (ref_dir, killed_dir))
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    assert ref["optimizer"]["alpha"] == got["optimizer"]["alpha"]
    lines = [(d / "metrics.jsonl").read_text().splitlines() for d in (ref_dir, killed_dir)]
    strip = [
        [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")} for x in ls]
        for ls in lines
    ]
    assert strip[0] == strip[1]


def test_wandb_offline_run_reads_back_with_wandbs_own_tools(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg, choices = compose_run(
        [f"run_root={tmp_path}", "epochs=2", "progress=false", "batch_size=200"]
    )
    train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(offline)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["config"]["choices"] == choices_subset(choices)
    assert summary["config"]["optimizer"]["rho"] == cfg.optimizer.rho
    history = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(offline)],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    rows = [json.loads(x)["history"]["item"] for x in history.splitlines() if '"history"' in x]
    rows = [r for r in rows if "test/acc" in r]  # the epoch rows (searches log diag/* rows too)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["test/acc"] for r in rows] == [m["test/acc"] for m in metrics]
    assert all("xsam/alpha" in r and "train/loss" in r for r in rows)


def choices_subset(choices: dict) -> dict:
    return {g: choices[g] for g in train.GROUPS}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["dataset", "model", "optimizer", "schedule", "logger"])
def test_every_config_option_composes_and_resolves(group):
    """Each option composes, leaves no ``???`` value, and names importable targets."""
    for option in options(group):
        cfg, choices = compose_run([f"{group}={option}"])
        assert choices[group] == option
        assert not OmegaConf.missing_keys(cfg), (option, OmegaConf.missing_keys(cfg))
        node = OmegaConf.to_container(cfg, resolve=True)[group]
        for target in _targets(node):
            assert callable(get_object(target)), (option, target)


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", options("schedule"))
def test_every_optimizer_and_schedule_builds(optimizer, schedule):
    cfg, _ = compose_run([f"optimizer={optimizer}", f"schedule={schedule}"])
    opt = train.build_optimizer(cfg, torch.nn.Linear(2, 2), steps_per_epoch=5)
    schedule = instantiate(cfg.schedule)(opt)
    searches_per_epoch = {"xsam": 1, "xsam_asam": 1}.get(optimizer, 0)  # search_every: epoch
    searched = []
    for _ in range(10):  # two epochs of 5 steps
        searched.append(opt.is_search_step())
        opt.step_count += 1
    assert searched == ([True] + [False] * 4) * 2 if searches_per_epoch else not any(searched)
    assert opt.param_groups[0]["lr"] == cfg.lr


@pytest.mark.parametrize("model", options("model"))
def test_every_model_option_builds_for_its_dataset(model):
    dataset = "imagenet" if model.endswith(("_imagenet", "_s16")) else "cifar100"
    cfg, _ = compose_run([f"model={model}", f"dataset={dataset}"])
    net = instantiate(cfg.model)
    out_features = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert out_features == cfg.dataset.num_classes


def test_preemption_signal_checkpoints_mid_epoch_and_resumes_identically(tmp_path, caplog):
    caplog.set_level("INFO")
    common = [
        "epochs=2",
        "batch_size=32",
        "progress=false",
        "logger.mode=disabled",
        "optimizer.search_every=7",
    ]
    ref_cfg, choices = compose_run([f"run_root={tmp_path / 'ref'}", *common])
    train.run(ref_cfg, choices)
    cfg, choices = compose_run([f"run_root={tmp_path / 'pre'}", *common])

    def signal_after_first_checkpoint():
        while not list((tmp_path / "pre").glob("*/*/checkpoint.pt")):
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR2)

    threading.Thread(target=signal_after_first_checkpoint, daemon=True).start()
    with pytest.raises(SystemExit, match="resume"):
        train.run(cfg, choices)
    assert "preempted: checkpoint at epoch" in caplog.text
    (run_dir,) = run_dirs(tmp_path / "pre")
    partial = torch.load(run_dir / "checkpoint.pt", weights_only=False)["partial"]
    assert 0 < partial["batches"]
    train.run(cfg, choices)
    assert "resuming" in caplog.text
    (ref_dir,) = run_dirs(tmp_path / "ref")
    ref, got = (torch.load(d / "checkpoint.pt", weights_only=False) for d in (ref_dir, run_dir))
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    metrics = [
        [
            {k: v for k, v in json.loads(x).items() if not k.startswith("time/")}
            for x in (d / "metrics.jsonl").read_text().splitlines()
        ]
        for d in (ref_dir, run_dir)
    ]
    assert metrics[0] == metrics[1]


def test_step_diagnostics_and_end_of_run_sharpness(tmp_path):
    overrides = [
        f"run_root={tmp_path}",
        "diagnostics.every=4",
        "diagnostics.sharpness_at_end=true",
        "diagnostics.sharpness_batches=1",
        *FAST,
    ]
    cfg, choices = compose_run(overrides)
    summary = train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path)
    records = [json.loads(x) for x in (run_dir / "diagnostics.jsonl").read_text().splitlines()]
    steps_per_epoch = 1437 // 200
    searches = [r for r in records if "diag/search_loss/0" in r]
    assert [r["step"] for r in searches] == [1, steps_per_epoch + 1]  # after steps 0 and N
    every_4th = {s for s in range(1, 2 * steps_per_epoch + 1) if s % 4 == 0}
    assert {r["step"] for r in records} == every_4th | {r["step"] for r in searches}
    for r in records:
        assert r["diag/loss_increase"] == pytest.approx(r["diag/loss_k"] - r["diag/loss_0"])
        assert 0 <= r["diag/angle"] <= torch.pi
    best = max(
        (k for k in searches[0] if k.startswith("diag/search_loss/")), key=lambda k: searches[0][k]
    )
    assert float(best.rsplit("/", 1)[1]) == pytest.approx(searches[0]["diag/alpha"])
    sharpness = json.loads((run_dir / "sharpness.json").read_text())
    assert sharpness["sharpness/top_eigenvalue"] > 0 and summary["sharpness"] == sharpness


def test_unreachable_wandb_falls_back_to_offline_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")  # restored after the test (the fallback sets it)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    cfg, choices = compose_run(
        [
            f"run_root={tmp_path}",
            "logger.mode=online",
            "logger.init_timeout=10",
            *FAST[:2],
            "batch_size=200",
        ]
    )
    summary = train.run(cfg, choices)
    assert summary["status"] == "finished"
    warnings = [r for r in caplog.records if "logging offline instead" in r.getMessage()]
    assert len(warnings) == 1
    (run_dir,) = run_dirs(tmp_path)
    assert list((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("options", [["precision=bf16", "channels_last=true"], ["compile=true"]])
def test_precision_layout_and_compile_options_run_on_cpu(tmp_path, options):
    cfg, choices = compose_run([f"run_root={tmp_path}", *options, "optimizer=sam", *FAST])
    summary = train.run(cfg, choices)
    assert summary["final"]["epoch"] == 2
    assert torch.isfinite(torch.tensor(summary["final"]["train/loss"]))
