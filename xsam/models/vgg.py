"""VGG with BatchNorm for 32x32 inputs (Simonyan & Zisserman, arXiv:1409.1556).

torchvision's VGG feature layers, followed by one linear layer on the 512 channels, as in the
common CIFAR version (kuangliu/pytorch-cifar); torchvision's own head expects 224x224 inputs
and has about 124M parameters. VGG-11-BN with 10 classes has 9,231,114 parameters.
"""

from torch import nn
from torchvision.models.vgg import cfgs, make_layers

# torchvision names its VGG layouts by the paper's column: A = VGG-11, B = 13, D = 16, E = 19
_COLUMN = {11: "A", 13: "B", 16: "D", 19: "E"}


def cifar_vgg_bn(*, depth: int = 11, num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """VGG-``depth``-BN features, global average pool (a no-op at 32x32), linear head."""
    features = make_layers(cfgs[_COLUMN[depth]], batch_norm=True)
    if in_channels != 3:
        features[0] = nn.Conv2d(in_channels, features[0].out_channels, 3, padding=1)
    model = nn.Sequential(
        features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)
    )
    for module in model.modules():  # He-initialized convolutions, as in torchvision's VGG
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model
