"""The step that GSAM and WSAM share: one SAM ascent that keeps g_0, then a mix of g_0 and g_k.

    w_adv = w0 + rho * g_0 / (||g_0|| + eps),   g_k = grad at w_adv,   w <- w0 (copied back)
    grad <- the method's combination of g_0 and g_k;   base optimizer step at w0

Both methods are single-step SAM in their papers and need the clean gradient g_0 after the
perturbed pass, which XSAM's step does not keep (it rebuilds v0 from theta_k - w0). So the g_0
tensors are held through the step: one parameter-sized set more than SAM during a step, none
between steps (the one persistent copy is w0, as for every method of the family).

Everything else is the family's: the closure contract, the BatchNorm policy of the closure,
the non-finite skip, the step report, counters, ``state_dict`` and the DDP semantics (gradients are
averaged on every backward, so g_0, g_k and the update agree on every rank).
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.amp import GradScaler
from torch.optim import Optimizer

from xsam.optim.kernels import all_finite, backup_and_ascend_, global_dot
from xsam.optim.passes import gradients_of
from xsam.optim.report import StepReport
from xsam.optim.xsam import XSAM


class TwoPassSAM(XSAM):
    """Base of GSAM and WSAM: subclasses give ``current_rho`` and ``_combine``."""

    supports_m_sharpness = False  # WSAM's decoupled term and GSAM's rho_t are per batch

    def __init__(
        self,
        params: Iterable[Any],
        base: Callable[..., Optimizer],
        *,
        rho: float,
        steps: int,
        search_every: int | None,
        eps: float,
        method: str,
        model: nn.Module | None = None,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        if steps != 1:
            raise ValueError(
                f"{method} takes one ascent step, as in its paper: steps=1, not {steps!r}"
            )
        if search_every is not None:
            raise ValueError(f"{method} has no alpha search: search_every must be null")
        super().__init__(
            params, base, rho=rho, steps=1, eps=eps, model=model, grad_scaler=grad_scaler
        )

    def current_rho(self) -> float:
        """The ascent radius of the next step."""
        return self.rho

    def _combine(self, params, g_0, g_k, grad_norm_0) -> dict[str, Tensor]:
        """Write the update into ``g_k`` (``g_0`` is scratch); return ``grad_norm_k`` and,
        when formed, ``angle`` (0-d tensors)."""
        raise NotImplementedError

    def _sharpness_aware_step(self, closure, params, g_0, loss_0, grad_norm_0) -> StepReport:
        w0 = self._w0_buffers(params)
        self.rho = self.current_rho()
        backup_and_keep_ascend_(params, w0, g_0, self.rho / (grad_norm_0 + self.eps))
        loss_k = self._gradient_pass(closure)
        g_k = gradients_of(params, self._names, "the pass at the ascent point")
        torch._foreach_copy_(params, w0)  # exact restore: copy, never subtract
        diag = self._combine(params, g_0, g_k, grad_norm_0)
        finite = all_finite(loss_0, grad_norm_0, *diag.values())
        rho = torch.tensor(self.rho, dtype=torch.float64)
        return StepReport(loss_0, grad_norm_0, finite, loss_k=loss_k, rho=rho, **diag)

    def _angle(self, g_0, g_k, grad_norm_0, grad_norm_k, dot: Tensor | None = None) -> Tensor:
        """The angle between g_0 and g_k (for k = 1 the family's angle between v0 and v1)."""
        dot = global_dot(g_0, g_k) if dot is None else dot
        cos_t = dot / ((grad_norm_0 + self.eps) * (grad_norm_k + self.eps))
        return torch.arccos(cos_t.clamp(-1.0, 1.0))

    def _angle_or_nothing(self, g_0, g_k, grad_norm_0, grad_norm_k) -> dict[str, Tensor]:
        if not self._angle_wanted:
            return {}
        return {"angle": self._angle(g_0, g_k, grad_norm_0, grad_norm_k)}


def backup_and_keep_ascend_(
    params: list[Tensor], w0: list[Tensor], g: list[Tensor], scale: Tensor
) -> None:
    """w0 <- params, then params += scale * g, leaving ``g`` as it was."""
    if params[0].device.type == "cpu":  # addcmul_ reads g without writing it
        backup_and_ascend_(params, w0, g, scale)
        return
    e = torch._foreach_mul(g, scale)  # transient: freed before g_k is allocated
    torch._foreach_copy_(w0, params)
    torch._foreach_add_(params, e)


def mix_(g_k: list[Tensor], a: Tensor, g_0: list[Tensor], b: Tensor) -> None:
    """g_k <- a * g_k + b * g_0, for 0-d ``a`` and ``b``; ``g_0`` may be overwritten."""
    if g_k[0].device.type == "cpu":
        for gk, g0 in zip(g_k, g_0, strict=True):
            gk.mul_(a).addcmul_(g0, b)  # one pass over each tensor
        return
    torch._foreach_mul_(g_k, a)
    torch._foreach_mul_(g_0, b)
    torch._foreach_add_(g_k, g_0)
