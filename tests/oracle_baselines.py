"""Slow, obviously-correct float64 references for one GSAM and one WSAM step.

Written from the papers' equations alone (GSAM: arXiv 2203.08065, Algorithm 1; WSAM: arXiv
2305.15817, the objective and its "weight decouple" update), one parameter at a time, with
Python loops over plain tensors and no code shared with `xsam.optim`. Never used for training.

GSAM, learning rate lr_t of the first param group:
    rho_t    = rho_min + (rho_max - rho_min) (lr_t - lr_min) / (lr_max - lr_min)
    g        = grad f(w),   w_adv = w + rho_t g / ||g||,   g_p = grad f(w_adv)
    g_par    = (<g, g_p> / ||g_p||^2) g_p,   g_perp = g - g_par
    update   = g_p - alpha g_perp            (then the base optimizer at w)
WSAM, a = gamma / (1 - gamma):
    w_adv = w + rho g / ||g||,   g_p = grad L(w_adv)
    coupled:    update = g + a (g_p - g)       (then the base optimizer at w)
    decoupled:  the base optimizer at w on g, then w -= lr_group * a * (g_p - g)

BatchNorm running statistics come from the first pass only: every buffer is saved after it and
copied back after the perturbed pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[], torch.Tensor]


def inner(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    total = 0.0
    for x, y in zip(a, b, strict=True):
        total += float((x.double() * y.double()).sum())
    return total


def length(a: list[torch.Tensor]) -> float:
    return math.sqrt(inner(a, a))


class _TwoPassReference:
    """Shared bookkeeping: parameters, buffers, the two gradient passes, the final step."""

    def __init__(self, model: nn.Module, base: torch.optim.Optimizer, eps: float) -> None:
        self.model, self.base, self.eps = model, base, eps
        self.params = [p for p in model.parameters() if p.requires_grad]

    def grad(self, loss_fn: LossFn) -> tuple[float, list[torch.Tensor]]:
        loss = loss_fn()
        return float(loss.detach()), [g.double() for g in torch.autograd.grad(loss, self.params)]

    def two_passes(self, loss_fn: LossFn, rho: float) -> dict:
        """g at w and g_p at w + rho g / ||g||; leaves the weights and BN buffers at w's."""
        w = [p.detach().clone() for p in self.params]
        loss, g = self.grad(loss_fn)
        saved = [b.detach().clone() for b in self.model.buffers()]
        n = length(g)
        with torch.no_grad():
            for p, wi, gi in zip(self.params, w, g, strict=True):
                p.copy_(wi + rho * gi / (n + self.eps))
        loss_p, g_p = self.grad(loss_fn)
        with torch.no_grad():
            for b, s in zip(self.model.buffers(), saved, strict=True):
                b.copy_(s)
            for p, wi in zip(self.params, w, strict=True):
                p.copy_(wi)
        norms = dict(grad_norm_0=n, grad_norm_k=length(g_p))
        return dict(loss_0=loss, loss_k=loss_p, g=g, g_p=g_p, **norms)

    def base_step(self, update: list[torch.Tensor]) -> None:
        for p, u in zip(self.params, update, strict=True):
            p.grad = u.to(p.dtype).clone()
        self.base.step()

    @staticmethod
    def angle(rec: dict) -> float:
        cos = inner(rec["g"], rec["g_p"]) / (rec["grad_norm_0"] * rec["grad_norm_k"])
        return math.acos(min(1.0, max(-1.0, cos)))


class ReferenceGSAM(_TwoPassReference):
    def __init__(self, model, base, *, rho_max, rho_min, alpha, lr_max, lr_min, eps=1e-12):
        super().__init__(model, base, eps)
        self.rho_max, self.rho_min, self.alpha = rho_max, rho_min, alpha
        self.lr_max, self.lr_min = lr_max, lr_min

    def rho_t(self) -> float:
        if self.lr_max == self.lr_min:
            return self.rho_max
        lr = self.base.param_groups[0]["lr"]
        return self.rho_min + (self.rho_max - self.rho_min) * (lr - self.lr_min) / (
            self.lr_max - self.lr_min
        )

    def step(self, loss_fn: LossFn) -> dict:
        rho = self.rho_t()
        rec = self.two_passes(loss_fn, rho)
        g, g_p = rec["g"], rec["g_p"]
        c = inner(g, g_p) / rec["grad_norm_k"] ** 2
        g_perp = [gi - c * gpi for gi, gpi in zip(g, g_p, strict=True)]
        self.base_step([gpi - self.alpha * v for gpi, v in zip(g_p, g_perp, strict=True)])
        return rec | dict(rho=rho, angle=self.angle(rec), g_perp=g_perp)


class ReferenceWSAM(_TwoPassReference):
    def __init__(self, model, base, *, rho, gamma, decouple, eps=1e-12):
        super().__init__(model, base, eps)
        self.rho, self.a, self.decouple = rho, gamma / (1 - gamma), decouple

    def step(self, loss_fn: LossFn) -> dict:
        rec = self.two_passes(loss_fn, self.rho)
        g, g_p = rec["g"], rec["g_p"]
        sharpness = [gpi - gi for gi, gpi in zip(g, g_p, strict=True)]
        if not self.decouple:
            self.base_step([gi + self.a * si for gi, si in zip(g, sharpness, strict=True)])
            return rec | dict(angle=self.angle(rec))
        self.base_step(g)
        of = {id(p): s for p, s in zip(self.params, sharpness, strict=True)}
        with torch.no_grad():
            for group in self.base.param_groups:
                for p in group["params"]:
                    if id(p) in of:
                        p.sub_((group["lr"] * self.a * of[id(p)]).to(p.dtype))
        return rec | dict(angle=self.angle(rec))
