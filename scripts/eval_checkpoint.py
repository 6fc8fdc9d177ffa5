"""Sharpness of a run's checkpoint: top Hessian eigenvalue, Hessian trace, worst-case increase.

    python scripts/eval_checkpoint.py runs/default/digits-small_cnn-xsam-s0-1a2b3c4d
    python scripts/eval_checkpoint.py RUN_DIR --batches 8 --rho 0.1 --trace-samples 200 --wandb

Rebuilds the data and the model from RUN_DIR/config.yaml, loads checkpoint.pt (key ``model``),
measures on a fixed, seeded subset of training batches, writes RUN_DIR/sharpness.json and
prints one line. What the numbers mean and what they cost: docs/DIAGNOSTICS.md.
"""

import argparse
import inspect
import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xsam import checkpoint
from xsam.data import DataSplits
from xsam.diagnostics import evaluate_sharpness, fixed_batches
from xsam.diagnostics.publish import log_to_wandb, wandb_target
from xsam.paths import resolve
from xsam.rundir import RunDir

# evaluate_sharpness's keyword arguments that the command line can override
_FORWARDED = ("rho", "ascent_steps", "eig_iters", "eig_tol", "trace_samples", "seed", "bn")


def load_run(run_dir: Path) -> tuple[DictConfig, nn.Module, DataSplits]:
    """The run's resolved config, its model (on the CPU) with the checkpoint's weights, and
    its data."""
    run = RunDir(run_dir)
    cfg = OmegaConf.load(run.config_file)  # OmegaConf's YAML types, as instantiate wants them
    splits = instantiate(cfg.dataset.splits)
    model = instantiate(cfg.model)
    model.load_state_dict(_model_state(run.checkpoint))
    return cfg, model, splits


def _model_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        sys.exit(f"error: {path}: no checkpoint (has the run finished an epoch?)")
    try:
        saved = checkpoint.load(path)
    except checkpoint.CheckpointError as err:  # one line, no traceback
        sys.exit(f"error: {err}")
    state = {}
    for key, value in saved["model"].items():
        # torch.compile and DDP wrap the module: strip their prefixes from the keys
        while key.startswith(("_orig_mod.", "module.")):
            key = key.removeprefix("_orig_mod.").removeprefix("module.")
        state[key] = value
    return state


def pick_device(cfg: DictConfig, requested: str | None) -> str:
    device = requested or OmegaConf.select(cfg, "device", default="auto")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = inspect.signature(evaluate_sharpness).parameters
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=resolve, help="relative: under the repository (xsam.paths)")
    p.add_argument("--batches", type=int, default=4, help="training batches to measure on")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's batch_size")
    p.add_argument("--data-seed", type=int, default=0, help="which training examples")
    p.add_argument("--device", default=None, help="default: the run's device (auto: CUDA if any)")
    p.add_argument("--wandb", action="store_true", help="log the numbers to the run's W&B run")
    for name in _FORWARDED:  # defaults live in evaluate_sharpness only
        d = defaults[name].default
        p.add_argument(
            "--" + name.replace("_", "-"), type=type(d), default=None, help=f"default {d}"
        )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg, model, splits = load_run(args.run_dir)
    device = pick_device(cfg, args.device)
    batch_size = args.batch_size or OmegaConf.select(cfg, "batch_size", default=128)
    batches = fixed_batches(
        splits.train,
        batches=args.batches,
        batch_size=batch_size,
        seed=args.data_seed,
        device=device,
    )
    kwargs = {k: getattr(args, k) for k in _FORWARDED if getattr(args, k) is not None}
    result = evaluate_sharpness(model.to(device), batches, nn.CrossEntropyLoss(), **kwargs)
    result |= {
        "batches": len(batches),
        "batch_size": batch_size,
        "data_seed": args.data_seed,
        "device": device,
    }
    out = args.run_dir / "sharpness.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.run_dir.name}: {summary_line(result)} -> {out}")
    if args.wandb:
        target = wandb_target(args.run_dir, dict(cfg.get("logger") or {}))
        log_to_wandb(args.run_dir, summary=result, **target)
    return result


def summary_line(r: dict) -> str:
    return (
        f"lambda_max={r['sharpness/top_eigenvalue']:.4g} "
        f"trace={r['sharpness/trace']:.4g}+-{r['sharpness/trace_stderr']:.2g} "
        f"worst_case(rho={r['sharpness/rho']:g})={r['sharpness/worst_case_increase']:.4g} "
        f"loss={r['sharpness/loss']:.4g} ({r['sharpness/examples']} examples)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
