"""Send diagnostic figures and numbers to W&B, next to the training run they describe.

The mode comes from ``WANDB_MODE`` (offline when unset or empty), never from code, so a
machine without network never waits on a server. With ``run_id`` (the run directory's
``meta.json`` holds it) the figures join the training run's own W&B run (``resume="allow"``);
offline, they land in a separate offline directory with the same id, merged by ``wandb sync``.
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path


def log_to_wandb(
    run_dir: str | Path, *, project: str, run_id: str | None = None,
    images: Mapping[str, str | Path] | None = None,
    summary: Mapping[str, object] | None = None, job_type: str = "diagnostics",
) -> None:
    """Log PNG files as ``wandb.Image`` and numbers into the run summary."""
    import wandb  # only the scripts that ask for W&B pay for the import

    run = wandb.init(
        project=project, id=run_id, resume="allow" if run_id else None, dir=str(run_dir),
        mode=os.environ.get("WANDB_MODE") or "offline", job_type=job_type,
    )
    try:
        if images:
            run.log({key: wandb.Image(str(path)) for key, path in images.items()})
        if summary:
            run.summary.update(dict(summary))
    finally:
        run.finish()


def run_id_of(run_dir: str | Path) -> str | None:
    """The W&B run id recorded in ``meta.json`` (``run_id``), if the run directory has one."""
    meta = Path(run_dir) / "meta.json"
    return json.loads(meta.read_text()).get("run_id") if meta.exists() else None
