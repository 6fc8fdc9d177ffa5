"""A fixed set of batches and the deterministic loss over it, the input of every diagnostic.

Which BatchNorm statistics the loss uses (``bn``):

* ``"eval"`` (default for the sharpness numbers): the whole model in eval mode, BatchNorm
  normalizes with its running statistics and dropout is off. The loss is then a sum of
  per-example terms, a fixed function of the weights that does not depend on how examples are
  grouped into batches, and it is the function the model computes at test time; it is also the
  convention of published Hessian spectra (PyHessian), so numbers compare.
* ``"batch"`` (default for the landscape and the XSAM plane): BatchNorm normalizes with the
  statistics of the batch, as in the optimizer's ascent and alpha-search passes, while its
  running statistics stay untouched (the forward pass writes into throw-away copies); dropout
  is off so that the loss is deterministic. This is the surface the optimizer actually climbs.

In both modes no live buffer or ``.grad`` is written, and the modules' train/eval flags are put
back after every call.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset, Subset

Batch = tuple[Tensor, Tensor]
BNMode = Literal["eval", "batch"]


def fixed_batches(
    dataset: Dataset,
    *,
    batches: int,
    batch_size: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[Batch]:
    """``batches`` batches of a seeded random subset, materialized once on ``device``.

    Materializing fixes any random augmentation of the dataset, so the loss over these
    batches is one deterministic function of the weights.
    """
    g = torch.Generator().manual_seed(seed)
    n = min(len(dataset), batches * batch_size)
    subset = Subset(dataset, torch.randperm(len(dataset), generator=g)[:n].tolist())
    return [(x.to(device), y.to(device)) for x, y in DataLoader(subset, batch_size=batch_size)]


def batch_loss(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Sequence[Batch],
    *,
    bn: BNMode = "eval",
) -> Callable[[], Tensor]:
    """A zero-argument closure: the mean of ``loss_fn(model(x), y)`` over all examples.

    ``loss_fn`` is a mean-reduced criterion (e.g. ``nn.CrossEntropyLoss()``); each batch is
    weighted by its size so that the result is the per-example mean over the whole set.
    The graph is kept, so ``torch.autograd.grad`` can differentiate the result (twice).
    """
    if bn not in ("eval", "batch"):
        raise ValueError(f"bn must be 'eval' or 'batch', got {bn!r}")
    total = sum(len(y) for _, y in batches)

    def closure() -> Tensor:
        with _diagnostic_mode(model, bn):
            losses = [loss_fn(_forward(model, x, bn), y) * len(y) for x, y in batches]
        return torch.stack(losses).sum() / total

    return closure


def _forward(model: nn.Module, x: Tensor, bn: BNMode) -> Tensor:
    if bn == "eval":
        return model(x)
    # BN in train mode updates its buffers in place: hand it copies, keep the live ones intact
    copies = {
        name: b.clone()
        for name, b in model.named_buffers()
        if isinstance(model.get_submodule(name.rpartition(".")[0]), _BatchNorm)
    }
    return functional_call(model, copies, (x,))


@contextmanager
def _diagnostic_mode(model: nn.Module, bn: BNMode) -> Iterator[None]:
    """Eval mode (dropout off), BN on batch statistics if ``bn == "batch"``; flags restored."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    if bn == "batch":
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.train()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training
