"""Turn a cluster's preemption signal into a checkpoint at the next step boundary.

SLURM (through submitit) sends USR2 before it preempts or times out a job; submitit's own
handler requeues the job and exits at once, wherever the training loop is. We take the signal
first, let the loop finish its step and save a mid-epoch checkpoint, then hand the signal on
to the handler that was installed before ours (submitit's requeue), or exit when there is none.
"""

import logging
import os
import signal
import sys

log = logging.getLogger(__name__)


def preemption_signal() -> signal.Signals:
    """USR2 unless submitit was told otherwise (``SUBMITIT_PREEMPT_SIGNAL``)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]


class Preemption:
    """``requested`` turns true when the signal arrives; ``hand_over()`` after checkpointing."""

    def __init__(self, signum: signal.Signals | None = None) -> None:
        self.signum = signum or preemption_signal()
        self.requested = False
        try:
            self.previous = signal.signal(self.signum, self._on_signal)
        except ValueError:  # not the main thread: signals cannot be handled here
            self.previous = None

    def _on_signal(self, signum, frame) -> None:
        log.warning(
            "received %s: checkpointing at the end of this step", signal.Signals(signum).name
        )
        self.requested = True

    def hand_over(self) -> None:
        """Pass the signal to the previous handler (submitit requeues and exits), else exit."""
        self.close()
        if callable(self.previous):
            self.previous(self.signum, None)  # submitit: requeue, then sys.exit
        sys.exit(
            f"stopped by {self.signum.name} after a checkpoint; run the same command to resume"
        )

    def close(self) -> None:
        if self.previous is not None:
            signal.signal(self.signum, self.previous)
