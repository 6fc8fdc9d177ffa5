"""Short real training runs through train.py: SGD, SAM and XSAM, fp32 and bf16, on the GPU.

    python scripts/gpu_train_run.py OUT.json                      # the gpu_check phase (CUDA)
    python scripts/gpu_train_run.py OUT.json --device cpu --model small_cnn --n-train 64 \\
        --batch-size 16 --epochs 2                                # the CPU self-test's form

Each run is ``train.run`` on a config composed from configs/ exactly as ``python train.py
dataset=cifar10 model=resnet18 optimizer=<sgd|sam|xsam> precision=<fp32|bf16>
loader.device_resident=true ...`` composes it: the fast data path (uint8 images on the device,
augmented there), fused SGD, XSAM with alpha re-estimated on the first batch of every epoch.
The data is a synthetic CIFAR-10 (random uint8 pixels and labels) written in the real pickle
format by tests/formats.py and read by torchvision's CIFAR10 through ``cifar_splits``, with
torchvision's md5 check pointed at the written files; so nothing needs CIFAR on the machine,
and accuracies mean nothing (the labels are random).

Epoch 1 is the warm-up (cuDNN autotuning, allocations, the caching allocator); the numbers
come from the later epochs' ``metrics.jsonl`` lines: images/s = training images /
``time/epoch`` (which also holds the evaluation of the small test split), and ms per step
inside ``opt.step`` (CUDA events: every forward and backward pass of the method, and the
update; "between searches" leaves out the alpha search's extra time, as train.py measures
it). OUT.json is rewritten after every run, so a run cut short keeps what finished.
"""

import argparse
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # train.py is a file at the root, not part of the package

import train  # noqa: E402
from xsam.rundir import RunDir  # noqa: E402

METHODS = ("sgd", "sam", "xsam")
PRECISIONS = ("fp32", "bf16")


def load_formats():
    """tests/formats.py: the writer of datasets in their real on-disk formats."""
    spec = importlib.util.spec_from_file_location("formats", REPO / "tests" / "formats.py")
    formats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(formats)
    return formats


def compose_run(overrides: list[str]):
    """The task config and the group choices, as @hydra.main hands them to train.run."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def overrides(args, root: Path, method: str, precision: str) -> list[str]:
    return [
        f"run_root={root / 'runs'}",
        f"data_root={root / 'data'}",
        "study=gpu_check",
        "dataset=cifar10",
        f"model={args.model}",
        f"optimizer={method}",
        f"precision={precision}",
        f"epochs={args.epochs}",
        f"batch_size={args.batch_size}",
        "loader.device_resident=true",
        f"device={args.device}",
        f"channels_last={str(args.channels_last).lower()}",
        "progress=false",
        "logger.mode=disabled",
    ]


def one_run(args, root: Path, method: str, precision: str) -> dict:
    """Train one configuration; its timings over the epochs after the first."""
    cfg, choices = compose_run(overrides(args, root, method, precision))
    started = time.perf_counter()
    summary = train.run(cfg, choices)
    wall = time.perf_counter() - started
    (run_dir,) = (root / "runs" / "gpu_check").glob(f"*-{method}-*")
    records = RunDir(run_dir).read_metrics()
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints: 2 copies of the model per run
    timed = records[1:] or records  # epoch 1 is the warm-up, unless it is the only one
    steps = timed[-1]["step"] - (records[0]["step"] if len(records) > 1 else 0)
    seconds = sum(r["time/epoch"] for r in timed)
    step_seconds = sum(r["time/optimizer_step"] for r in timed)
    search_extra = sum(r["time/search_share"] * r["time/epoch"] for r in timed)
    final = summary["final"]
    return {
        "method": method,
        "precision": precision,
        "steps": final["step"],
        "timed_steps": steps,
        "images_per_s": steps * args.batch_size / seconds,
        "step_ms": 1e3 * step_seconds / steps,
        "step_ms_between_searches": 1e3 * (step_seconds - search_extra) / steps,
        "epoch_s": seconds / len(timed),
        "search_share": search_extra / seconds,
        "train_loss": final["train/loss"],
        "finite": math.isfinite(final["train/loss"]),
        "wall_s": wall,
    }


def ratios(runs: list[dict]) -> list[dict]:
    """Per precision: SAM / SGD and XSAM / SAM step time; per method: fp32 / bf16."""
    by = {(r["method"], r["precision"]): r for r in runs}
    out = []
    for precision in PRECISIONS:
        for num, den in (("sam", "sgd"), ("xsam", "sam"), ("xsam", "sgd")):
            if (num, precision) in by and (den, precision) in by:
                value = by[num, precision]["step_ms"] / by[den, precision]["step_ms"]
                out.append({"ratio": f"{num} / {den} step time, {precision}", "value": value})
        if ("xsam", precision) in by and ("sam", precision) in by:
            between = by["xsam", precision]["step_ms_between_searches"]
            value = between / by["sam", precision]["step_ms"]
            out.append({"ratio": f"xsam between searches / sam, {precision}", "value": value})
    for method in METHODS:
        if (method, "fp32") in by and (method, "bf16") in by:
            value = by[method, "fp32"]["step_ms"] / by[method, "bf16"]["step_ms"]
            out.append({"ratio": f"{method}: fp32 / bf16 step time", "value": value})
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="JSON file of the results")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--model", default="resnet18", help="a configs/model option")
    p.add_argument("--n-train", type=int, default=12_500, help="synthetic training images")
    p.add_argument("--n-test", type=int, default=250, help="synthetic test images")
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--epochs", type=int, default=3, help="the first is the warm-up")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args(argv)
    args.methods, args.precisions = args.methods.split(","), args.precisions.split(",")
    for name, chosen, allowed in (
        ("--methods", args.methods, METHODS),
        ("--precisions", args.precisions, PRECISIONS),
    ):
        if not set(chosen) <= set(allowed):
            p.error(f"{name} must be a comma-separated subset of {','.join(allowed)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "runs": [], "ratios": []}
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        root, formats = Path(tmp), load_formats()
        formats.write_cifar(root / "data" / "cifar10", 10, args.n_train, args.n_test)
        formats.accept_cifar_checksums(patch, root / "data" / "cifar10", num_classes=10)
        for precision in args.precisions:
            for method in args.methods:
                run = one_run(args, root, method, precision)
                result["runs"].append(run)
                result["ratios"] = ratios(result["runs"])
                args.out.write_text(json.dumps(result, indent=2) + "\n")
                print(
                    f"{method} {precision}: {run['images_per_s']:.0f} images/s, "
                    f"{run['step_ms']:.2f} ms per opt.step over {run['timed_steps']} steps",
                    flush=True,
                )
    return result


if __name__ == "__main__":
    main()
