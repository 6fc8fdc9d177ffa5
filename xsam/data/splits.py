"""The one thing every dataset builder returns."""

from dataclasses import dataclass

from torch.utils.data import Dataset

from xsam.data.augmentation import Augmentation


@dataclass(frozen=True)
class DataSplits:
    """A train and a test split; samples are ``(image_tensor, int_label)``.

    ``augmentation``: the crop / flip / Cutout record the train split's transform was built
    from (CIFAR, (Fashion-)MNIST), which the device path applies in its place; ``None`` where
    the training augmentation is another kind (Tiny-ImageNet, ImageNet) or there is none
    (digits), so the device path does not apply.
    """

    train: Dataset
    test: Dataset
    num_classes: int
    augmentation: Augmentation | None = None
