"""Learning curves of a table: test accuracy against epoch, mean and a ±1 std band over seeds.

One panel per table row, one line per column; the runs are those the table reports (refused
cells are left out), read with their per-epoch metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from xsam.experiments import format_value
from xsam.tables.render import column_label
from xsam.tables.table import Cell, Table


def seed_band(table: Table, cell: Cell, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std over the cell's seeds (std 0 where one seed reaches the epoch)."""
    by_epoch: dict[int, list[float]] = {}
    for run in cell.runs.values():
        for row in run.curve:
            if row.get(key) is not None and row.get("epoch") is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    epochs = np.array(sorted(by_epoch))
    values = [by_epoch[e] for e in epochs]
    mean = np.array([np.mean(v) for v in values])
    std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
    return epochs, mean, std


def plot_curves(table: Table, path: Path, key: str | None = None) -> Path:
    """Write the PNG for ``table`` (metric ``key``, default the table's metric) to ``path``."""
    exp = table.experiment
    key = key or exp.metric
    n_rows = len(exp.rows)
    row_keys = list(dict.fromkeys(values[:n_rows] for values in table.cells))
    cols = math.ceil(math.sqrt(len(row_keys)))
    n_panel_rows = math.ceil(len(row_keys) / cols)
    # the Agg canvas directly, not pyplot: no global backend state, no display needed
    fig = Figure(figsize=(4.5 * cols, 3.2 * n_panel_rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_panel_rows, cols, squeeze=False)
    col_keys = list(dict.fromkeys(values[n_rows:] for values in table.cells))
    for ax, row in zip(axes.flat, row_keys, strict=False):
        for values, cell in table.cells.items():
            if values[:n_rows] != row or cell.refused or not cell.runs:
                continue
            epochs, mean, std = seed_band(table, cell, key)
            label = f"{column_label(exp.columns, values[n_rows:])} (n={len(cell.runs)})"
            color = f"C{col_keys.index(values[n_rows:]) % 10}"  # one colour per column
            ax.plot(epochs, mean, label=label, color=color, marker="o" if len(epochs) < 3 else "")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(" / ".join(format_value(v) for v in row) or exp.name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(row_keys) :]:
        ax.set_visible(False)
    fig.suptitle(f"{exp.name}: {key}, mean ± std over seeds", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
