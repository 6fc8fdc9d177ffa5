"""The paper's geometric claim on real data: how close each candidate direction comes to the
worst direction on the rho_max sphere, over training.

    python scripts/geometry.py fashion_mnist_geometry          # run (or resume) and summarize
    python scripts/geometry.py fashion_mnist_geometry --no-run # summarize finished runs only

Runs the definition's sweep (train.py with ``diagnostics.sphere_every``; finished runs are
skipped), then reads every ``diagnostics.jsonl`` record with ``geo/*`` keys
(:mod:`xsam.diagnostics.sphere`) and writes ``results/<name>.{csv,md,png}``: for each
candidate (g_0 = SGD+, g_1 = SAM, g_2 = two-step SAM, d(alpha) = XSAM) its angle to the
sphere maximum u* and the loss increase it reaches at rho_max, mean ± std over the probes,
and paired differences between candidates with a 95% t interval over *seeds* (each seed's
mean over its probes: probes of one run are not independent).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
from pathlib import Path

from xsam.experiments import load_experiment
from xsam.markdown import table_lines
from xsam.paths import REPO, resolve
from xsam.rundir import RunDir
from xsam.tables.collect import collect_run_dirs
from xsam.tables.paired import PairedRow

CANDIDATES = {
    "g_0": "g_0 (SGD+)",
    "g_1": "g_1 (SAM)",
    "g_2": "g_2 (2-step SAM)",
    "xsam": "d(alpha) (XSAM)",
}
PAIRS = [("xsam", "g_1"), ("g_1", "g_0"), ("g_2", "g_1"), ("xsam", "g_2")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="an experiment definition whose runs set sphere_every")
    parser.add_argument("--runs-dir", default="runs", help="the run root (default: runs)")
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.add_argument("--no-run", action="store_true", help="only summarize what exists")
    args, extra = parser.parse_known_args(argv)
    exp = load_experiment(args.table)
    if not args.no_run:
        sweep = [sys.executable, str(REPO / "scripts" / "sweep.py"), args.table, "--", *extra]
        if subprocess.run(sweep).returncode != 0:
            print(f"error: the sweep of {args.table} failed", file=sys.stderr)
            return 1
    probes = read_probes(Path(args.runs_dir), exp.group)
    if not probes:
        print(f"error: no geo/* records under {args.runs_dir}/{exp.group}", file=sys.stderr)
        return 1
    out = resolve(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(probes, out / f"{exp.name}.csv")
    (out / f"{exp.name}.md").write_text(markdown(exp, probes, command(args, extra)))
    plot(probes, out / f"{exp.name}.png")
    print(f"wrote {out / exp.name}.{{csv,md,png}} ({len(probes)} probes)")
    return 0


def command(args: argparse.Namespace, extra: list[str]) -> str:
    return " ".join(["python scripts/geometry.py", args.table, *extra])


def read_probes(runs_dir: Path, group: str) -> list[dict]:
    """One dict per probe: seed, step, commit and the geo/* values of finished runs."""
    probes = []
    for run in collect_run_dirs(runs_dir, group):
        if not run.finished:
            continue
        for record in RunDir(resolve(runs_dir) / group / Path(run.source).name).read_jsonl(
            "diagnostics.jsonl"
        ):
            if "geo/sphere_max_loss" in record:
                probes.append({"seed": run.seed, "commit": run.version} | record)
    return sorted(probes, key=lambda p: (p["seed"], p["step"]))


def write_csv(probes: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for p in probes for k in p))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(probes)


def per_seed(probes: list[dict], key) -> dict[int, float]:
    """Each seed's mean over its probes of ``key(probe)``."""
    seeds: dict[int, list[float]] = {}
    for p in probes:
        seeds.setdefault(p["seed"], []).append(key(p))
    return {s: statistics.fmean(v) for s, v in sorted(seeds.items())}


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def markdown(exp, probes: list[dict], how: str) -> str:
    seeds = sorted({p["seed"] for p in probes})
    commits = sorted({p["commit"] for p in probes})
    steps = sorted({p["step"] for p in probes})
    lines = [
        f"# {exp.name}",
        "",
        exp.description,
        "",
        f"- Generated file, do not edit: rebuild with `{how}`.",
        f"- {len(probes)} probes: steps {steps[0]}..{steps[-1]} ({len(steps)} distinct) of "
        f"{len(seeds)} runs (seeds {', '.join(map(str, seeds))}), code {', '.join(commits)}.",
        "- Angle: degrees between the candidate and u*, the worst direction on the rho_max "
        "sphere found by projected ascent (a local search: u*'s loss is a lower bound on the "
        "true maximum). Loss increase: L(w0 + rho_max u) - L(w0), on the probe's batch.",
        "- Mean ± std over all probes; the paired rows use each seed's mean over its probes, "
        "with a 95% t interval over seeds (bold where it excludes 0).",
        "",
    ]
    closest = [min(CANDIDATES, key=lambda c, p=p: p[f"geo/angle/{c}"]) for p in probes]
    rows = []
    for name, label in CANDIDATES.items():
        angles = [p[f"geo/angle/{name}"] for p in probes]
        rises = [p[f"geo/loss/{name}"] - p["geo/loss_0"] for p in probes]
        share = closest.count(name) / len(probes)
        rows.append([label, spread(angles), spread(rises), f"{share:.0%}"])
    rises = [p["geo/sphere_max_loss"] - p["geo/loss_0"] for p in probes]
    rows.append(["u* (projected ascent)", "0", spread(rises), ""])
    header = ["candidate", "angle to u* (deg)", "loss increase at rho_max"]
    lines += table_lines([*header, "closest to u* (share of probes)"], rows) + [""]
    lines += [
        "## Paired differences over seeds (angle in degrees: negative = closer to u*)",
        "",
    ]
    lines += table_lines(["difference", "n seeds", "mean", "95% t interval"], paired_rows(probes))
    return "\n".join(lines) + "\n"


def paired_rows(probes: list[dict]) -> list[list[str]]:
    rows = []
    for a, b in PAIRS:
        by_a = per_seed(probes, lambda p, a=a: p[f"geo/angle/{a}"])
        by_b = per_seed(probes, lambda p, b=b: p[f"geo/angle/{b}"])
        diff = PairedRow((a, b), tuple(by_a), tuple(by_a[s] - by_b[s] for s in by_a))
        low, high = diff.interval
        interval = f"[{low:+.2f}, {high:+.2f}]" if diff.n > 1 else "–"
        interval = f"**{interval}**" if diff.n > 1 and diff.significant else interval
        name = f"angle({CANDIDATES[a]}) - angle({CANDIDATES[b]})"
        rows.append([name, str(diff.n), f"{diff.mean:+.2f}", interval])
    return rows


def plot(probes: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    steps = sorted({p["step"] for p in probes})
    for name, label in CANDIDATES.items():
        for ax, value in (
            (left, lambda p, n=name: p[f"geo/angle/{n}"]),
            (right, lambda p, n=name: p[f"geo/loss/{n}"] - p["geo/loss_0"]),
        ):
            means = [statistics.fmean(value(p) for p in probes if p["step"] == s) for s in steps]
            ax.plot(steps, means, marker=".", label=label)
    right.plot(
        steps,
        [
            statistics.fmean(
                p["geo/sphere_max_loss"] - p["geo/loss_0"] for p in probes if p["step"] == s
            )
            for s in steps
        ],
        "k--",
        label="u* (projected ascent)",
    )
    left.set(xlabel="step", ylabel="angle to u* (degrees)", title="Angle to the sphere maximum")
    right.set(xlabel="step", ylabel="L(w0 + rho_max u) - L(w0)", title="Loss increase at rho_max")
    right.set_yscale("log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(
        f"mean over {len({p['seed'] for p in probes})} seeds at each probed step", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
