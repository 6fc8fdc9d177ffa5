"""A small CNN for the embedded 8x8 digits: three 3x3 conv-BN-ReLU layers, ~24k parameters.

Fast on a CPU, and with BatchNorm, so the BN handling of the SAM family is exercised by the
default (digits) runs.
"""

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """conv16 -> conv32 -> max-pool -> conv64 -> global average pool -> linear."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width),
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
