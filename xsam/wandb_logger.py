"""Weights & Biases for a run: resumable, never fatal, mode always from config.

The W&B run id is the run directory's id, so a resumed (or requeued) run continues the same
W&B run. If the online service cannot be reached, the run goes on offline with one warning
(``wandb sync`` uploads it later).
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
            resume="allow",
        )
        self.run = self._init(mode, kwargs, init_timeout)

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

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
