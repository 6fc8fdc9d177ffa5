"""Stateless list-of-tensor kernels for the SAM family (``torch._foreach_*`` underneath).

Norms and dot products are global: over all tensors of the list, as one long vector.
Every result stays on the device as a 0-d tensor, so nothing here waits for the device.
"""

import torch
from torch import Tensor


def global_norm(tensors: list[Tensor]) -> Tensor:
    """||concat(tensors)||_2, as the norm of the per-tensor norms."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def global_dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """<concat(a), concat(b)>, without materialising a product buffer."""
    dots = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b, strict=True)]
    return torch.stack(dots).sum()


def all_finite(*scalars: Tensor) -> Tensor:
    """A 0-d bool tensor: every scalar is finite (NaN and inf give False)."""
    return torch.isfinite(torch.stack(scalars)).all()
