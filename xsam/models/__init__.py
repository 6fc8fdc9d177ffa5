"""Networks: thin over torchvision and timm; our own code only where no library has one.

Each factory takes ``num_classes`` (and ``in_channels``, ``image_size`` where the network
depends on them) as keyword arguments; the configs in ``configs/model/`` pick one by
``_target_``.
"""

from xsam.models.densenet import cifar_densenet
from xsam.models.mlp import mlp
from xsam.models.param_groups import weight_decay_groups
from xsam.models.pyramidnet import PyramidNet
from xsam.models.resnet import cifar_resnet, imagenet_resnet
from xsam.models.small_cnn import SmallCNN
from xsam.models.vgg import cifar_vgg_bn
from xsam.models.vit import vit_cifar, vit_s16
from xsam.models.wide_resnet import WideResNet

__all__ = [
    "PyramidNet",
    "SmallCNN",
    "WideResNet",
    "cifar_densenet",
    "cifar_resnet",
    "cifar_vgg_bn",
    "imagenet_resnet",
    "mlp",
    "vit_cifar",
    "vit_s16",
    "weight_decay_groups",
]
