"""ResNets from torchvision: the CIFAR variant (3x3 stem, no max-pool) and the ImageNet one.

The CIFAR variant is torchvision's ResNet with its 7x7/2 stem convolution replaced by a 3x3/1
one and the max-pool removed: the common CIFAR version (kuangliu/pytorch-cifar) of He et al.,
arXiv:1512.03385. ResNet-18 with 10 classes has 11,173,962 parameters.
"""

from torch import nn
from torchvision.models import ResNet, get_model


def cifar_resnet(*, arch: str = "resnet18", num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """torchvision's ``arch`` (resnet18, resnet34, resnet50, ...) with a 3x3 stem, no max-pool."""
    model = get_model(arch, weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    # He (fan-out) initialization, as torchvision does for every convolution
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def imagenet_resnet(
    *, arch: str = "resnet50", num_classes: int = 1000, in_channels: int = 3
) -> ResNet:
    """torchvision's ``arch`` unchanged (7x7/2 stem and max-pool), randomly initialized."""
    model = get_model(arch, weights=None, num_classes=num_classes)
    if in_channels != 3:
        conv1 = model.conv1
        model.conv1 = nn.Conv2d(in_channels, conv1.out_channels, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
