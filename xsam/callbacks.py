"""Hydra's hooks around train.py: reject a bad config before Hydra writes anything, and
report every failed job of a sweep at its end, with a non-zero exit.

A single run's config is checked in ``on_run_start``, before Hydra creates its output folder
(``<run_root>/_hydra/<date>/<time>/``). A sweep's jobs are checked one by one in train.py (the
sweep's overrides are applied per job); a failed job writes one line to
``<sweep dir>/failures.jsonl`` and returns, so that the other jobs still run, and
``on_multirun_end`` prints those lines and exits with status 1.
"""

import json
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from xsam.config_checks import ConfigError, check_config

FAILURES = "failures.jsonl"


class ConfigChecks(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # (as Hydra does next) for ${hydra:...}
        task = config.copy()
        with open_dict(task):
            del task["hydra"]
        try:
            check_config(task)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)  # one line, no traceback, nothing written
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / FAILURES
        if not path.exists():
            return
        failures = [json.loads(line) for line in path.read_text().splitlines() if line]
        for f in failures:
            overrides = " ".join(f["overrides"])
            print(f"failed job {f['job']} ({overrides}): {f['error']}", file=sys.stderr)
        print(f"error: {len(failures)} job(s) of the sweep failed (see {path})", file=sys.stderr)
        sys.exit(1)


def record_failure(error: str) -> None:
    """One line per failed job of a sweep, in the sweep folder (shared by a cluster's jobs)."""
    hydra = HydraConfig.get()
    line = {
        "job": hydra.job.num,
        "overrides": OmegaConf.to_container(hydra.overrides.task),
        "error": error,
    }
    with open(Path(hydra.sweep.dir) / FAILURES, "a") as f:
        f.write(json.dumps(line) + "\n")
