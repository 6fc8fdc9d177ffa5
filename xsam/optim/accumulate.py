"""Gradient accumulation inside one step, and the SAM paper's m-sharpness.

Sharpness-Aware Minimization for Efficiently Improving Generalization (Foret et al., ICLR
2021, arXiv 2010.01412), section 4.1 (m-sharpness); google-research/sam computes it across
devices (each device ascends on its own gradient, the final gradients are averaged).

A batch split into micro-batches j = 1..m of n_j examples (N in all, weights w_j = n_j / N),
L_j the mean loss of micro-batch j, L = sum_j w_j L_j the mean loss of the whole batch:

* accumulation (``MicroBatchClosure(...)``): each pass of the step (clean, ascent) returns L
  and leaves grad L = sum_j w_j grad L_j in ``.grad``, one micro-batch at a time. The step is
  the step on the whole batch (equal up to rounding, for models without BatchNorm; with it,
  each micro-batch normalises by its own statistics and the clean pass updates the running
  ones once per micro-batch, as a framework's accumulation does).
* m-sharpness (``MicroBatchClosure(..., m_sharpness=True)``): each micro-batch runs the
  method's whole computation from w0 on its own loss L_j (its own ascent, g_k^j and plane),
  giving an update gradient u_j; the base optimizer steps once on u = sum_j w_j u_j. For SAM,
  u = sum_j w_j grad L_j(w0 + rho grad L_j / ||grad L_j||). One micro-batch is the plain
  step. The report holds loss_0 = L at w0 and the w_j-weighted means of the other values.
  One alpha serves every micro-batch, so the alpha search (``search_every``) and GSAM/WSAM
  are refused; u is held in one parameter-sized set of tensors during the step.
"""

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from xsam.optim.closure import BatchClosure, frozen_bn_stats
from xsam.optim.report import StepReport


class MicroBatchClosure:
    """``closure(backward=True) -> loss`` over micro-batches ``[(inputs, targets), ...]``.

    Each call runs every micro-batch and returns the whole batch's mean loss; with
    ``backward`` it back-propagates ``w_j L_j`` per micro-batch, so ``.grad`` accumulates the
    whole batch's mean gradient (a DDP model syncs on the last micro-batch only). BatchNorm
    as in :class:`~xsam.optim.closure.BatchClosure`: running statistics from the first call.
    ``m_sharpness=True`` makes the optimizer ascend on each micro-batch (module docstring).

    Under DDP, m-sharpness's micro-batches are those of each rank, and every micro-batch's
    backward all-reduces, as any DDP backward does: each micro-batch ascends on the gradient
    averaged over the ranks' same-index micro-batches. The per-device m-sharpness of
    google-research/sam (each device ascends on its own gradient alone) is not provided: it
    needs the ascent passes outside DDP's synchronisation.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        micro_batches: Sequence[tuple[Tensor, Tensor]],
        *,
        m_sharpness: bool = False,
        autocast_dtype: torch.dtype | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if len(micro_batches) == 0:
            raise ValueError("micro_batches must hold at least one (inputs, targets) pair")
        sizes = [len(targets) for _, targets in micro_batches]
        self.weights = [n / sum(sizes) for n in sizes]
        how = dict(autocast_dtype=autocast_dtype, grad_scaler=grad_scaler)
        self.parts = [BatchClosure(model, loss_fn, x, y, **how) for x, y in micro_batches]
        self.model, self.m_sharpness = model, bool(m_sharpness)
        self.logits: Tensor | None = None
        self.calls = 0

    def __call__(self, backward: bool = True) -> Tensor:
        first = self.calls == 0
        self.calls += 1
        total, last = None, len(self.parts) - 1
        with nullcontext() if first else frozen_bn_stats(self.model):
            for j, (part, weight) in enumerate(zip(self.parts, self.weights, strict=True)):
                with _no_sync(self.model) if backward and j < last else nullcontext():
                    loss = part(backward=backward, weight=weight).detach()
                total = loss if total is None else total + loss
        if first:
            self.logits = torch.cat([part.logits for part in self.parts])
        return total


def _no_sync(model: nn.Module):
    """DDP's no_sync for the micro-batches before the last (one all-reduce per pass)."""
    return model.no_sync() if hasattr(model, "no_sync") else nullcontext()


def m_sharpness_update(opt, closure: MicroBatchClosure) -> tuple[StepReport, list[Tensor]]:
    """The update gradient u = sum_j w_j u_j in ``.grad`` (module docstring), weights at w0."""
    if opt.search_every is not None or not opt.supports_m_sharpness:
        raise ValueError(
            f"m_sharpness needs one alpha for every micro-batch: {type(opt).__name__} with "
            f"search_every={opt.search_every!r} is not supported (XSAM, SAM, SGD+, ASAM without "
            "the alpha search are)"
        )
    params, update, weighted = None, None, []
    for weight, part in zip(closure.weights, closure.parts, strict=True):
        report, mine = opt._update(part)  # zero_grad first: ``update`` is held, not cleared
        if params is None:
            params, update = mine, [p.grad.mul_(weight) for p in mine]
        elif len(mine) != len(params) or any(a is not b for a, b in zip(mine, params, strict=True)):
            raise ValueError("m_sharpness: every micro-batch must reach the same parameters")
        else:
            torch._foreach_add_(update, [p.grad for p in params], alpha=weight)
        weighted.append((weight, report))
    opt._put_back(params, update)
    return _weighted_report(weighted), params


def _weighted_report(weighted: list[tuple[float, StepReport]]) -> StepReport:
    def mean(name: str) -> Tensor | None:
        values = [getattr(r, name) for _, r in weighted]
        if any(v is None for v in values):
            return None
        return sum(w * v for (w, _), v in zip(weighted, values, strict=True))

    finite = torch.stack([r.finite for _, r in weighted]).all()
    return StepReport(
        mean("loss_0"), mean("grad_norm_0"), finite, loss_k=mean("loss_k"),
        grad_norm_k=mean("grad_norm_k"), angle=mean("angle"), alpha=weighted[-1][1].alpha,
    )  # fmt: skip
