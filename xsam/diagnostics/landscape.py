"""The XSAM plane around the current weights: its directions, the loss on it, the true maximum.

XSAM (Chen & Zhou, arXiv 2603.10048) searches the update direction on the plane spanned by

    v0 = (theta_k - theta0) / ||theta_k - theta0||      (= g_0 / ||g_0|| for k = 1)
    v1 = g_k / ||g_k||,                 t = arccos <v0, v1>
    d(alpha) = sin((1 - alpha) t) / sin t * v0 + sin(alpha t) / sin t * v1

where theta_k is reached by k normalized ascent steps of length rho / k (with ``adaptive``,
ASAM's steps (rho / k) T^2 g_i / ||T g_i||, T = |theta_i| + eta, as the optimizer takes). This
module recomputes that plane for one batch with plain torch, independently of ``xsam.optim``
(it is a check on the optimizer, not a second copy of it), evaluates the loss on a grid of the
plane, sweeps the circle of radius rho_max for the numerical maximum, and measures the angle
between that
maximum and each candidate direction:

    g_0   g_0 / ||g_0||, the direction of "SGD+" (k = 1, alpha = 0); off the plane when k > 1
    v0    d(0), the alpha = 0 end of the arc (= g_0 for k = 1)
    g_k   v1 = d(1), the direction of SAM / multi-step SAM
    xsam  d(alpha) for the chosen alpha

Plane coordinates use the orthonormal axes e0 = v0, e1 = (v1 - <v1, e0> e0) / ||...||, so that
d(alpha) sits at angle alpha * t from e0. Every function puts the weights back bit-exactly.
"""

import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xsam.diagnostics import vectors as vec
from xsam.diagnostics.hessian import LossFn
from xsam.optim.xsam import alpha_grid

Axes = tuple[list[Tensor], list[Tensor]]


@dataclass(frozen=True)
class Plane:
    """The XSAM geometry of one batch at theta0 (what the optimizer computes on one step)."""

    v0: list[Tensor]
    v1: list[Tensor]
    g_0: list[Tensor]  # g_0 / ||g_0||
    t: float  # arccos <v0, v1>, clamped to [-1, 1] before the arccos
    rho: float
    steps: int
    ascent_norm: float  # ||theta_k - theta0|| (rho for k = 1, <= rho for k > 1)
    loss_0: float
    loss_k: float
    grad_norm_0: float
    grad_norm_k: float


def _grad(loss_fn: LossFn, params: list[Tensor]) -> tuple[float, list[Tensor]]:
    loss = loss_fn()
    return loss.item(), vec.gradient(loss, params)


def xsam_plane(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    rho: float,
    steps: int = 1,
    adaptive: bool = False,
    eta: float = 0.01,
    unscaled: Collection[Tensor] = (),
    eps: float = 1e-12,
) -> Plane:
    """v0, v1 and t as in steps 1-3 of the algorithm: k ascent steps, then g_k."""
    if rho <= 0 or steps < 1:
        raise ValueError(f"the plane needs rho > 0 and steps >= 1, got rho={rho}, steps={steps}")
    params = list(params)
    theta0 = vec.snapshot(params)
    try:
        loss_0, g = _grad(loss_fn, params)
        g_0, norm_0 = g, vec.norm(g).item()
        for i in range(steps):
            if i > 0:
                _, g = _grad(loss_fn, params)
            _ascent_step(params, g, rho / steps, adaptive, eta, unscaled, eps)
        loss_k, g_k = _grad(loss_fn, params)
        ascent = torch._foreach_sub([p.detach() for p in params], theta0)
    finally:
        vec.assign(params, theta0)
    ascent_norm, norm_k = vec.norm(ascent).item(), vec.norm(g_k).item()
    v0 = vec.scaled(ascent, 1.0 / (ascent_norm + eps))
    v1 = vec.scaled(g_k, 1.0 / (norm_k + eps))
    t = math.acos(min(1.0, max(-1.0, vec.dot(v0, v1).item())))
    return Plane(
        v0=v0,
        v1=v1,
        g_0=vec.scaled(g_0, 1.0 / (norm_0 + eps)),
        t=t,
        rho=rho,
        steps=steps,
        ascent_norm=ascent_norm,
        loss_0=loss_0,
        loss_k=loss_k,
        grad_norm_0=norm_0,
        grad_norm_k=norm_k,
    )


@torch.no_grad()
def _ascent_step(params, g, size: float, adaptive: bool, eta: float, unscaled, eps: float) -> None:
    """theta += size * g / (||g|| + eps); ASAM: theta += size * T^2 g / (||T g|| + eps), with
    T = |theta_i| + eta, or 1 on the ``unscaled`` tensors (adaptive_scope="weight")."""
    if adaptive:
        skip = {id(p) for p in unscaled}
        t_op = [torch.ones_like(p) if id(p) in skip else p.detach().abs() + eta for p in params]
        t_g = [t * gi for t, gi in zip(t_op, g, strict=True)]
        g, norm = [t * tg for t, tg in zip(t_op, t_g, strict=True)], vec.norm(t_g).item()
    else:
        norm = vec.norm(g).item()
    torch._foreach_add_(params, g, alpha=size / (norm + eps))


def xsam_direction(plane: Plane, alpha: float) -> list[Tensor]:
    """d(alpha) on the arc through v0 (alpha = 0) and v1 (alpha = 1); the midpoint if t ~ 0."""
    s = math.sin(plane.t)
    if s < 1e-8:
        return vec.combine(vec.scaled(plane.v0, 0.5), [(0.5, plane.v1)])
    c0, c1 = math.sin((1 - alpha) * plane.t) / s, math.sin(alpha * plane.t) / s
    return vec.combine(vec.scaled(plane.v0, c0), [(c1, plane.v1)])


@torch.no_grad()
def loss_at(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    w0: Sequence[Tensor],
    terms: Sequence[tuple[float, Sequence[Tensor]]],
) -> float:
    """L(w0 + sum_j c_j u_j); leaves the parameters at that point (callers restore)."""
    vec.assign(params, vec.combine(w0, terms))
    return loss_fn().item()


def search_alpha(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    plane: Plane,
    *,
    rho_max: float,
    alpha_max: float = 2.0,
    alpha_delta: float = 0.1,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Step 5 of the algorithm: the alpha on 0, delta, ..., alpha_max with the largest
    L(theta0 + rho_max d(alpha)), the first one on ties. Returns (alpha, alphas, losses)."""
    alphas = alpha_grid(alpha_max, alpha_delta)  # the optimizer's own grid
    params = list(params)
    w0 = vec.snapshot(params)
    try:
        losses = np.array(
            [
                loss_at(loss_fn, params, w0, [(rho_max, xsam_direction(plane, float(a)))])
                for a in alphas
            ]
        )
    finally:
        vec.assign(params, w0)
    return float(alphas[int(np.argmax(losses))]), alphas, losses  # argmax: first of ties


def plane_axes(plane: Plane, *, seed: int = 0) -> Axes:
    """Orthonormal (e0, e1) spanning (v0, v1): Gram-Schmidt of v1 against v0.

    If v1 is parallel to v0 the plane is a line; e1 is then a random direction orthogonal
    to v0 (seeded), so the figure still shows a plane through the line.
    """
    e0 = vec.scaled(plane.v0, 1.0 / vec.norm(plane.v0).item())
    u = plane.v1
    r = vec.combine(u, [(-vec.dot(u, e0).item(), e0)])
    if vec.norm(r).item() < 1e-6:
        warnings.warn("v1 is parallel to v0: the second axis is random", stacklevel=2)
        u = vec.random_like(e0, torch.Generator().manual_seed(seed), rademacher=False)
        r = vec.combine(u, [(-vec.dot(u, e0).item(), e0)])
    return e0, vec.scaled(r, 1.0 / vec.norm(r).item())


def coords(u: Sequence[Tensor], axes: Axes) -> tuple[float, float]:
    """(<u, e0>, <u, e1>): the projection of u onto the plane."""
    return vec.dot(u, axes[0]).item(), vec.dot(u, axes[1]).item()


def loss_grid(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    axes: Axes,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    w0: Sequence[Tensor] | None = None,
) -> np.ndarray:
    """``Z[j, i] = L(w0 + xs[i] e0 + ys[j] e1)``; w0 defaults to the current weights."""
    params = list(params)
    current = vec.snapshot(params)
    w0 = current if w0 is None else list(w0)
    try:
        z = np.array(
            [[loss_at(loss_fn, params, w0, [(x, axes[0]), (y, axes[1])]) for x in xs] for y in ys]
        )
    finally:
        vec.assign(params, current)
    return z


def circle_sweep(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    axes: Axes,
    *,
    radius: float,
    angles: np.ndarray,
) -> np.ndarray:
    """L(w0 + radius (cos phi e0 + sin phi e1)) for each phi, w0 the current weights."""
    xs, ys = radius * np.cos(angles), radius * np.sin(angles)
    params = list(params)
    w0 = vec.snapshot(params)
    try:
        return np.array(
            [
                loss_at(loss_fn, params, w0, [(x, axes[0]), (y, axes[1])])
                for x, y in zip(xs, ys, strict=True)
            ]
        )
    finally:
        vec.assign(params, w0)


def candidate_directions(plane: Plane, alpha: float) -> dict[str, list[Tensor]]:
    """The unit directions the XSAM family can take (see the module docstring)."""
    return {"g_0": plane.g_0, "v0": plane.v0, "g_k": plane.v1, "xsam": xsam_direction(plane, alpha)}


def angle_between(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    """The angle between two vectors, radians in [0, pi]."""
    cos = vec.dot(a, b).item() / (vec.norm(a).item() * vec.norm(b).item())
    return math.acos(min(1.0, max(-1.0, cos)))


@dataclass(frozen=True)
class CircleMax:
    """The numerical maximum of the loss on the circle of radius rho_max in the plane."""

    angles: np.ndarray  # phi, radians in [0, 2 pi), measured from e0 = v0 towards v1
    losses: np.ndarray  # L(w0 + rho_max (cos phi e0 + sin phi e1))
    phi: float  # argmax, in (-pi, pi]
    loss: float
    alpha_star: float  # phi / t: the alpha whose d(alpha) points at the maximum
    coords: dict[str, tuple[float, float]]  # each candidate's unit direction, projected
    candidate_loss: dict[str, float]  # L(w0 + rho_max u) for each candidate u
    angle_to_max: dict[str, float]  # radians between the maximum and each candidate


def circle_max(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    plane: Plane,
    axes: Axes,
    *,
    alpha: float,
    rho_max: float,
    n_angles: int = 720,
) -> CircleMax:
    """Dense sweep of the circle (plus the candidates' own angles, so that a candidate on the
    plane can never beat the maximum by falling between two sweep angles)."""
    cands = candidate_directions(plane, alpha)
    proj = {name: coords(u, axes) for name, u in cands.items()}
    own = [math.atan2(y, x) % (2 * math.pi) for x, y in proj.values()]
    dense = np.linspace(0.0, 2 * math.pi, n_angles, endpoint=False)
    angles = np.unique(np.concatenate([dense, own]))
    losses = circle_sweep(loss_fn, params, axes, radius=rho_max, angles=angles)
    j = int(np.argmax(losses))
    phi = math.remainder(float(angles[j]), 2 * math.pi)
    u_max = vec.combine(vec.scaled(axes[0], math.cos(phi)), [(math.sin(phi), axes[1])])
    params = list(params)
    w0 = vec.snapshot(params)
    try:
        cand_loss = {n: loss_at(loss_fn, params, w0, [(rho_max, u)]) for n, u in cands.items()}
    finally:
        vec.assign(params, w0)
    return CircleMax(
        angles=angles,
        losses=losses,
        phi=phi,
        loss=float(losses[j]),
        alpha_star=phi / plane.t if plane.t > 0 else float("nan"),
        coords=proj,
        candidate_loss=cand_loss,
        angle_to_max={n: angle_between(u_max, u) for n, u in cands.items()},
    )


@dataclass(frozen=True)
class Landscape:
    """Plain data for one landscape figure (all coordinates in the (e0, e1) plane)."""

    xs: np.ndarray
    ys: np.ndarray
    loss: np.ndarray  # loss[j, i] = L(w0 + xs[i] e0 + ys[j] e1)
    circle: CircleMax
    points: dict[str, tuple[float, float]]  # w0, theta_k, and each direction at rho_max
    loss_0: float
    t: float
    alpha: float
    rho: float
    rho_max: float
    steps: int


def landscape(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    plane: Plane,
    *,
    alpha: float,
    rho_max: float,
    xs: np.ndarray,
    ys: np.ndarray,
    n_angles: int = 720,
) -> Landscape:
    """The loss on the grid ``xs x ys`` of the plane around the current weights, with the
    candidate directions and the circle maximum. Costs len(xs) * len(ys) + n_angles + 4
    forward passes."""
    axes = plane_axes(plane)
    circ = circle_max(loss_fn, params, plane, axes, alpha=alpha, rho_max=rho_max, n_angles=n_angles)
    points = {"w0": (0.0, 0.0), "theta_k": (plane.ascent_norm, 0.0)}
    points |= {n: (rho_max * x, rho_max * y) for n, (x, y) in circ.coords.items()}
    points["max"] = (rho_max * math.cos(circ.phi), rho_max * math.sin(circ.phi))
    return Landscape(
        xs=np.asarray(xs, dtype=float),
        ys=np.asarray(ys, dtype=float),
        loss=loss_grid(loss_fn, params, axes, xs, ys),
        circle=circ,
        points=points,
        loss_0=plane.loss_0,
        t=plane.t,
        alpha=alpha,
        rho=plane.rho,
        rho_max=rho_max,
        steps=plane.steps,
    )


def direction_diagnostics(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    rho: float,
    steps: int,
    rho_max: float,
    alpha: float,
    adaptive: bool = False,
    eta: float = 0.01,
    unscaled: Collection[Tensor] = (),
    n_angles: int = 360,
    eps: float = 1e-12,
) -> dict[str, float]:
    """Per-step record for ``diagnostics.jsonl`` / W&B: how far each candidate direction is
    from the true maximum on the circle. Costs steps + 1 gradients and n_angles + 4 forward
    passes; call it every N steps, on the batch about to be trained on."""
    ascent = dict(adaptive=adaptive, eta=eta, unscaled=unscaled)
    plane = xsam_plane(loss_fn, params, rho=rho, steps=steps, eps=eps, **ascent)
    circ = circle_max(
        loss_fn, params, plane, plane_axes(plane), alpha=alpha, rho_max=rho_max, n_angles=n_angles
    )
    record = {
        "diag/t": plane.t,
        "diag/alpha": alpha,
        "diag/alpha_star": circ.alpha_star,
        "diag/circle_max_loss": circ.loss,
        "diag/loss_0": plane.loss_0,
    }
    record |= {f"diag/angle/{n}": a for n, a in circ.angle_to_max.items()}
    record |= {f"diag/loss/{n}": v for n, v in circ.candidate_loss.items()}
    return record
