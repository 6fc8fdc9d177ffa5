"""A small CNN: three 3x3 conv-BN-ReLU layers, ~24k parameters.

Fast on a CPU, and with BatchNorm, so the BN handling of the SAM family is exercised by the
default (digits) runs. ``pools=1`` (the 8x8 digits) halves the resolution once, after the
second layer; ``pools=2`` (28x28 MNIST and Fashion-MNIST) also after the first, which cuts the
cost of a step about fourfold at the same parameter count.
"""

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """conv16 [-> max-pool] -> conv32 -> max-pool -> conv64 -> global average pool -> linear."""

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, width: int = 16, pools: int = 1
    ) -> None:
        super().__init__()
        if pools not in (1, 2):
            raise ValueError(f"model.pools must be 1 or 2, got {pools}")
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width),
            *([nn.MaxPool2d(2)] if pools == 2 else []),
            _conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_bn_relu(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
