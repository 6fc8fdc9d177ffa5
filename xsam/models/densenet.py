"""DenseNet for 32x32 inputs (Huang et al., arXiv:1608.06993), from torchvision's DenseNet.

The ImageNet stem (7x7/2 convolution, BN, ReLU, max-pool) becomes a single 3x3/1 convolution,
as in the common CIFAR version (kuangliu/pytorch-cifar): each dense layer already starts
with BN-ReLU. DenseNet-121 with 10 classes has 6,956,298 parameters.
"""

from torch import nn
from torchvision.models import DenseNet, get_model


def cifar_densenet(
    *, arch: str = "densenet121", num_classes: int = 10, in_channels: int = 3
) -> DenseNet:
    """torchvision's ``arch`` (growth 32, bottleneck 4, compression 0.5) with a 3x3 stem."""
    model = get_model(arch, weights=None, num_classes=num_classes)
    stem = model.features
    stem.conv0 = nn.Conv2d(in_channels, stem.conv0.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(stem.conv0.weight)  # as torchvision
    stem.norm0, stem.relu0, stem.pool0 = nn.Identity(), nn.Identity(), nn.Identity()
    return model
