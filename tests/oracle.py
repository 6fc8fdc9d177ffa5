"""A slow, obviously-correct reference for one XSAM training step (docs: ALGORITHM).

Written from the algorithm description alone, one parameter at a time in float64, with
Python loops and no foreach kernels, so that `xsam.optim.XSAM` can be checked against code
that shares nothing with it. Never used for training.

One step on a batch, theta0 the parameters on entry, k = steps:

    theta_i+1 = theta_i + (rho / k) * g_i / (||g_i|| + eps)                     (i < k)
    ASAM:       theta_i + (rho / k) * T^2 g_i / (||T g_i|| + eps),  T = |theta_i| + eta
    v0 = (theta_k - theta0) / (||theta_k - theta0|| + eps),  v1 = g_k / (||g_k|| + eps)
    t  = arccos(clamp(<v0, v1>, -1, 1))
    d(alpha) = sin((1 - alpha) t) / sin t * v0 + sin(alpha t) / sin t * v1
               (v0 + v1) / 2 when sin t < 1e-8
    search steps: alpha = first argmax over the grid of loss(theta0 + rho_max * d(alpha))
    update gradient = ||g_k|| * d(alpha), applied by the base optimizer at theta0.

Norms and dot products are global over the parameters that have a gradient. BatchNorm
running statistics come from the first pass only: here by saving every buffer after that
pass and copying it back after each later one (the optimizer uses another mechanism, on
purpose).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

Vector = list[torch.Tensor]  # one float64 tensor per parameter: a global vector
LossFn = Callable[[], torch.Tensor]  # the batch loss at the current parameters

SIN_FALLBACK = 1e-8


def dot(a: Vector, b: Vector) -> float:
    return sum(
        float((x.detach().double() * y.detach().double()).sum()) for x, y in zip(a, b, strict=True)
    )


def norm(a: Vector) -> float:
    return math.sqrt(dot(a, a))


def unit(a: Vector, eps: float) -> Vector:
    n = norm(a)
    return [x.double() / (n + eps) for x in a]


def angle(v0: Vector, v1: Vector) -> float:
    """t = arccos(<v0, v1>), clamped so rounding past +-1 cannot give NaN."""
    return math.acos(min(1.0, max(-1.0, dot(v0, v1))))


def direction(v0: Vector, v1: Vector, alpha: float, t: float) -> Vector:
    """d(alpha): the unit vector at angle alpha * t from v0 on the arc through v1."""
    sin_t = math.sin(t)
    if sin_t < SIN_FALLBACK:
        return [(a + b) / 2 for a, b in zip(v0, v1, strict=True)]
    c0, c1 = math.sin((1 - alpha) * t) / sin_t, math.sin(alpha * t) / sin_t
    return [c0 * a + c1 * b for a, b in zip(v0, v1, strict=True)]


def alpha_grid(alpha_max: float, alpha_delta: float) -> list[float]:
    """0, delta, 2 delta, ... up to and including alpha_max (the authors' numpy grid)."""
    return [float(a) for a in np.arange(0.0, alpha_max + 1e-5, alpha_delta)]


REPO = Path(__file__).resolve().parents[1]


def suite_settings(**overrides) -> dict[str, Any]:
    """configs/optimizer/xsam.yaml's settings (the suite's record of the defaults, which a
    test holds equal to XSAM's keyword defaults), as explicit oracle arguments."""
    stated = OmegaConf.to_container(OmegaConf.load(REPO / "configs/optimizer/xsam.yaml"))
    keys = ("rho", "steps", "alpha", "rho_max", "alpha_max", "alpha_delta", "adaptive", "eta")
    return {**{k: stated[k] for k in keys}, "eps": float(stated["eps"]), "search_every": None,
            **overrides}  # fmt: skip


class ReferenceXSAM:
    """One XSAM step at a time; keyword arguments as `xsam.optim.XSAM`.

    `params_or_model` is a module (its parameters, and its buffers restored after every
    pass but the first) or a list of parameters. `base` is a ready torch optimizer over
    the same parameters. `step(loss_fn)` returns a record of what it computed. Every
    setting is explicit: `suite_settings()` gives the ones the suite's YAML states.
    """

    def __init__(
        self,
        params_or_model: nn.Module | Iterable[torch.Tensor],
        base: torch.optim.Optimizer,
        *,
        rho: float,
        steps: int,
        alpha: float,
        search_every: int | None,
        rho_max: float,
        alpha_max: float,
        alpha_delta: float,
        adaptive: bool,
        eta: float,
        eps: float,
    ) -> None:
        if isinstance(params_or_model, nn.Module):
            self.params = list(params_or_model.parameters())
            self.buffers = list(params_or_model.buffers())
        else:
            self.params, self.buffers = list(params_or_model), []
        self.base, self.rho, self.k, self.alpha = base, rho, steps, alpha
        self.search_every, self.rho_max = search_every, rho_max
        self.grid = alpha_grid(alpha_max, alpha_delta)
        self.adaptive, self.eta, self.eps = adaptive, eta, eps
        self.step_count = 0

    def gradients(self, loss_fn: LossFn) -> tuple[float, list[torch.Tensor | None]]:
        """Loss and per-parameter gradient (None: frozen or unused) at the current point."""
        trainable = [p for p in self.params if p.requires_grad]
        loss = loss_fn()
        grads = iter(torch.autograd.grad(loss, trainable, allow_unused=True))
        return float(loss.detach()), [next(grads) if p.requires_grad else None for p in self.params]

    def restore_buffers(self, saved: Vector) -> None:
        with torch.no_grad():
            for b, s in zip(self.buffers, saved, strict=True):
                b.copy_(s)

    def set_params(self, values: Vector, idx: list[int]) -> None:
        with torch.no_grad():
            for i, v in zip(idx, values, strict=True):
                self.params[i].copy_(v)

    def ascend(self, g: Vector, idx: list[int]) -> None:
        """theta_i+1 = theta_i + (rho / k) * u_i, u_i the (ASAM-scaled) normalized g_i."""
        theta = [self.params[i].detach().double() for i in idx]
        if self.adaptive:
            T = [th.abs() + self.eta for th in theta]  # at theta_i, not theta0
            n = norm([Ti * gi for Ti, gi in zip(T, g, strict=True)])
            u = [Ti * Ti * gi.double() / (n + self.eps) for Ti, gi in zip(T, g, strict=True)]
        else:
            n = norm(g)
            u = [gi.double() / (n + self.eps) for gi in g]
        self.set_params(
            [th + (self.rho / self.k) * ui for th, ui in zip(theta, u, strict=True)], idx
        )

    def search(self, v0, v1, t, theta0, idx, loss_fn, bn) -> list[float]:
        """Loss at theta0 + rho_max * d(alpha) for every alpha of the grid, no gradient."""
        losses = []
        for a in self.grid:
            d = direction(v0, v1, a, t)
            self.set_params([th + self.rho_max * di for th, di in zip(theta0, d, strict=True)], idx)
            with torch.no_grad():
                losses.append(float(loss_fn()))
            self.restore_buffers(bn)
        return losses

    def step(self, loss_fn: LossFn) -> dict[str, Any]:
        theta0_all = [p.detach().clone() for p in self.params]
        loss_0, g = self.gradients(loss_fn)  # the only pass that moves BN statistics
        bn = [b.detach().clone() for b in self.buffers]
        idx = [i for i, gi in enumerate(g) if gi is not None]
        g_0 = [g[i] for i in idx]
        rec: dict[str, Any] = {"loss_0": loss_0, "grad_norm_0": norm(g_0), "passes": 1}
        if self.k == 0:  # no ascent: the base optimizer on g_0 itself
            return self.finish(rec, theta0_all, idx, g_0)
        g_i, loss_k = g_0, loss_0
        for _ in range(self.k):
            self.ascend(g_i, idx)
            loss_k, g = self.gradients(loss_fn)
            self.restore_buffers(bn)
            g_i = [g[i] for i in idx]
        theta0 = [theta0_all[i].double() for i in idx]
        theta_k = [self.params[i].detach().double() for i in idx]
        v0 = unit([a - b for a, b in zip(theta_k, theta0, strict=True)], self.eps)
        v1 = unit(g_i, self.eps)
        t = angle(v0, v1)
        rec |= dict(loss_k=loss_k, grad_norm_k=norm(g_i), v0=v0, v1=v1, angle=t)
        rec |= dict(fallback=math.sin(t) < SIN_FALLBACK, searched=self.search_due())
        rec["passes"] += self.k
        if rec["searched"]:
            losses = self.search(v0, v1, t, theta0, idx, loss_fn, bn)
            self.alpha = self.grid[losses.index(max(losses))]  # the first of ties
            rec |= dict(search_alphas=list(self.grid), search_losses=losses)
            rec["passes"] += len(self.grid)
        rec["alpha"] = self.alpha
        d = direction(v0, v1, self.alpha, t)
        return self.finish(rec, theta0_all, idx, [rec["grad_norm_k"] * di for di in d])

    def search_due(self) -> bool:
        return self.search_every is not None and self.step_count % self.search_every == 0

    def finish(self, rec, theta0_all, idx, update: Vector) -> dict[str, Any]:
        """Restore theta0 by copy, set the update gradient, let the base optimizer step."""
        with torch.no_grad():
            for p, th in zip(self.params, theta0_all, strict=True):
                p.copy_(th)
                p.grad = None
            for i, u in zip(idx, update, strict=True):
                self.params[i].grad = u.to(self.params[i].dtype).clone()
        self.base.step()
        self.step_count += 1
        return rec


def textbook_sam_step(
    params: list[torch.Tensor],
    base: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    rho: float,
    steps: int = 1,
    eps: float = 1e-12,
) -> float:
    """(Multi-step) SAM written the usual way: ascend, take g_k, restore, step on g_k.

    No arc, no angle: the parent that XSAM with alpha = 1 must reduce to.
    """

    def backward() -> float:
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        return float(loss.detach())

    theta0 = [p.detach().clone() for p in params]
    loss_0 = backward()
    for _ in range(steps):
        n = norm([p.grad for p in params])
        with torch.no_grad():
            for p in params:
                p.add_((rho / steps) * p.grad / (n + eps))
        backward()
    with torch.no_grad():
        for p, th in zip(params, theta0, strict=True):
            p.copy_(th)
    base.step()
    return loss_0
