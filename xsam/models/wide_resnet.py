"""Wide residual networks for 32x32 inputs: Zagoruyko & Komodakis, arXiv:1605.07146.

WRN-d-k: a 3x3 stem with 16 channels, then three groups of (d - 4) / 6 pre-activation basic
blocks (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3) with 16k, 32k and 64k channels, the
second and third group starting with stride 2; a 1x1 convolution on the shortcut where the
width changes; BN-ReLU, global average pool and a linear head. WRN-28-10 with 10 classes has
36,479,194 parameters (the paper's 36.5M). No library ships this CIFAR network.
"""

import torch
from torch import Tensor, nn

from xsam.models.preact import he_init, preact_head


class WideBasicBlock(nn.Module):
    """Pre-activation basic block; the shortcut sees the pre-activated input when it projects."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``; ``depth`` must be 6n + 4."""

    def __init__(
        self,
        *,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        blocks_per_group = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers, channels = [], 16
        for group, width in enumerate(widths):
            for block in range(blocks_per_group):
                stride = 2 if group > 0 and block == 0 else 1
                layers.append(WideBasicBlock(channels, width, stride, dropout))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.head = preact_head(channels, num_classes)
        he_init(self, zero_linear_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))
