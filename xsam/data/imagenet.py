"""ImageNet-1k from the standard ImageFolder layout, with timm's transform factory.

Layout::

    <root>/train/<wnid>/*.JPEG     (1000 class folders)
    <root>/val/<wnid>/*.JPEG       (the same 1000 class folders)

Defaults are the standard ResNet recipe: RandomResizedCrop(224) + flip for training, resize
to 224 / crop_pct then center-crop 224 for evaluation. The ViT recipe adds RandAugment
(``auto_augment="rand-m9-mstd0.5-inc1"``), random erasing (``re_prob``) and bicubic
interpolation here, and mixup/cutmix with label smoothing on batches (``timm.data.Mixup``;
see ``configs/dataset/imagenet.yaml``).
"""

import os

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

from xsam.data.folders import image_folder
from xsam.data.roots import dataset_root
from xsam.data.splits import DataSplits

_HINT = "extract ILSVRC2012 train and val into class folders (val sorted by its labels)"


def imagenet_splits(
    *,
    root: str | os.PathLike | None = None,
    num_classes: int = 1000,
    image_size: int = 224,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
    interpolation: str = "bilinear",
    crop_pct: float = 0.875,
) -> DataSplits:
    """ImageNet's train/ and val/ ImageFolders; ``root`` defaults to $XSAM_DATA_ROOT/imagenet."""
    root = dataset_root(root, "imagenet")
    stats = {"mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
    # color_jitter=None: timm's default jitter is not part of the ResNet or ViT recipe
    train_transform = create_transform(
        image_size, is_training=True, auto_augment=auto_augment, re_prob=re_prob,
        interpolation=interpolation, color_jitter=None, **stats,
    )
    test_transform = create_transform(
        image_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct, **stats
    )
    what = f"ImageNet-{num_classes}"
    train = image_folder(
        root / "train", transform=train_transform, classes=num_classes,
        what=f"{what} train/", hint=_HINT,
    )
    test = image_folder(
        root / "val", transform=test_transform, classes=train.classes,
        what=f"{what} val/", hint=_HINT,
    )
    return DataSplits(train=train, test=test, num_classes=num_classes)
