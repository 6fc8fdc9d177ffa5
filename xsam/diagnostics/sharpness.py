"""Sharpness of a trained model: lambda_max, tr(H), and the worst-case loss increase.

The worst-case increase within radius rho (the quantity SAM minimizes, Foret et al.,
arXiv:2010.01412) is estimated by projected, normalized gradient ascent:

    delta_0 = 0
    delta_{i+1} = Proj_{||delta|| <= rho}(delta_i + eta * g(w0 + delta_i) / ||g(w0 + delta_i)||)
    increase = max_i L(w0 + delta_i) - L(w0)

with global L2 norms and eta = 2.5 rho / steps by default (the PGD rule of Madry et al.:
long enough to reach the sphere and then slide along it). Every iterate is feasible, so the
result is a lower bound on the true maximum over the ball.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xsam.diagnostics import vectors as vec
from xsam.diagnostics.batches import Batch, BNMode, batch_loss
from xsam.diagnostics.hessian import LossFn, hessian_trace, top_eigenvalue


@dataclass(frozen=True)
class WorstCase:
    increase: float  # max over the iterates of L(w0 + delta) - L(w0), >= 0
    delta_norm: float  # ||delta|| of the final iterate (rho once the ascent hits the sphere)
    loss_0: float
    loss_max: float


def worst_case_increase(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    rho: float,
    steps: int = 20,
    step_size: float | None = None,
    eps: float = 1e-12,
) -> WorstCase:
    """Multi-step ascent within the rho-ball; the weights are copied back bit-exactly."""
    params = list(params)
    eta = 2.5 * rho / steps if step_size is None else step_size
    w0 = vec.snapshot(params)
    delta = [torch.zeros_like(w) for w in w0]
    losses = []
    try:
        for _ in range(steps):
            loss = loss_fn()
            losses.append(loss.item())
            g = vec.gradient(loss, params)
            torch._foreach_add_(delta, g, alpha=eta / (vec.norm(g).item() + eps))
            d_norm = vec.norm(delta).item()
            if d_norm > rho:  # project back onto the ball
                torch._foreach_mul_(delta, rho / d_norm)
            vec.assign(params, vec.combine(w0, [(1.0, delta)]))
        with torch.no_grad():
            losses.append(loss_fn().item())
    finally:
        vec.assign(params, w0)
    return WorstCase(
        increase=max(losses) - losses[0],
        delta_norm=vec.norm(delta).item(),
        loss_0=losses[0],
        loss_max=max(losses),
    )


def evaluate_sharpness(
    model: nn.Module,
    batches: Sequence[Batch],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    rho: float = 0.05,
    ascent_steps: int = 20,
    eig_iters: int = 100,
    eig_tol: float = 1e-3,
    trace_samples: int = 100,
    seed: int = 0,
    bn: BNMode = "eval",
) -> dict[str, float | int | bool | str]:
    """lambda_max, tr(H) and the worst-case increase at radius rho, over ``batches``.

    ``loss_fn`` is the criterion (``loss_fn(logits, y)``, mean-reduced). The model's weights,
    buffers, ``.grad`` and train/eval flags are left as they were. Keys are namespaced
    ``sharpness/...`` so the dict can go to W&B and ``sharpness.json`` as is.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    closure = batch_loss(model, loss_fn, batches, bn=bn)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        loss = closure().item()
    eig = top_eigenvalue(closure, params, iters=eig_iters, tol=eig_tol, generator=gen)
    t1 = time.perf_counter()
    tr = hessian_trace(closure, params, samples=trace_samples, generator=gen)
    t2 = time.perf_counter()
    worst = worst_case_increase(closure, params, rho=rho, steps=ascent_steps)
    t3 = time.perf_counter()
    return {
        "sharpness/loss": loss,
        "sharpness/top_eigenvalue": eig.eigenvalue,
        "sharpness/eig_iters": eig.iters,
        "sharpness/eig_converged": eig.converged,
        "sharpness/trace": tr.trace,
        "sharpness/trace_stderr": tr.stderr,
        "sharpness/trace_samples": tr.samples,
        "sharpness/worst_case_increase": worst.increase,
        "sharpness/delta_norm": worst.delta_norm,
        "sharpness/rho": rho,
        "sharpness/ascent_steps": ascent_steps,
        "sharpness/examples": sum(len(y) for _, y in batches),
        "sharpness/bn": bn,
        "time/eigenvalue_s": t1 - t0,
        "time/trace_s": t2 - t1,
        "time/worst_case_s": t3 - t2,
    }
