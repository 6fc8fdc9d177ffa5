"""GSAM in the SAM family.

Surrogate Gap Minimization Improves Sharpness-Aware Training (Zhuang et al., ICLR 2022,
arXiv 2203.08065), Algorithm 1; the authors' code is big_vision
``trainers/proj/gsam/gsam.py`` (``gsam_gradient``, ``minimize_fp=True``) and its PyTorch port
juntang-zhuang/GSAM. Norms and dot products are global. One step, weights w0, learning rate
lr_t (of the first param group, as the schedule set it):

    rho_t   = rho_min + (rho_max - rho_min) * (lr_t - lr_min) / (lr_max - lr_min)
              (= rho_max when lr_max == lr_min)
    g_0     = grad at w0,   w_adv = w0 + rho_t * g_0 / (||g_0|| + eps),   g_k = grad at w_adv
    g_0_par = <g_0, g_k / ||g_k||> g_k / ||g_k||,   g_0_perp = g_0 - g_0_par
    grad   <- g_k - alpha * g_0_perp                 (descend f_p, ascend the surrogate gap h)
    w <- w0 (copied back);   base optimizer step (weight decay, momentum act on this grad)

The minus sign is the paper's: the component of g_0 orthogonal to g_k is *subtracted*, which
increases the clean loss f along a direction that leaves the perturbed loss f_p unchanged to
first order, so the surrogate gap h = f_p - f shrinks.

Reduction, proved by a test: alpha = 0 and rho_min = rho_max is SAM with rho = rho_max (on
any learning rate schedule).
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.amp import GradScaler
from torch.optim import Optimizer

from xsam.optim.kernels import global_dot, global_norm
from xsam.optim.two_pass import TwoPassSAM, mix_


class GSAM(TwoPassSAM):
    """GSAM over any torch base optimizer; the maths are in the module docstring.

    ``lr_max`` defaults to the first param group's learning rate at construction (before a
    schedule moves it); ``lr_min`` to 0, where a cosine schedule ends. The current rho_t is
    ``opt.rho`` and ``report.rho``; ``opt.alpha`` is GSAM's alpha. The rho_t formula
    is the authors', not clamped: a learning rate outside [lr_min, lr_max] extrapolates it.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base: Callable[..., Optimizer],
        *,
        rho_max: float = 0.15,  # = configs/optimizer/gsam.yaml (a test holds them equal)
        rho_min: float = 0.025,
        alpha: float = 0.6,
        lr_max: float | None = None,
        lr_min: float = 0.0,
        steps: int = 1,
        search_every: int | None = None,
        eps: float = 1e-12,
        model: nn.Module | None = None,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        _check_gsam(rho_max, rho_min, alpha, lr_max, lr_min)
        super().__init__(
            params,
            base,
            rho=rho_max,
            steps=steps,
            search_every=search_every,
            eps=eps,
            model=model,
            grad_scaler=grad_scaler,
            method="GSAM",
        )
        self.rho_max, self.rho_min = float(rho_max), float(rho_min)
        first = self.param_groups[0]
        self.lr_max = float(first.get("initial_lr", first["lr"]) if lr_max is None else lr_max)
        self.lr_min = float(lr_min)
        if self.lr_max < self.lr_min:
            raise ValueError(f"lr_max must be >= lr_min, got lr_max={self.lr_max}, lr_min={lr_min}")
        self.alpha = torch.tensor(float(alpha), dtype=torch.float64)

    def current_rho(self) -> float:
        """rho_t from the learning rate the schedule has set for this step."""
        if self.lr_max == self.lr_min:
            return self.rho_max
        lr_t = float(self.param_groups[0]["lr"])
        share = (lr_t - self.lr_min) / (self.lr_max - self.lr_min)
        return self.rho_min + (self.rho_max - self.rho_min) * share

    def _combine(self, params, g_0, g_k, grad_norm_0) -> dict[str, Tensor]:
        """g_k <- g_k - alpha * (g_0 - c g_k),  c = <g_0, g_k> / ||g_k||^2."""
        dot, grad_norm_k = global_dot(g_0, g_k), global_norm(g_k)
        angle = self._angle(g_0, g_k, grad_norm_0, grad_norm_k, dot)
        self.alpha = self.alpha.to(dot)  # moved once, then stays on the device
        c = dot / (grad_norm_k + self.eps) ** 2  # g_0_par = c g_k
        mix_(g_k, 1 + self.alpha * c, g_0, -self.alpha)
        return {"grad_norm_k": grad_norm_k, "angle": angle}


def _check_gsam(rho_max, rho_min, alpha, lr_max, lr_min) -> None:
    """One clear error per bad setting, naming it."""
    if rho_max <= 0:
        raise ValueError(f"rho_max must be > 0, got {rho_max}")
    if not 0 <= rho_min <= rho_max:
        raise ValueError(f"rho_min must be in [0, rho_max={rho_max}], got {rho_min}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if lr_min < 0 or (lr_max is not None and lr_max <= 0):
        raise ValueError(f"lr_max must be > 0 and lr_min >= 0, got {lr_max}, {lr_min}")
