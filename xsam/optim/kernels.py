"""Stateless list-of-tensor kernels for the SAM family.

Norms and dot products are global: over all tensors of the list, as one long vector.
Every result stays on the device as a 0-d tensor, so nothing here waits for the device.

On CUDA, ``torch._foreach_*`` ops launch one kernel per chunk of many tensors. On CPU they
are loops over per-tensor ops, so there the cheapest per-tensor op is chosen instead: a
BLAS dot product reads its input faster than ``torch.linalg.vector_norm``, and one
``addcmul_`` does what a ``mul_`` and an ``add_`` would do in two passes over memory.
"""

import torch
from torch import Tensor

_BLAS_DTYPES = (torch.float32, torch.float64)


def _on_cpu_blas(tensors: list[Tensor]) -> bool:
    return tensors[0].device.type == "cpu" and all(t.dtype in _BLAS_DTYPES for t in tensors)


def global_norm(tensors: list[Tensor]) -> Tensor:
    """||concat(tensors)||_2."""
    if _on_cpu_blas(tensors):
        return global_dot(tensors, tensors).sqrt()
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def global_dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """<concat(a), concat(b)>, without materialising a product buffer."""
    dots = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b, strict=True)]
    return torch.stack(dots).sum()


def add_scaled_(dst: list[Tensor], src: list[Tensor], scale: Tensor) -> None:
    """dst += scale * src, for a 0-d ``scale``; ``src`` may be overwritten (it is scratch)."""
    if dst[0].device.type == "cpu":
        for d, s in zip(dst, src, strict=True):
            d.addcmul_(s, scale)  # one pass: read d and s, write d
    else:
        torch._foreach_mul_(src, scale)
        torch._foreach_add_(dst, src)


def combine_(
    out: list[Tensor],
    base: list[Tensor],
    x: list[Tensor],
    a: Tensor,
    y: list[Tensor],
    b: Tensor,
    scratch: list[Tensor] | None,
) -> None:
    """out = base + a * x + b * y, for 0-d ``a`` and ``b``; ``scratch`` from ``scratch_for``."""
    if scratch is None:  # CPU: one copy and two one-pass addcmul_
        torch._foreach_copy_(out, base)
        add_scaled_(out, x, a)
        add_scaled_(out, y, b)
        return
    torch._foreach_copy_(out, x)
    torch._foreach_mul_(out, a)
    torch._foreach_copy_(scratch, y)
    torch._foreach_mul_(scratch, b)
    torch._foreach_add_(out, scratch)
    torch._foreach_add_(out, base)


def scratch_for(tensors: list[Tensor]) -> list[Tensor] | None:
    """The scratch ``combine_`` needs for lists like ``tensors``: none on the CPU."""
    return None if tensors[0].device.type == "cpu" else [torch.empty_like(t) for t in tensors]


def all_finite(*scalars: Tensor) -> Tensor:
    """A 0-d bool tensor: every scalar is finite (NaN and inf give False)."""
    return torch.isfinite(torch.stack(scalars)).all()
