"""Stateless list-of-tensor kernels for the SAM family, one per phase of a step.

Norms and dot products are global: over all tensors of the list, as one long vector.
Every result stays on the device as a 0-d tensor, so nothing here waits for the device.

The step is bound by memory traffic, so each phase is written for its device. On CUDA,
``torch._foreach_*`` ops launch one kernel per chunk of many tensors. On a CPU they are loops
over per-tensor ops anyway, so there a phase runs all of its operations on one tensor before
the next (the tensor is still in cache for the second operation), reads with BLAS dot
products (faster than ``torch.linalg.vector_norm``) and scales-and-adds with one-pass
``addcmul_``.
"""

import torch
from torch import Tensor

_BLAS_DTYPES = (torch.float32, torch.float64)
CL = torch.channels_last


def _on_cpu(tensors: list[Tensor]) -> bool:
    return tensors[0].device.type == "cpu"


def _on_cpu_blas(tensors: list[Tensor]) -> bool:
    return _on_cpu(tensors) and all(t.dtype in _BLAS_DTYPES for t in tensors)


def flat_views(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """a and b as 1-d tensors in the same element order; views (no copy) when both are
    contiguous or both channels_last (the layout of a channels_last model's conv weights,
    their gradients and their w0 copies)."""
    if not a.is_contiguous() and a.dim() == 4 and a.is_contiguous(memory_format=CL):
        a, b = a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)  # NHWC order: contiguous
    return a.reshape(-1), b.reshape(-1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(*flat_views(a, b))


def global_norm(tensors: list[Tensor]) -> Tensor:
    """||concat(tensors)||_2."""
    if _on_cpu_blas(tensors):
        return global_dot(tensors, tensors).sqrt()
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def global_dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """<concat(a), concat(b)>, without materialising a product buffer."""
    return torch.stack([_dot(x, y) for x, y in zip(a, b, strict=True)]).sum()


def add_scaled_(dst: list[Tensor], src: list[Tensor], scale: Tensor) -> None:
    """dst += scale * src, for a 0-d ``scale``; ``src`` may be overwritten (it is scratch)."""
    if _on_cpu(dst):
        for d, s in zip(dst, src, strict=True):
            d.addcmul_(s, scale)  # one pass: read d and s, write d
    else:
        torch._foreach_mul_(src, scale)
        torch._foreach_add_(dst, src)


def backup_and_ascend_(
    params: list[Tensor], w0: list[Tensor], g: list[Tensor], scale: Tensor
) -> None:
    """w0 <- params, then params += scale * g (``g`` may be overwritten)."""
    if _on_cpu(params):
        for p, w, gi in zip(params, w0, g, strict=True):
            w.copy_(p)
            p.addcmul_(gi, scale)
    else:
        torch._foreach_copy_(w0, params)
        add_scaled_(params, g, scale)


def subtract_and_measure_(
    params: list[Tensor], w0: list[Tensor], g: list[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """params -= w0, so they hold delta = theta - w0; returns ||delta||, ||g||, <delta, g>."""
    if not _on_cpu_blas(params):
        torch._foreach_sub_(params, w0)
        return global_norm(params), global_norm(g), global_dot(params, g)
    dd, gg, dg = [], [], []
    for p, w, gi in zip(params, w0, g, strict=True):
        d, gi = flat_views(p.sub_(w), gi)
        dd.append(torch.dot(d, d))
        dg.append(torch.dot(d, gi))
        gg.append(torch.dot(gi, gi))
    return torch.stack(dd).sum().sqrt(), torch.stack(gg).sum().sqrt(), torch.stack(dg).sum()


def combine_and_restore_(
    g: list[Tensor], a: Tensor, params: list[Tensor], b: Tensor, w0: list[Tensor]
) -> None:
    """g <- a * g + b * params (which hold delta), then params <- w0 (a copy: exact)."""
    if _on_cpu(params):
        for gi, p, w in zip(g, params, w0, strict=True):
            gi.mul_(a).addcmul_(p, b)
            p.copy_(w)
    else:
        torch._foreach_mul_(g, a)
        add_scaled_(g, params, b)
        torch._foreach_copy_(params, w0)


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
    if scratch is None:  # CPU: one copy and two one-pass addcmul_, tensor by tensor
        for o, c, xi, yi in zip(out, base, x, y, strict=True):
            o.copy_(c).addcmul_(xi, a).addcmul_(yi, b)
        return
    torch._foreach_copy_(out, x)
    torch._foreach_mul_(out, a)
    torch._foreach_copy_(scratch, y)
    torch._foreach_mul_(scratch, b)
    torch._foreach_add_(out, scratch)
    torch._foreach_add_(out, base)


def scratch_for(tensors: list[Tensor]) -> list[Tensor] | None:
    """The scratch ``combine_`` needs for lists like ``tensors``: none on the CPU."""
    return None if _on_cpu(tensors) else [torch.empty_like(t) for t in tensors]


def all_finite(*scalars: Tensor) -> Tensor:
    """A 0-d bool tensor: every scalar is finite (NaN and inf give False)."""
    return torch.isfinite(torch.stack(scalars)).all()
