"""Plot a table's learning curves: results/<table>_curves.png, test accuracy against epoch.

    python scripts/plot_curves.py table1 [--runs-dir runs] [--wandb ENTITY/PROJECT] [--smoke]

The curves are those of the runs the table reports (mean and a ±1 std band over seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xsam.experiments import load_experiment
from xsam.paths import resolve
from xsam.tables.collect import add_source_arguments, collect
from xsam.tables.plots import plot_curves
from xsam.tables.table import build_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_arguments(parser)
    parser.add_argument("--metric", help="the per-epoch key to plot (default: the table's)")
    args = parser.parse_args(argv)

    exp = load_experiment(args.table).variant(args.smoke)
    key = args.metric or exp.metric
    records, _ = collect(exp.group, Path(args.runs_dir), args.wandb, metric_keys=(key,))
    table = build_table(exp, records, allow_mixed=args.allow_mixed_commits)
    path = plot_curves(table, resolve(args.out) / f"{exp.name}_curves.png", key)
    print(f"wrote {path} ({len(table.used_runs())} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
