"""Launch (or print) the runs of a paper table as Hydra multiruns of train.py.

    python scripts/sweep.py table1 --dry-run            # print the commands
    python scripts/sweep.py table1                      # run them here, one after the other
    python scripts/sweep.py table1 --launcher slurm -- hydra.launcher.partition=gpu
    python scripts/sweep.py table1 --smoke              # the smoke variant, group table1_smoke

One command per grid of the definition (experiments/<table>.yaml); values are comma-separated,
so Hydra expands their product. train.py skips runs that already finished, so relaunching a
sweep only runs what is missing. Arguments after `--` are appended to every command.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from xsam.experiments import ExperimentError, load_experiment

REPO = Path(__file__).resolve().parents[1]  # train.py runs here, whatever the caller's cwd
LAUNCHERS = {
    "local": [],
    "slurm": ["hydra/launcher=slurm"],
    "slurm_multigpu": ["hydra/launcher=slurm_multigpu"],
}


def commands(table: str, smoke: bool, launcher: str, extra: list[str]) -> list[list[str]]:
    """The ``python train.py -m ...`` command lines, one per grid."""
    exp = load_experiment(table).variant(smoke)
    return [
        [sys.executable, "train.py", "-m", *LAUNCHERS[launcher], *overrides, *extra]
        for overrides in exp.sweeps()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="a name in experiments/ (table1) or a path to a YAML")
    parser.add_argument("--smoke", action="store_true", help="the smoke variant")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []  # more Hydra overrides, after `--`
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    try:
        lines = commands(args.table, args.smoke, args.launcher, extra)
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = []
    for command in lines:  # a failed grid does not stop the others; all are listed at the end
        printable = shlex.join(["python", *command[1:]])
        print(printable, flush=True)
        if not args.dry_run:
            done = subprocess.run(command, cwd=REPO)
            if done.returncode != 0:
                failed.append(f"failed ({done.returncode}): {printable}")
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(lines)} sweeps failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
