"""alpha, and the angle between the true maximum direction and each candidate, over training.

    python scripts/plot_alpha.py runs/default/digits-small_cnn-xsam-s0-1a2b3c4d
    python scripts/plot_alpha.py RUN_DIR_A RUN_DIR_B --out figures/ --wandb

Reads each run's metrics.jsonl (one line per epoch: ``step``, ``xsam/alpha``, ``xsam/angle``)
and, if present, diagnostics.jsonl (per-step records of
``xsam.diagnostics.direction_diagnostics``: ``diag/alpha_star``, ``diag/angle/<direction>``);
for a key in both files, one value per step is kept (diagnostics.jsonl's). Writes alpha.png and
angles.png into RUN_DIR/figures/ for one run, or into --out (default: the runs' common parent
folder's figures/) for several, overlaid.
"""

import argparse
import os
import sys
from pathlib import Path

from xsam.diagnostics.plots import plot_alpha, plot_angles
from xsam.diagnostics.publish import log_to_wandb, wandb_target
from xsam.paths import resolve
from xsam.rundir import RunDir


def run_records(run_dir: Path) -> list[dict]:
    # metrics first: series() keeps the last value per step, so diagnostics.jsonl wins ties
    run = RunDir(run_dir)  # a running run's torn last line is left out
    return run.read_intact("metrics.jsonl") + run.read_intact("diagnostics.jsonl")


def main(argv: list[str] | None = None) -> dict[str, Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", type=resolve, nargs="+", help="relative: under the repository")
    p.add_argument("--out", type=Path, default=None, help="folder for the PNGs (see above)")
    p.add_argument("--wandb", action="store_true", help="log the PNGs to W&B")
    args = p.parse_args(argv)
    runs = {d.name: run_records(d) for d in args.run_dirs}
    if not any(runs.values()):
        sys.exit(f"no metrics.jsonl or diagnostics.jsonl records in {args.run_dirs}")
    out = args.out or default_out(args.run_dirs)
    pngs = {"diagnostics/alpha": out / "alpha.png", "diagnostics/angles": out / "angles.png"}
    plot_alpha(runs, pngs["diagnostics/alpha"])
    plot_angles(runs, pngs["diagnostics/angles"])
    print(f"{len(runs)} run(s), {sum(map(len, runs.values()))} records -> {out}")
    if args.wandb:
        first = args.run_dirs[0]
        target = wandb_target(first, logger_of(first))
        if len(args.run_dirs) > 1:  # several runs: a W&B run of their own, in the first's group
            target["run_id"] = None
        log_to_wandb(first if len(args.run_dirs) == 1 else out, images=pngs, **target)
    return pngs


def default_out(run_dirs: list[Path]) -> Path:
    if len(run_dirs) == 1:
        return run_dirs[0] / "figures"
    return Path(os.path.commonpath([d.resolve() for d in run_dirs])) / "figures"


def logger_of(run_dir: Path) -> dict | None:
    return RunDir(run_dir).read_config().get("logger")


if __name__ == "__main__":
    main(sys.argv[1:])
