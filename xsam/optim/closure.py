"""The closure that ``opt.step`` calls, and the BatchNorm policy of the SAM family.

Only the first forward pass of a step (at the unperturbed weights) may update BatchNorm
running statistics; ascent and alpha-search passes normalise with batch statistics and leave
``running_mean``, ``running_var`` and ``num_batches_tracked`` untouched.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Training-mode BatchNorm uses batch statistics but does not update its running ones.

    ``track_running_stats=False`` makes BatchNorm pass no running buffers to the kernel, so
    they (and ``num_batches_tracked``) cannot change; setting momentum to 0 instead, as the
    XSAM authors do, would still count batches.
    """
    tracked = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in tracked:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in tracked:
            m.track_running_stats = True


class BatchClosure:
    """``closure(backward=True) -> loss`` on one batch, for ``opt.step(closure)``.

    The first call is the clean pass: BatchNorm running statistics update and the logits are
    kept in ``self.logits`` (accuracy at the unperturbed weights). Later calls (ascent and
    alpha-search passes) run inside :func:`frozen_bn_stats`. ``autocast_dtype`` (e.g.
    ``torch.bfloat16``) runs the forward pass under ``torch.autocast``; with ``grad_scaler``
    (fp16) the backward is ``grad_scaler.scale(loss).backward()``: give the optimizer the same
    scaler (``XSAM(..., grad_scaler=scaler)``), which unscales every pass.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        inputs: Tensor,
        targets: Tensor,
        *,
        autocast_dtype: torch.dtype | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.inputs, self.targets = inputs, targets
        self.autocast_dtype, self.grad_scaler = autocast_dtype, grad_scaler
        self.logits: Tensor | None = None
        self.calls = 0

    def __call__(self, backward: bool = True, weight: float | None = None) -> Tensor:
        """The batch loss; ``weight`` (a micro-batch's share of its batch) multiplies it."""
        first = self.calls == 0
        self.calls += 1
        with nullcontext() if first else frozen_bn_stats(self.model), self._autocast():
            logits = self.model(self.inputs)
            loss = self.loss_fn(logits, self.targets)
            if weight is not None:
                loss = loss * weight
        if first:
            self.logits = logits.detach()
        if backward:
            (loss if self.grad_scaler is None else self.grad_scaler.scale(loss)).backward()
        return loss

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.inputs.device.type, dtype=self.autocast_dtype)
