"""Pieces shared by the pre-activation CIFAR networks (WideResNet, PyramidNet)."""

from torch import nn


def preact_head(channels: int, num_classes: int) -> nn.Sequential:
    """The final BN and ReLU that pre-activation blocks leave out, pooling, and the classifier."""
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )


def he_init(model: nn.Module, *, zero_linear_bias: bool = False) -> None:
    """He (fan-out) initialization for convolutions and unit BN, as in the reference codes."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and zero_linear_bias:
            nn.init.zeros_(module.bias)
