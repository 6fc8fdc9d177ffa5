"""Send diagnostic figures and numbers to W&B, next to the training run they describe.

The mode comes from ``WANDB_MODE`` (offline when unset or empty), never from code, so a
machine without network never waits on a server. With ``run_id`` (the run directory's
``meta.json`` holds it) the figures join the training run's own W&B run (``resume="allow"``);
offline, they land in a separate offline directory with the same id, merged by ``wandb sync``.
"""

import os
from collections.abc import Mapping
from pathlib import Path


def log_to_wandb(
    run_dir: str | Path,
    *,
    project: str,
    entity: str | None = None,
    group: str | None = None,
    run_id: str | None = None,
    images: Mapping[str, str | Path] | None = None,
    summary: Mapping[str, object] | None = None,
) -> None:
    """Log PNG files as ``wandb.Image`` (one step-less ``log`` call, so they land after the
    run's last training step) and numbers into the run summary."""
    import wandb  # only the scripts that ask for W&B pay for the import

    run = wandb.init(
        project=project,
        entity=entity,
        group=group,
        id=run_id,
        dir=str(run_dir),
        resume="allow" if run_id else None,
        mode=os.environ.get("WANDB_MODE") or "offline",
    )
    try:
        if images:
            run.log({key: wandb.Image(str(path)) for key, path in images.items()})
        if summary:
            run.summary.update(dict(summary))
    finally:
        run.finish()


def wandb_target(run_dir: str | Path, logger: Mapping[str, object] | None) -> dict:
    """``project``, ``entity``, ``group`` from a run's ``logger`` settings and ``run_id`` from
    its ``meta.json``: the keyword arguments that point :func:`log_to_wandb` at that run."""
    from xsam.rundir import RunDir

    logger = logger or {}
    meta = RunDir(Path(run_dir)).read_json_if_any("meta.json") or {}
    return {
        "project": logger.get("project") or "xsam",
        "entity": logger.get("entity"),
        "group": logger.get("group"),
        "run_id": meta.get("run_id"),
    }
