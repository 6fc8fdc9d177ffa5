"""Build a paper table from finished runs: results/<table>.csv, .md and .tex.

    python scripts/aggregate.py table1                       # runs/table1/*
    python scripts/aggregate.py table1 --wandb ENTITY/PROJECT  # plus W&B group table1
    python scripts/aggregate.py table1 --smoke                # runs/table1_smoke/*

Cells whose runs come from different code versions (git commit, or a dirty tree) are refused,
shown without a number and listed, unless --allow-mixed-commits; the exit status is then 1.
Every placed run's config is compared with the one the definition composes for its cell from
configs/ (at the current code), and the header says whether any run departs from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xsam.experiments import Experiment, ExperimentError, load_experiment
from xsam.paths import REPO, resolve, shown
from xsam.rundir import DamagedRunDir, RunDir
from xsam.tables.collect import add_source_arguments, collect
from xsam.tables.documents import write_outputs
from xsam.tables.render import Provenance
from xsam.tables.table import build_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_arguments(parser)
    return parser.parse_args(argv)


def protocol_of(exp: Experiment):
    """cell -> the resolved config that configs/ and the definition give its runs."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    def protocol(cell):
        with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
            overrides = exp.cell_overrides(cell) + [f"seed={exp.seeds[0]}"]
            return OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)

    return protocol


def command_line(args: argparse.Namespace) -> str:
    """The command that rebuilds the files (without --out, which does not change them)."""
    parts = ["python scripts/aggregate.py", args.table]
    if args.runs_dir != "runs":
        parts += ["--runs-dir", args.runs_dir]
    if args.wandb:
        parts += ["--wandb", args.wandb]
    parts += ["--smoke"] * args.smoke + ["--allow-mixed-commits"] * args.allow_mixed_commits
    return " ".join(parts)


def check_run_files(root: Path) -> None:
    """Every meta.json and summary.json under ``root`` must be readable (one line if not)."""
    for path in sorted([*root.glob("*/meta.json"), *root.glob("*/summary.json")]):
        RunDir(path.parent).read_json(path.name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        exp = load_experiment(args.table).variant(args.smoke)
        check_run_files(resolve(args.runs_dir) / exp.group)
    except (ExperimentError, DamagedRunDir) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records, sources = collect(exp.group, Path(args.runs_dir), args.wandb)
    table = build_table(
        exp, records, allow_mixed=args.allow_mixed_commits, protocol=protocol_of(exp)
    )
    provenance = Provenance(command_line(args), shown(exp.path), sources)
    for path in write_outputs(table, provenance, resolve(args.out)):
        print(f"wrote {path}")
    cells = table.cells.values()
    print(
        f"{len(table.used_runs())} runs in {sum(bool(c.runs) for c in cells)} of "
        f"{len(table.cells)} cells; {len(table.unfinished)} unfinished, "
        f"{len(table.duplicates)} duplicates, {len(table.ignored)} ignored"
    )
    refused = [c.key for c in cells if c.refused]
    if refused:
        print(
            f"refused {len(refused)} cells mixing code versions: {', '.join(refused)} "
            "(rerun them at one commit, or pass --allow-mixed-commits)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
