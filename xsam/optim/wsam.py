"""WSAM in the SAM family.

Sharpness-Aware Minimization Revisited: Weighted Sharpness as a Regularization Term (Yue et
al., KDD 2023, arXiv 2305.15817); the authors' code is ``WeightedSAM`` in
intelligent-machine-learning/dlrover ``atorch/atorch/optimizers/wsam.py``. The objective

    L_WSAM(w) = L(w) + gamma / (1 - gamma) * (max_{||e|| <= rho} L(w + e) - L(w))

weighs the sharpness term by a = gamma / (1 - gamma). One step, weights w0, norms global:

    g_0 = grad at w0,   w_adv = w0 + rho * g_0 / (||g_0|| + eps),   g_k = grad at w_adv
    w <- w0 (copied back)
    decouple=False:  grad <- g_0 + a (g_k - g_0) = (1 - a) g_0 + a g_k;  base optimizer step
    decouple=True (the paper's "weight decouple", its default):
                     grad <- g_0;  base optimizer step;  then w <- w - lr * a * (g_k - g_0),
                     lr each param group's current learning rate

So in the decoupled form the base optimizer's momentum, weight decay and preconditioning act
on g_0 alone and the sharpness gradient is a plain SGD step beside it.

Reductions, each proved by a test:
    gamma = 1/2 (a = 1), decouple=False   SAM, for any base optimizer
    gamma = 1/2, decouple=True            SAM when the base is SGD without momentum (with
                                          momentum the sharpness term bypasses the buffer)
    gamma = 0 (a = 0)                     the base optimizer on g_0 (the second pass unused)
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.amp import GradScaler
from torch.optim import Optimizer

from xsam.optim.kernels import add_scaled_, global_norm
from xsam.optim.two_pass import TwoPassSAM, mix_


class WSAM(TwoPassSAM):
    """WSAM over any torch base optimizer; the maths are in the module docstring.

    With ``decouple=True`` a skipped (non-finite) step also skips the sharpness term; deciding
    that reads one flag from the device per step. The authors' optional gradient clipping
    (``max_norm``) is not part of this optimizer: no method of the family clips.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base: Callable[..., Optimizer],
        *,
        rho: float = 0.15,  # = configs/optimizer/wsam.yaml (a test holds them equal)
        gamma: float = 0.9,
        decouple: bool = True,
        steps: int = 1,
        search_every: int | None = None,
        eps: float = 1e-12,
        model: nn.Module | None = None,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        if not 0 <= gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        if rho <= 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        super().__init__(
            params,
            base,
            rho=rho,
            steps=steps,
            search_every=search_every,
            eps=eps,
            model=model,
            grad_scaler=grad_scaler,
            method="WSAM",
        )
        self.gamma, self.decouple = float(gamma), bool(decouple)
        self.a = self.gamma / (1 - self.gamma)  # the weight of the sharpness term
        self._sharpness: list[Tensor] = []

    def _combine(self, params, g_0, g_k, grad_norm_0) -> dict[str, Tensor]:
        grad_norm_k = global_norm(g_k)
        diag = {"grad_norm_k": grad_norm_k}
        diag |= self._angle_or_nothing(g_0, g_k, grad_norm_0, grad_norm_k)
        if not self.decouple:
            one = torch.ones_like(grad_norm_k)
            mix_(g_k, self.a * one, g_0, (1 - self.a) * one)  # (1 - a) g_0 + a g_k
            return diag
        torch._foreach_sub_(g_k, g_0)  # g_k now holds the sharpness gradient g_k - g_0
        self._sharpness = g_k
        for p, g in zip(params, g_0, strict=True):
            p.grad = g  # the base optimizer steps on g_0
        return diag

    def _after_base_step(self, params, finite: Tensor) -> None:
        """w -= lr * a * (g_k - g_0), group by group, unless the step was skipped."""
        sharpness, self._sharpness = self._sharpness, []
        if not self.decouple or not finite:  # one host sync: the term must follow the skip
            return
        of = dict(zip(params, sharpness, strict=True))
        for group in self.param_groups:
            mine = [p for p in group["params"] if p in of]
            if mine:
                scale = torch.as_tensor(-group["lr"] * self.a, dtype=mine[0].dtype)
                add_scaled_(mine, [of[p] for p in mine], scale.to(mine[0].device))
