"""Weights & Biases for a run: resumable, never fatal, mode always from config.

The W&B run id is the run directory's own (``meta.json``'s ``run_id``: the config hash and a
random suffix drawn when the directory is made), so a resumed (or requeued) run continues the
same W&B run, while the same config under another run root, user or project gets a run of its
own. Metrics are plotted against ``step`` (the optimizer step); ``test/acc``'s summary is its
last (final-epoch) value; an alpha search's loss curve is one ``wandb.Table``. If the online
service cannot be reached, the run goes on offline with one warning (``wandb sync`` uploads
it later).
"""

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MODES = ("online", "offline", "disabled")


class WandbLogger:
    def __init__(
        self,
        *,
        mode: str,
        project: str,
        entity: str | None,
        group: str,
        tags: list[str],
        run_id: str,
        name: str,
        run_dir: Path,
        config: dict[str, Any],
        job_type: str = "train",
        init_timeout: float = 60.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"logger.mode must be one of {MODES}, got {mode!r}")
        self.run = None
        if mode == "disabled":
            return
        kwargs = dict(
            project=project,
            entity=entity,
            group=group,
            tags=tags,
            id=run_id,
            name=name,
            dir=str(run_dir),
            config=config,
            job_type=job_type,
            resume="allow",
        )
        self.run = self._init(mode, kwargs, init_timeout)
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        # the summary of test/acc is W&B's default, its last (final-epoch) value, a plain
        # number as the tables read it; summary="max" would be the best test epoch, which the
        # tables never report (and summary="last" would nest it as {"last": ...})
        self.run.define_metric("test/acc", step_metric="step")

    @staticmethod
    def _init(mode: str, kwargs: dict[str, Any], init_timeout: float):
        import wandb

        try:
            return wandb.init(
                mode=mode, settings=wandb.Settings(init_timeout=init_timeout), **kwargs
            )
        except Exception as err:  # no network, no key, server down: keep training
            if mode != "online":
                raise
            log.warning("W&B online init failed (%s); logging offline instead", str(err)[:200])
            os.environ["WANDB_MODE"] = "offline"  # also stops wandb's network probes at exit
            return wandb.init(mode="offline", **kwargs)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        """One wandb.Table (e.g. one alpha search's loss curve) at ``step``."""
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=columns, data=rows), "step": step}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
