"""The parts train.py's epoch loop is made of: the epoch's sums, batches moved to the device,
the optimizer's time, the skipped-step check, and evaluation. The loop itself (train.py's
``Loop.train_epoch``) reads top to bottom in the order it runs; it never knows which
optimizer of the family runs."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from xsam.distributed import sum_over_ranks
from xsam.optim import XSAM


class NonFiniteLoss(RuntimeError):
    """Raised when a step saw a non-finite loss or gradient (the step itself was skipped)."""


@dataclass
class EpochStats:
    """Sums kept on the device during an epoch; read once at the end (one host sync)."""

    loss_sum: Tensor = field(default_factory=lambda: torch.zeros(()))
    correct: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.long))
    count: int = 0
    batches: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    step_seconds: float = 0.0  # inside opt.step: all passes of the method, and the update
    search_seconds: float = 0.0  # inside the steps that searched alpha
    search_steps: int = 0

    def state_dict(self) -> dict:
        """What a mid-epoch checkpoint needs to finish the epoch's averages exactly."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_state(cls, state: dict | None) -> "EpochStats":
        return cls(**state) if state else cls()

    def add(self, loss: Tensor, logits: Tensor, targets: Tensor) -> None:
        n = targets.shape[0]
        if targets.ndim == 2:  # soft (mixed) targets: accuracy against the dominant class
            targets = targets.argmax(1)
        self.loss_sum = self.loss_sum.to(loss.device) + loss.float() * n
        self.correct = self.correct.to(logits.device) + (logits.argmax(1) == targets).sum()
        self.count += n
        self.batches += 1

    def means(self) -> dict[str, float]:
        """Loss and accuracy (percent) over every sample of every rank (a collective call)."""
        loss_sum, correct, count = sum_over_ranks(
            self.loss_sum, self.correct, torch.tensor(self.count, device=self.loss_sum.device)
        )
        count = max(count.item(), 1)
        return {"loss": loss_sum.item() / count, "acc": 100.0 * correct.item() / count}


def to_device(batch, device: torch.device, channels_last: bool) -> tuple[Tensor, Tensor]:
    inputs, targets = batch
    inputs = inputs.to(device, non_blocking=True)
    if channels_last and inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets.to(device, non_blocking=True)


class StepTimer:
    """Time spent in ``opt.step``, split into search and other steps.

    On CUDA the steps are bracketed by events that are read once at the end of the epoch,
    so timing adds no host synchronisation to the loop; on a CPU the clock is exact.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.spans: list[tuple[bool, object, object]] = []

    @contextmanager
    def measure(self, *, searched: bool) -> Iterator[None]:
        if self.cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            yield
            end.record()
        else:
            begin = time.perf_counter()
            yield
            end = time.perf_counter()
        self.spans.append((searched, begin, end))

    def add_to(self, stats: EpochStats) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        for searched, begin, end in self.spans:
            seconds = begin.elapsed_time(end) / 1e3 if self.cuda else end - begin
            stats.step_seconds += seconds
            stats.search_seconds += seconds if searched else 0.0
            stats.search_steps += searched
        self.spans.clear()


def stop_if_skipped(opt: XSAM) -> None:
    """Raise NonFiniteLoss if any step so far was skipped (a host sync: call it sparingly)."""
    if int(opt.skipped_steps) > 0:
        raise NonFiniteLoss(
            f"non-finite loss or gradient at step {opt.step_count} "
            f"(loss {opt.report.loss_0.item():.4g}); the weights never took that step"
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Mean loss and accuracy (percent) over ``loader`` in eval mode."""
    model.eval()
    stats = EpochStats()
    for batch in loader:
        inputs, targets = to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(inputs)
            loss = loss_fn(logits, targets)
        stats.add(loss, logits, targets)
    return stats.means()
