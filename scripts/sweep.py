"""Launch (or print) the runs of a paper table as Hydra multiruns of train.py.

    python scripts/sweep.py table1 --dry-run            # print the commands
    python scripts/sweep.py table1                      # run them here, one after the other
    python scripts/sweep.py table1 --launcher slurm -- hydra.launcher.partition=gpu
    python scripts/sweep.py table1 --smoke              # the smoke variant, study table1_smoke

One command per grid of the definition (experiments/<table>.yaml); values are comma-separated,
so Hydra expands their product. train.py skips runs that already finished, so relaunching a
sweep only runs what is missing. Arguments after `--` are appended to every command.
`--launcher NAME` is the override `hydra/launcher=NAME`: any option of Hydra's launcher group
(configs/hydra/launcher/*.yaml and the installed plugins' basic, joblib, submitit_*); without
it Hydra's default (basic: one run after the other, here). The commands run in the base folder
of xsam.paths (the repository root), so that `run_root=runs` is the folder aggregate.py reads.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from xsam.experiments import ExperimentError, load_experiment
from xsam.paths import REPO, base_dir


def launchers() -> list[str]:
    """The options of Hydra's ``hydra/launcher`` group, as train.py's config sees them."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")


def commands(table: str, smoke: bool, launcher: str | None, extra: list[str]) -> list[list[str]]:
    """The ``python train.py -m ...`` command lines, one per grid."""
    exp = load_experiment(table).variant(smoke)
    chosen = [f"hydra/launcher={launcher}"] if launcher else []
    train = [sys.executable, str(REPO / "train.py"), "-m"]
    return [[*train, *chosen, *overrides, *extra] for overrides in exp.sweeps()]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="a name in experiments/ (table1) or a path to a YAML")
    parser.add_argument("--smoke", action="store_true", help="the smoke variant")
    parser.add_argument("--launcher", help="an option of Hydra's hydra/launcher group")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    extra: list[str] = []  # more Hydra overrides, after `--`
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    return parser.parse_args(argv), extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.launcher and args.launcher not in (known := launchers()):
        print(f"error: --launcher {args.launcher}: not one of {', '.join(known)}", file=sys.stderr)
        return 2
    try:
        lines = commands(args.table, args.smoke, args.launcher, extra)
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = []
    for command in lines:  # a failed grid does not stop the others; all are listed at the end
        printable = shlex.join(["python", "train.py", *command[2:]])
        print(printable, flush=True)
        if not args.dry_run:
            done = subprocess.run(command, cwd=base_dir())
            if done.returncode != 0:
                failed.append(f"failed ({done.returncode}): {printable}")
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(lines)} sweeps failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
