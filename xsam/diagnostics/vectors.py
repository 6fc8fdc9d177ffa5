"""A list of parameter tensors seen as one long vector: the global dot, norm and exact copies.

Every norm and dot product in the diagnostics is global, over all parameters at once, as in
the optimizer (see the algorithm notes: "All norms and dot products are global").
"""

from collections.abc import Sequence

import torch
from torch import Tensor

Vector = Sequence[Tensor]


def dot(a: Vector, b: Vector) -> Tensor:
    """<a, b> over all tensors, accumulated in float64 so long vectors do not lose digits."""
    return torch.stack([(x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)]).sum()


def norm(a: Vector) -> Tensor:
    """||a||_2 over all tensors (float64)."""
    return torch.linalg.vector_norm(torch.stack([x.double().norm() for x in a]))


def scaled(a: Vector, c: float | Tensor) -> list[Tensor]:
    """c * a, as new tensors in a's dtypes."""
    return [x * c for x in a]


def combine(w0: Vector, terms: Sequence[tuple[float, Vector]]) -> list[Tensor]:
    """w0 + sum_j c_j * u_j, as new tensors (the point at plane coordinates (c_j))."""
    out = [w.clone() for w in w0]
    for c, u in terms:
        torch._foreach_add_(out, list(u), alpha=float(c))
    return out


@torch.no_grad()
def assign(params: Vector, values: Vector) -> None:
    """Copy values into the live parameters in place (never ``.data =``)."""
    torch._foreach_copy_(list(params), list(values))


def snapshot(params: Vector) -> list[Tensor]:
    """Detached copies: copying them back with :func:`assign` restores the weights bit-exactly."""
    return [p.detach().clone() for p in params]


def random_like(params: Vector, generator: torch.Generator, *, rademacher: bool) -> list[Tensor]:
    """Gaussian or Rademacher (+-1) vector shaped like params, drawn on the CPU generator.

    Drawing on the CPU and moving keeps the numbers identical across devices for one seed.
    """
    out = []
    for p in params:
        if rademacher:
            r = torch.randint(0, 2, p.shape, generator=generator).mul_(2).sub_(1)
        else:
            r = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        out.append(r.to(device=p.device, dtype=p.dtype))
    return out


def gradient(loss: Tensor, params: Vector) -> list[Tensor]:
    """dL/dparams as a full vector: zeros where the loss does not depend on a parameter.

    ``torch.autograd.grad`` rather than ``backward`` so that no ``.grad`` is touched.
    """
    g = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params, strict=True)]
