"""A multilayer perceptron over flattened images: torchvision's ``ops.MLP`` with BatchNorm.

Cheap on a CPU (a few matrix products per step) and with far more parameters than the data
needs, so it overfits a 10,000-image Fashion-MNIST subset within a few epochs: the regime
where sharpness-aware training has something to regularize.
"""

from torch import nn
from torchvision.ops import MLP


def mlp(*, num_classes: int, in_channels: int, image_size: int, hidden: list[int]) -> nn.Sequential:
    """Flatten -> (Linear -> BatchNorm1d -> ReLU) per hidden width -> Linear."""
    return nn.Sequential(
        nn.Flatten(),
        MLP(
            in_channels * image_size * image_size,
            [*hidden, num_classes],
            norm_layer=nn.BatchNorm1d,
            activation_layer=nn.ReLU,
        ),
    )
