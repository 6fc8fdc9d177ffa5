"""The paper's diagnostic figures, from plain data, written as PNG.

Built on ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no display, the
Agg canvas on any machine. Each function returns the figure and writes it to ``path``.
Records are dicts like the lines of ``metrics.jsonl`` / ``diagnostics.jsonl``: ``step``,
``xsam/alpha``, ``xsam/angle``, ``diag/alpha_star``, ``diag/angle/<direction>``, ...
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from xsam.diagnostics.landscape import Landscape

Records = Sequence[Mapping[str, object]]
Runs = Records | Mapping[str, Records]  # one run, or {label: records} to overlay several

# one colour per direction, the same in every figure
COLORS = {
    "g_0": "tab:orange",
    "v0": "tab:brown",
    "g_k": "tab:blue",
    "xsam": "tab:red",
    "max": "gold",
    "theta_k": "black",
    "w0": "white",
}
LABELS = {
    "g_0": "g_0 (SGD+)",
    "v0": "v0 = d(0)",
    "g_k": "g_k (SAM)",
    "xsam": "d(alpha) (XSAM)",
    "max": "max on circle",
    "theta_k": "theta_k",
    "w0": "w0",
}


def plot_landscape(land: Landscape, path: str | Path, *, title: str | None = None) -> Figure:
    """Left: loss contours on the (v0, v1) plane, the circle of radius rho_max, each
    candidate direction at rho_max and the true maximum. Right: the loss along that circle."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax, ax_c = fig.subplots(1, 2, width_ratios=[1.1, 1])
    cs = ax.contourf(land.xs, land.ys, land.loss, levels=30, cmap="viridis")
    ax.contour(land.xs, land.ys, land.loss, levels=15, colors="k", linewidths=0.3, alpha=0.5)
    fig.colorbar(cs, ax=ax, label="loss")
    _plot_directions(ax, land)
    _plot_circle(ax_c, land)
    default = (
        f"k={land.steps}  rho={land.rho:g}  rho_max={land.rho_max:g}  "
        f"t={math.degrees(land.t):.1f} deg  alpha={land.alpha:g}  "
        f"alpha*={land.circle.alpha_star:.2f}"
    )
    fig.suptitle(title or default)
    return _save(fig, path)


def _plot_directions(ax, land: Landscape) -> None:
    phi = np.linspace(0, 2 * math.pi, 361)
    ax.plot(land.rho_max * np.cos(phi), land.rho_max * np.sin(phi), "w--", lw=1)
    markers = {"w0": "o", "theta_k": "s", "max": "*"}
    for name, (x, y) in land.points.items():
        if name in markers:
            kw = {"color": COLORS[name], "mec": "k", "ms": 14 if name == "max" else 7}
            ax.plot(x, y, markers[name], zorder=5, label=LABELS[name], **kw)
            continue
        # g_0 is dashed: for k = 1 it lies on v0; for k > 1 it leaves the plane and its
        # arrow is the projection, shorter than rho_max
        style = "--" if name == "g_0" else "-"
        arrow = {"arrowstyle": "->", "lw": 1.6, "color": COLORS[name], "linestyle": style}
        ax.annotate("", (x, y), (0, 0), arrowprops=arrow)
        off = math.hypot(x, y) < 0.999 * land.rho_max
        ax.plot([], [], style, color=COLORS[name], label=LABELS[name] + " (projected)" * off)
    ax.set(xlabel="e0 = v0", ylabel="e1 (v1 orthogonalized)", aspect="equal")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)


def _plot_circle(ax, land: Landscape) -> None:
    circ = land.circle
    deg = np.degrees(np.remainder(circ.angles + math.pi, 2 * math.pi) - math.pi)
    order = np.argsort(deg)
    ax.plot(deg[order], circ.losses[order], color="k", lw=1)
    for name, (x, y) in circ.coords.items():
        ax.axvline(math.degrees(math.atan2(y, x)), color=COLORS[name], lw=1.2, label=LABELS[name])
    ax.plot(math.degrees(circ.phi), circ.loss, "*", color=COLORS["max"], mec="k", ms=14)
    ax.set(
        xlabel="angle from v0 towards v1 (degrees)",
        ylabel="loss on the circle rho_max",
        xlim=(-180, 180),
    )
    ax.legend(fontsize=7)


def plot_alpha(runs: Runs, path: str | Path, *, title: str = "alpha over training") -> Figure:
    """``xsam/alpha`` against ``step`` for each run; ``diag/alpha_star`` (the alpha pointing at
    the true circle maximum) as dots where the records have it."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, (label, records) in enumerate(_as_runs(runs).items()):
        color = f"C{i}"
        steps, alpha = _first_series(records, ("xsam/alpha", "diag/alpha"))
        if len(steps):  # a record's alpha is the one its steps used: it holds up to its step
            if steps[0] > 0:  # ... from the start of training for the first record
                steps, alpha = np.r_[0.0, steps], np.r_[alpha[0], alpha]
            ax.step(steps, alpha, where="pre", color=color, label=f"{label} alpha".strip())
        steps_s, star = series(records, "diag/alpha_star")
        if len(steps_s):
            ax.plot(
                steps_s,
                star,
                ".",
                color=color,
                alpha=0.6,
                label=f"{label} alpha* (true max)".strip(),
            )
        drawn |= bool(len(steps) or len(steps_s))
    _finish(ax, drawn, xlabel="step", ylabel="alpha", title=title)
    return _save(fig, path)


def plot_angles(
    runs: Runs,
    path: str | Path,
    *,
    title: str | None = None,
) -> Figure:
    """``diag/angle/<direction>`` (degrees) against ``step``: one colour per direction, one
    line style per run; t, the angle between v0 and v1 (``xsam/angle``, else ``diag/t``), in
    grey. All angles are radians in the records. The default title says which were drawn."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    drawn = to_max = False
    for i, (label, records) in enumerate(_as_runs(runs).items()):
        style = ["-", "--", ":", "-."][i % 4]
        keys = sorted({k for r in records for k in r if str(k).startswith("diag/angle/")})
        for key in keys + ["t"]:
            if key == "t":  # the optimizer's own t, else the one the diagnostic recomputed
                steps, rad = _first_series(records, ("xsam/angle", "diag/t"))
            else:
                steps, rad = series(records, key)
            if not len(steps):
                continue
            name = key.removeprefix("diag/angle/")
            color = COLORS.get(name, "grey")
            text = "t = angle(v0, v1)" if key == "t" else LABELS.get(name, name)
            ax.plot(steps, np.degrees(rad), style, color=color, label=f"{label} {text}".strip())
            drawn, to_max = True, to_max or key != "t"
    if title is None:
        title = "angle to the true maximum direction, and t" if to_max else "t = angle(v0, v1)"
    _finish(ax, drawn, xlabel="step", ylabel="angle (degrees)", title=title)
    return _save(fig, path)


def series(records: Records, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one key, sorted by step, one value per step (the last one), with
    missing and non-finite values dropped. ``step`` defaults to the record's index."""
    by_step = {}
    for i, r in enumerate(records):
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            by_step[r.get("step", i)] = float(v)
    steps = np.array(sorted(by_step), dtype=float)
    return steps, np.array([by_step[s] for s in sorted(by_step)], dtype=float)


def _first_series(records: Records, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    for key in keys:
        steps, values = series(records, key)
        if len(steps):
            break
    return steps, values


def _as_runs(runs: Runs) -> dict[str, Records]:
    return dict(runs) if isinstance(runs, Mapping) else {"": runs}


def _finish(ax, drawn: bool, *, xlabel: str, ylabel: str, title: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if drawn:
        ax.legend(fontsize=7)
    else:  # an empty figure that says so beats a crash at the end of a sweep
        ax.text(
            0.5, 0.5, "no data in the records", ha="center", va="center", transform=ax.transAxes
        )


def _save(fig: Figure, path: str | Path) -> Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig
