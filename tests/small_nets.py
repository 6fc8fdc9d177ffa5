"""The small BatchNorm network and the seeded batches the optimizer tests share."""

import torch
from torch import nn


def bn_net(width: int = 8, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Linear(4, width), BatchNorm, ReLU, Linear(width, 3), initialised from seed 0."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))
    return net.to(dtype)


def batches(
    n: int, size: int = 16, dtype: torch.dtype = torch.float32
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` batches of ``size`` 4-feature inputs and 3-class labels, from seed 1."""
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(size, 4, generator=g, dtype=dtype), torch.randint(0, 3, (size,), generator=g))
        for _ in range(n)
    ]
