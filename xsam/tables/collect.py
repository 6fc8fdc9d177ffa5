"""Read runs into one record type, from run directories or from W&B.

Run directory format: ``docs/INTERFACES.md``. A W&B run carries the same facts: ``run.config``
is the resolved config plus ``choices`` and ``git``; ``run.summary`` holds the last logged
metrics. The W&B reader is a thin adapter over :func:`record_from_wandb`; it needs the
network, so tests exercise the conversion with a stand-in run object instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xsam.paths import resolve
from xsam.rundir import RunDir


@dataclass(frozen=True)
class RunRecord:
    """One training run, finished or not."""

    run_id: str
    source: str  # "runs/<group>/<dir>" or "wandb:<entity>/<project>/<id>"
    finished: bool
    choices: dict[str, Any]  # Hydra group choices: dataset, model, optimizer, ...
    config: dict[str, Any]  # the resolved config
    seed: int | None
    commit: str  # "" when unknown
    dirty: bool
    started: str  # sortable timestamp; the newest duplicate wins
    final: dict[str, Any] = field(default_factory=dict)  # last epoch's metrics
    curve: tuple[dict[str, Any], ...] = ()  # one dict per epoch

    @property
    def version(self) -> str:
        """The code version: commit, marked when the tree had uncommitted changes."""
        return (self.commit[:12] or "unknown") + ("+dirty" if self.dirty else "")

    def value(self, key: str) -> Any:
        """A config value by Hydra key: a group choice, else a dotted path into the config."""
        if key in self.choices:
            return self.choices[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node


def read_run_dir(path: Path, source: str, with_curve: bool = False) -> RunRecord:
    """A run directory; without ``summary.json`` it is unfinished (running or crashed)."""
    run = RunDir(Path(path))
    meta = run.read_json_if_any("meta.json") or {}
    summary = run.read_json_if_any("summary.json")
    config = run.read_config()
    info = summary or meta
    git = info.get("git") or {}
    seed = info.get("seed", config.get("seed"))
    return RunRecord(
        run_id=str(info.get("run_id") or meta.get("run_id") or run.path.name),
        source=source,
        finished=bool(summary) and summary.get("status") == "finished",
        choices=dict(info.get("choices") or meta.get("choices") or {}),
        config=config,
        seed=int(seed) if seed is not None else None,
        commit=str(git.get("commit") or ""),
        dirty=bool(git.get("dirty", False)),
        started=str(meta.get("started") or ""),
        final=dict((summary or {}).get("final") or {}),
        curve=tuple(run.read_intact("metrics.jsonl")) if with_curve else (),
    )


def collect_run_dirs(runs_dir: Path, group: str, with_curves: bool = False) -> list[RunRecord]:
    """Every run directory under ``runs_dir/group``, in name order. A relative ``runs_dir`` is
    read under the base folder (:mod:`xsam.paths`) and named in ``source`` as given."""
    root = resolve(runs_dir) / group
    if not root.is_dir():
        return []
    return [
        read_run_dir(d, f"{Path(runs_dir).as_posix()}/{group}/{d.name}", with_curves)
        for d in sorted(root.iterdir())
        if d.is_dir() and ((d / "meta.json").is_file() or (d / "config.yaml").is_file())
    ]


def record_from_wandb(run: Any, path: str, metric_keys: tuple[str, ...] = ()) -> RunRecord:
    """Convert a ``wandb.apis.public.Run`` (anything with ``.id``, ``.state``, ``.config``,
    ``.summary``, ``.history``); ``metric_keys`` non-empty also reads the per-epoch curve."""
    config = dict(run.config)
    choices = dict(config.pop("choices", None) or {})
    git = dict(config.pop("git", None) or {})
    summary = {k: v for k, v in dict(run.summary).items() if not k.startswith("_")}
    # train.py copies the final epoch's metrics to "summary/<key>" once the run finishes;
    # the plain keys are the last logged values (the same numbers for a finished run)
    prefix = "summary/"
    final = {k[len(prefix) :]: v for k, v in summary.items() if k.startswith(prefix)} or summary
    curve: tuple[dict[str, Any], ...] = ()
    if metric_keys:
        rows = run.history(keys=["epoch", *metric_keys], samples=100_000, pandas=False)
        curve = tuple(dict(row) for row in rows)
    seed = config.get("seed")
    return RunRecord(
        run_id=str(run.id),
        source=f"wandb:{path}/{run.id}",
        finished=run.state == "finished",
        choices=choices,
        config=config,
        seed=int(seed) if seed is not None else None,
        commit=str(git.get("commit") or ""),
        dirty=bool(git.get("dirty", False)),
        started=str(getattr(run, "created_at", "") or ""),
        final={k: v for k, v in final.items() if isinstance(v, (int, float, str, bool))},
        curve=curve,
    )


def collect_wandb(
    path: str,
    group: str,
    metric_keys: tuple[str, ...] = (),
    api_factory: Callable[[], Any] | None = None,
) -> list[RunRecord]:
    """Runs of W&B group ``group`` in ``path`` = ``entity/project`` (needs the network)."""
    if api_factory is None:
        import wandb

        api_factory = wandb.Api
    runs = api_factory().runs(path, filters={"group": group})
    return [record_from_wandb(run, path, metric_keys) for run in runs]


def merge_sources(*sources: list[RunRecord]) -> list[RunRecord]:
    """All records; a run id found in an earlier source (the run directories) hides the same
    run in a later one (W&B logs the run under its run directory's id)."""
    merged: list[RunRecord] = []
    for records in sources:
        seen = {record.run_id for record in merged}
        merged += [record for record in records if record.run_id not in seen]
    return merged


def collect(
    group: str, runs_dir: Path | None, wandb_path: str | None, metric_keys: tuple[str, ...] = ()
) -> tuple[list[RunRecord], tuple[str, ...]]:
    """Runs of ``group`` from a run root and/or W&B, and a description of each source.

    ``metric_keys`` non-empty also reads per-epoch curves (``metrics.jsonl``, W&B history).
    """
    sources, found = [], []
    if runs_dir is not None:
        records = collect_run_dirs(runs_dir, group, with_curves=bool(metric_keys))
        found.append(records)
        sources.append(f"{len(records)} run directories in `{Path(runs_dir).as_posix()}/{group}/`")
    if wandb_path is not None:
        records = collect_wandb(wandb_path, group, metric_keys)
        found.append(records)
        sources.append(f"{len(records)} W&B runs in `{wandb_path}`, group `{group}`")
    return merge_sources(*found), tuple(sources)


def add_source_arguments(parser) -> None:
    """The command-line options that say which runs a table is built from; relative paths
    are under the base folder of :mod:`xsam.paths` (the repository root, or $XSAM_BASE)."""
    parser.add_argument("table", help="a name in experiments/ (table1) or a path to a YAML")
    parser.add_argument("--runs-dir", default="runs", help="the run root (default: runs)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read this W&B project")
    parser.add_argument("--smoke", action="store_true", help="the smoke variant's runs")
    parser.add_argument(
        "--allow-mixed-commits",
        action="store_true",
        help="use cells whose runs come from different code versions",
    )
    parser.add_argument("--out", default="results", help="output folder (default: results)")
