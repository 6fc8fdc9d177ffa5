"""Learning curves of a table: test accuracy against epoch, mean and a ±1 std band over seeds.

Two panels per table row, one line per column: the whole curve, and its second half as test
error on a log axis against the fraction of the run (so that a 2x-epochs baseline lines up
with the others), where the final differences the table compares can be seen. The runs are
those the table reports (refused cells are left out), read with their per-epoch metrics.
"""

from __future__ import annotations

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


def _final_half(ax, epochs, mean, std, color, *, error: bool) -> None:
    """The last half of a curve against the fraction of the run, as error on a log axis: the
    final differences the table compares, which the full curve squeezes together."""
    if not len(epochs):
        return
    keep = epochs >= epochs.max() / 2
    x, m, s = epochs[keep] / epochs.max(), mean[keep], std[keep]
    if error:
        m = 100.0 - m
        ax.set_yscale("log")
    ax.plot(x, m, color=color, marker=".")
    ax.fill_between(x, np.maximum(m - s, 1e-3) if error else m - s, m + s, color=color, alpha=0.2)


def plot_curves(table: Table, path: Path, key: str | None = None) -> Path:
    """Write the PNG for ``table`` (metric ``key``, default the table's metric) to ``path``."""
    exp = table.experiment
    key = key or exp.metric
    n_rows = len(exp.rows)
    row_keys = list(dict.fromkeys(values[:n_rows] for values in table.cells))
    col_keys = list(dict.fromkeys(values[n_rows:] for values in table.cells))
    # the Agg canvas directly, not pyplot: no global backend state, no display needed
    fig = Figure(figsize=(10, 3.4 * len(row_keys)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(row_keys), 2, squeeze=False)
    for (full, zoom), row in zip(axes, row_keys, strict=True):
        for values, cell in table.cells.items():
            if values[:n_rows] != row or cell.refused or not cell.runs:
                continue
            epochs, mean, std = seed_band(table, cell, key)
            label = f"{column_label(exp.columns, values[n_rows:])} (n={len(cell.runs)})"
            color = f"C{col_keys.index(values[n_rows:]) % 10}"  # one colour per column
            full.plot(epochs, mean, label=label, color=color, marker="o" if len(epochs) < 3 else "")
            full.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
            _final_half(zoom, epochs, mean, std, color, error=key.endswith("acc"))
        title = " / ".join(format_value(v) for v in row) or exp.name
        full.xaxis.set_major_locator(MaxNLocator(integer=True))
        full.set(title=title, xlabel="epoch", ylabel=key)
        zoom.set(
            title=f"{title}: the second half of training",
            xlabel="fraction of the run's epochs",
            ylabel=f"100 - {key} (log)" if key.endswith("acc") else key,
        )
        for ax in (full, zoom):
            ax.grid(alpha=0.3, which="both")
        if full.has_data():
            full.legend(fontsize=7)
    fig.suptitle(f"{exp.name}: {key}, mean ± std over seeds", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
