"""``python train.py ...`` as a user runs it, for the tests that need a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_train(args, *, wandb_mode: str, timeout: int, **kwargs) -> subprocess.CompletedProcess:
    """train.py in the repository with ``args``, one thread, W&B in ``wandb_mode``."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
        **kwargs,
    )
