"""ImageNet-1k from the standard ImageFolder layout, with timm's transform factory.

Layout::

    <root>/train/<wnid>/*.JPEG     (1000 class folders)
    <root>/val/<wnid>/*.JPEG       (the same 1000 class folders)

Defaults are the standard ResNet recipe: RandomResizedCrop(224) + flip for training, resize
to 224 / crop_pct then center-crop 224 for evaluation. The ViT recipe adds RandAugment
(``auto_augment="rand-m9-mstd0.5-inc1"``), random erasing (``re_prob``) and bicubic
interpolation here, and mixup/cutmix with label smoothing on batches (``timm.data.Mixup``;
see ``configs/dataset/imagenet.yaml``).

:func:`image_folder` (ImageFolder with one-line errors for missing, partial or corrupt data)
serves Tiny-ImageNet too: both are ``<split>/<class>/.../<image>``.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from xsam.data.errors import DatasetNotFound
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
        image_size,
        is_training=True,
        auto_augment=auto_augment,
        re_prob=re_prob,
        interpolation=interpolation,
        color_jitter=None,
        **stats,
    )
    test_transform = create_transform(
        image_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct, **stats
    )
    what = f"ImageNet-{num_classes}"
    train = image_folder(
        root / "train",
        transform=train_transform,
        classes=num_classes,
        what=f"{what} train/",
        hint=_HINT,
    )
    test = image_folder(
        root / "val",
        transform=test_transform,
        classes=train.classes,
        what=f"{what} val/",
        hint=_HINT,
    )
    return DataSplits(train=train, test=test, num_classes=num_classes)


def image_folder(
    root: Path,
    *,
    transform: Callable,
    classes: int | Sequence[str],
    what: str,
    hint: str | None = None,
) -> ImageFolder:
    """``ImageFolder(root)`` after checking its class folders.

    ``classes`` is the number of class folders expected, or the exact list (so a test split
    gets the train split's class indices). ``what`` names the data in error messages.
    Unreadable images are reported when they are read, with their path.
    """
    if not root.is_dir():
        raise DatasetNotFound(root, f"{what}: a folder of class sub-folders", hint=hint)
    found, _ = find_classes(str(root))
    _check_classes(root, found, classes, what, hint)
    try:
        return ImageFolder(str(root), transform=transform, loader=load_rgb)
    except FileNotFoundError as err:  # a class folder without images
        raise DatasetNotFound(
            root, f"{what}: images in every class folder ({err})", problem="partial", hint=hint
        ) from err


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB; a corrupt file raises :class:`DatasetNotFound` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # what PIL raises for broken files
        raise DatasetNotFound(path, f"a readable image ({err})", problem="corrupt") from err


def _check_classes(
    root: Path, found: list[str], classes: int | Sequence[str], what: str, hint: str | None
) -> None:
    if isinstance(classes, int):
        if len(found) != classes:
            raise DatasetNotFound(
                root,
                f"{what}: {classes} class folders, found {len(found)}",
                problem="partial",
                hint=hint,
            )
        return
    if found != list(classes):
        missing = sorted(set(classes) - set(found))[:3]
        extra = sorted(set(found) - set(classes))[:3]
        raise DatasetNotFound(
            root,
            f"{what}: the same {len(classes)} class folders as the training split "
            f"(missing e.g. {missing}, unexpected e.g. {extra})",
            problem="partial",
            hint=hint,
        )
