"""Curvature of the loss at the current weights, from Hessian-vector products.

* Top eigenvalue by power iteration (as in PyHessian, Yao et al., arXiv:1912.07145):

      v <- H v / ||H v||,   lambda = <v, H v>

  It converges to the eigenvalue of largest magnitude; at a (near-)minimum that is the
  largest one, lambda_max.
* Trace by Hutchinson's estimator with Rademacher vectors z (entries +-1):

      tr(H) = E_z[z^T H z]

  unbiased, with variance 2 * sum_{i != j} H_ij^2 per sample (zero for a diagonal H).

H v is one double-backward pass: the gradient g = dL/dw is taken once with
``create_graph=True`` and each product is ``d<g, v>/dw`` on that graph. Memory: one graph
over all the batches in ``loss_fn`` (the batches' activations, kept alive for all products).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from xsam.diagnostics import vectors as vec

LossFn = Callable[[], Tensor]


@dataclass(frozen=True)
class Eigen:
    eigenvalue: float
    eigenvector: list[Tensor]  # unit norm, shaped like params
    iters: int  # Hessian-vector products used
    converged: bool  # relative change fell below tol before iters ran out


@dataclass(frozen=True)
class Trace:
    trace: float
    stderr: float  # standard error of the mean over the samples
    samples: int


def hvp_operator(
    loss_fn: LossFn,
    params: Sequence[Tensor],
) -> Callable[[Sequence[Tensor]], list[Tensor]]:
    """v -> H v at the current weights; the first-order graph is built once and reused."""
    params = list(params)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True, allow_unused=True)
    # a parameter the loss is linear in (or ignores) has no second-order graph: H v is 0 there
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def hvp(v: Sequence[Tensor]) -> list[Tensor]:
        out = [torch.zeros_like(p) for p in params]
        if not live:
            return out
        hv = torch.autograd.grad(
            [grads[i] for i in live],
            params,
            grad_outputs=[v[i] for i in live],
            retain_graph=True,
            allow_unused=True,
        )
        return [h.detach() if h is not None else o for h, o in zip(hv, out, strict=True)]

    return hvp


def top_eigenvalue(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    iters: int = 100,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> Eigen:
    """Power iteration on H v; stops when |lambda_i - lambda_{i-1}| <= tol * |lambda_{i-1}|.

    ``loss_fn()`` returns the scalar loss over a fixed set of batches (see
    :func:`xsam.diagnostics.batches.batch_loss`). The weights are not changed.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    hvp = hvp_operator(loss_fn, params)
    v = vec.random_like(params, generator, rademacher=False)
    v = vec.scaled(v, 1.0 / vec.norm(v).item())
    eigenvalue, converged, i = 0.0, False, 0
    for i in range(1, iters + 1):
        hv = hvp(v)
        new = vec.dot(v, hv).item()
        hv_norm = vec.norm(hv).item()
        if hv_norm == 0.0:  # H v = 0: v lies in the null space, which is all we can see
            eigenvalue, converged = 0.0, True
            break
        v = vec.scaled(hv, 1.0 / hv_norm)
        converged = i > 1 and abs(new - eigenvalue) <= tol * abs(eigenvalue)
        eigenvalue = new
        if converged:
            break
    return Eigen(eigenvalue=eigenvalue, eigenvector=v, iters=i, converged=converged)


def hessian_trace(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    *,
    samples: int = 100,
    generator: torch.Generator | None = None,
) -> Trace:
    """Hutchinson's estimate of tr(H) from ``samples`` Rademacher vectors."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    hvp = hvp_operator(loss_fn, params)
    values = []
    for _ in range(samples):
        z = vec.random_like(params, generator, rademacher=True)
        values.append(vec.dot(z, hvp(z)).item())
    est = torch.tensor(values, dtype=torch.float64)
    stderr = est.std().item() / samples**0.5 if samples > 1 else float("nan")
    return Trace(trace=est.mean().item(), stderr=stderr, samples=samples)
