"""Additive PyramidNet for 32x32 inputs: Han, Kim & Kim, "Deep Pyramidal Residual Networks",
arXiv:1610.02915.

The width grows by alpha / N after each of the N = 3n residual units, from 16 to 16 + alpha
channels (rounded per unit). Basic unit: BN-conv3x3-BN-ReLU-conv3x3-BN (no ReLU after the addition);
shortcut: identity, 2x2 average pool where the unit has stride 2, extra channels zero-padded.
PyramidNet-110 (alpha 270) is the basic-unit network with n = 18 units per stage and a final
width of 286; it has 28,485,477 parameters with 10 classes. Layers and initialization follow
the authors' PyTorch code (dyhan0920/PyramidNet-PyTorch); no library ships this network.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from xsam.models.preact import he_init, preact_head


class PyramidBasicBlock(nn.Module):
    """BN-conv-BN-ReLU-conv-BN, plus a zero-padded (and, at stride 2, pooled) identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.extra_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        shortcut = F.pad(self.pool(x), (0, 0, 0, 0, 0, self.extra_channels))
        return self.residual(x) + shortcut


class PyramidNet(nn.Module):
    """Additive PyramidNet with basic units; ``depth`` must be 6n + 2."""

    def __init__(
        self, *, depth: int = 110, alpha: float = 270, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"PyramidNet (basic units) depth must be 6n + 2, got {depth}")
        units_per_stage = (depth - 2) // 6
        growth = alpha / (3 * units_per_stage)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        )
        layers, width, channels = [], 16.0, 16
        for unit in range(3 * units_per_stage):
            stride = 2 if unit in (units_per_stage, 2 * units_per_stage) else 1
            width += growth
            layers.append(PyramidBasicBlock(channels, round(width), stride))
            channels = round(width)
        self.units = nn.Sequential(*layers)
        self.head = preact_head(channels, num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.units(self.stem(x)))
