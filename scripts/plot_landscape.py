"""The loss landscape on the XSAM plane (v0, v1) around a checkpoint's weights.

    python scripts/plot_landscape.py runs/default/digits-small_cnn-xsam-s0-1a2b3c4d
    python scripts/plot_landscape.py RUN_DIR --rho 0.15 --steps 3 --rho-max 0.3 --grid 61 --wandb

Takes one training batch, computes v0, v1 and t as the optimizer does (k ascent steps of total
length rho, ASAM's adaptive ones for an adaptive run, then g_k), evaluates the loss on a grid
of the plane, sweeps the circle of radius rho_max for the true maximum and marks g_0, v0, g_k,
d(alpha) and that maximum. rho, k and rho_max default to the run's own optimizer settings;
alpha to the run's fixed alpha, or, for a dynamic run, the grid search of the optimizer on this
batch. Writes RUN_DIR/figures/landscape.png and landscape.npz (the numbers behind it).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from eval_checkpoint import load_run, pick_device  # the scripts' shared run loading
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xsam.diagnostics import (
    Landscape,
    batch_loss,
    fixed_batches,
    landscape,
    search_alpha,
    xsam_plane,
)
from xsam.diagnostics.plots import plot_landscape
from xsam.diagnostics.publish import log_to_wandb, wandb_target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--rho", type=float, default=None, help="default: the run's optimizer.rho")
    p.add_argument("--steps", type=int, default=None, help="k; default: the run's (at least 1)")
    p.add_argument("--rho-max", type=float, default=None, help="default: the run's rho_max")
    p.add_argument("--alpha", type=float, default=None, help="default: see above")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's batch_size")
    p.add_argument("--data-seed", type=int, default=0, help="which training batch")
    p.add_argument("--grid", type=int, default=41, help="grid points per axis")
    p.add_argument("--extent", type=float, default=1.5, help="grid half-width / rho_max")
    p.add_argument("--angles", type=int, default=720, help="angles on the circle sweep")
    p.add_argument(
        "--bn",
        choices=["batch", "eval"],
        default="batch",
        help="BatchNorm statistics: the batch's (as the optimizer) or running",
    )
    p.add_argument("--device", default=None, help="default: the run's device (auto: CUDA if any)")
    p.add_argument("--wandb", action="store_true", help="log the PNG to the run's W&B run")
    return p.parse_args(argv)


def geometry(cfg: DictConfig, args: argparse.Namespace) -> tuple[float, int, float]:
    """rho, k, rho_max: the command line first, then the run's optimizer settings."""
    opt = OmegaConf.select(cfg, "optimizer", default=None) or {}
    rho = args.rho if args.rho is not None else opt.get("rho", 0.0)
    steps = args.steps or opt.get("steps", 0) or 1  # an SGD run (k = 0) is looked at with k = 1
    rho_max = args.rho_max if args.rho_max is not None else opt.get("rho_max", 2 * rho)
    if not rho > 0:
        sys.exit(f"{args.run_dir}: the run trained with rho={rho}; pass --rho (and --steps)")
    return float(rho), int(steps), float(rho_max)


def ascent(cfg: DictConfig, model: nn.Module) -> dict:
    """The run's ascent: ASAM's (adaptive, eta, scope) for asam / xsam_asam runs, else
    Euclidean."""
    opt = OmegaConf.select(cfg, "optimizer", default=None) or {}
    weight_only = opt.get("adaptive_scope", "all") == "weight"
    unscaled = [p for n, p in model.named_parameters() if weight_only and "weight" not in n]
    adaptive, eta = bool(opt.get("adaptive", False)), float(opt.get("eta", 0.01))
    return {"adaptive": adaptive, "eta": eta, "unscaled": unscaled}


def main(argv: list[str] | None = None) -> Landscape:
    args = parse_args(argv)
    cfg, model, splits = load_run(args.run_dir)
    device = pick_device(cfg, args.device)
    rho, steps, rho_max = geometry(cfg, args)
    batch_size = args.batch_size or OmegaConf.select(cfg, "batch_size", default=128)
    batch = fixed_batches(
        splits.train, batches=1, batch_size=batch_size, seed=args.data_seed, device=device
    )
    loss_fn = batch_loss(model.to(device), nn.CrossEntropyLoss(), batch, bn=args.bn)
    params = [p for p in model.parameters() if p.requires_grad]
    plane = xsam_plane(loss_fn, params, rho=rho, steps=steps, **ascent(cfg, model))
    alpha = choose_alpha(cfg, args, loss_fn, params, plane, rho_max)
    span = args.extent * rho_max * np.linspace(-1.0, 1.0, args.grid)
    land = landscape(
        loss_fn, params, plane, alpha=alpha, rho_max=rho_max, xs=span, ys=span, n_angles=args.angles
    )
    png = args.run_dir / "figures" / "landscape.png"
    plot_landscape(land, png)
    save_npz(land, png.with_suffix(".npz"))
    angles = " ".join(f"{n}={np.degrees(a):.1f}" for n, a in land.circle.angle_to_max.items())
    print(
        f"{args.run_dir.name}: t={np.degrees(plane.t):.1f} deg alpha={alpha:g} "
        f"alpha*={land.circle.alpha_star:.2f} angle to max (deg): {angles} -> {png}"
    )
    if args.wandb:
        log_to_wandb(
            args.run_dir,
            images={"diagnostics/landscape": png},
            **wandb_target(args.run_dir, dict(cfg.get("logger") or {})),
        )
    return land


def choose_alpha(cfg, args, loss_fn, params, plane, rho_max: float) -> float:
    """--alpha; else a static run's alpha; else the optimizer's grid search on this batch."""
    if args.alpha is not None:
        return args.alpha
    opt = OmegaConf.select(cfg, "optimizer", default=None) or {}
    if opt.get("search_every") is None and opt.get("alpha") is not None:
        return float(opt["alpha"])
    grid = {k: float(opt[k]) for k in ("alpha_max", "alpha_delta") if opt.get(k) is not None}
    return search_alpha(loss_fn, params, plane, rho_max=rho_max, **grid)[0]


def save_npz(land: Landscape, path: Path) -> None:
    """The figure's numbers: arrays as arrays, the rest as one JSON string."""
    c = land.circle
    meta = {
        "points": land.points,
        "angle_to_max": c.angle_to_max,
        "candidate_loss": c.candidate_loss,
        "circle_max_loss": c.loss,
        "phi": c.phi,
        "alpha_star": c.alpha_star,
        "loss_0": land.loss_0,
        "t": land.t,
        "alpha": land.alpha,
        "rho": land.rho,
        "rho_max": land.rho_max,
        "steps": land.steps,
    }
    np.savez(
        path,
        xs=land.xs,
        ys=land.ys,
        loss=land.loss,
        circle_angles=c.angles,
        circle_loss=c.losses,
        meta=json.dumps(meta),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
