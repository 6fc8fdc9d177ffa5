"""Plot a table's learning curves: results/<table>_curves.png, test accuracy against epoch.

    python scripts/plot_curves.py table1 [--runs-dir runs] [--wandb ENTITY/PROJECT] [--smoke]

The curves are those of the runs the table reports (mean and a ±1 std band over seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xsam.experiments import load_experiment
from xsam.tables.collect import collect
from xsam.tables.plots import plot_curves
from xsam.tables.table import build_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="a name in experiments/ (table1) or a path to a YAML")
    parser.add_argument("--runs-dir", default="runs", help="the run root (default: runs)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read this W&B project")
    parser.add_argument("--smoke", action="store_true", help="the smoke variant's runs")
    parser.add_argument("--allow-mixed-commits", action="store_true",
                        help="also plot cells whose runs come from different code versions")
    parser.add_argument("--metric", help="the per-epoch key to plot (default: the table's)")
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    args = parser.parse_args(argv)

    exp = load_experiment(args.table).variant(args.smoke)
    key = args.metric or exp.metric
    records, _ = collect(exp.group, Path(args.runs_dir), args.wandb, metric_keys=(key,))
    table = build_table(exp, records, allow_mixed=args.allow_mixed_commits)
    path = plot_curves(table, Path(args.out) / f"{exp.name}_curves.png", key)
    print(f"wrote {path} ({len(table.used_runs())} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
