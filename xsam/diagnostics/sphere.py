"""The worst direction on the whole rho_max sphere, by projected ascent, and how close the XSAM
family's candidate directions come to it.

The circle sweep of :mod:`xsam.diagnostics.landscape` finds the maximum *within* the plane of
(v0, v1), which is where XSAM searches; this module asks the question the paper's geometric
claim is about, in the full parameter space:

    u* = argmax_{||u|| = 1} L(w0 + rho_max u)

found by projected normalized-gradient ascent on the unit sphere, started from the best
candidate (so the result is never worse than any candidate),

    u <- (u + beta g / ||g||) / ||u + beta g / ||g|| ||,    g = grad L(w0 + rho_max u),

keeping the best iterate. It is a local search: its loss is a lower bound on the true maximum.
Candidates: g_0 / ||g_0|| (SGD+), g_1 / ||g_1|| at w0 + rho g_0 / ||g_0|| (SAM), g_2 after two
ascent steps of rho / 2 (two-step SAM), and XSAM's d(alpha) in the k = 1 plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from xsam.diagnostics import vectors as vec
from xsam.diagnostics.hessian import LossFn
from xsam.diagnostics.landscape import angle_between, xsam_direction, xsam_plane


def unit(u: Sequence[Tensor]) -> list[Tensor]:
    return vec.scaled(u, 1.0 / vec.norm(u).item())


def loss_and_gradient(loss_fn: LossFn, params: list[Tensor], point: list[Tensor]):
    """L and its gradient at ``point``; the weights are put back bit-exactly."""
    w0 = vec.snapshot(params)
    try:
        vec.assign(params, point)
        loss = loss_fn()
        return loss.item(), vec.gradient(loss, params)
    finally:
        vec.assign(params, w0)


def sphere_max(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    rho_max: float,
    starts: dict[str, list[Tensor]],
    iters: int,
    beta: float,
) -> tuple[list[Tensor], float, dict[str, float]]:
    """(u*, L(w0 + rho_max u*), each start's own loss at rho_max)."""
    params = list(params)
    w0 = vec.snapshot(params)
    start_loss = {}
    for name, u in starts.items():
        start_loss[name], _ = loss_and_gradient(loss_fn, params, vec.combine(w0, [(rho_max, u)]))
    best_name = max(start_loss, key=start_loss.get)
    u, best_u, best = unit(starts[best_name]), None, -math.inf
    for _ in range(iters + 1):  # the last pass only measures the last iterate
        loss, g = loss_and_gradient(loss_fn, params, vec.combine(w0, [(rho_max, u)]))
        if loss > best:
            best, best_u = loss, u
        u = unit(vec.combine(u, [(beta / (vec.norm(g).item() + 1e-12), g)]))
    return best_u, best, start_loss


def sphere_diagnostics(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    rho: float,
    rho_max: float,
    alpha: float,
    iters: int = 20,
    beta: float = 0.5,
) -> dict[str, float]:
    """One record: each candidate's angle (degrees) to u* and its loss at rho_max."""
    params = list(params)
    plane_1 = xsam_plane(loss_fn, params, rho=rho, steps=1)
    plane_2 = xsam_plane(loss_fn, params, rho=rho, steps=2)
    candidates = {
        "g_0": plane_1.g_0,
        "g_1": plane_1.v1,
        "g_2": plane_2.v1,
        "xsam": xsam_direction(plane_1, alpha),
    }
    u_star, loss_star, losses = sphere_max(
        loss_fn, params, rho_max=rho_max, starts=candidates, iters=iters, beta=beta
    )
    record = {"geo/loss_0": plane_1.loss_0, "geo/alpha": alpha, "geo/sphere_max_loss": loss_star}
    for name, u in candidates.items():
        record[f"geo/angle/{name}"] = math.degrees(angle_between(u, u_star))
        record[f"geo/loss/{name}"] = losses[name]
    return record
