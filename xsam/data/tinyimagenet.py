"""Tiny-ImageNet-200 (64x64 images, 200 classes) from its standard layout.

Layout (what ``tiny-imagenet-200.zip`` extracts to, after
``python scripts/tinyimagenet_val_to_folders.py <root>`` has put ``val/`` into class folders)::

    <root>/wnids.txt
    <root>/train/<wnid>/images/<wnid>_<k>.JPEG      (500 per class)
    <root>/val/<wnid>/val_<k>.JPEG                  (50 per class; the test split here)

The official test set has no labels, so ``val/`` is the test split, as in the papers.
"""

import os
from pathlib import Path

from xsam.data import transforms
from xsam.data.errors import DatasetNotFound
from xsam.data.imagenet import image_folder
from xsam.data.roots import dataset_root
from xsam.data.splits import DataSplits

# Per-channel statistics. The mean is the commonly published one of the training images; the
# std is the one the XSAM authors' code uses (the default, to follow their protocol). The
# commonly published std of the training images is MEASURED_STD (dataset.splits.std to use it).
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2541, 0.2456, 0.2604)
MEASURED_STD = (0.2770, 0.2691, 0.2821)
_SCRIPT = "scripts/tinyimagenet_val_to_folders.py"


def tinyimagenet_splits(
    *,
    root: str | os.PathLike | None = None,
    num_classes: int = 200,
    image_size: int = 32,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    erasing_p: float = 0.5,
    mean: tuple[float, float, float] = MEAN,
    std: tuple[float, float, float] = STD,
    eval_center_crop: bool = True,
) -> DataSplits:
    """Tiny-ImageNet at ``image_size`` (the authors use 32; 64 is the native size).

    Train: RandomResizedCrop(image_size, crop_scale) + flip, normalize, RandomErasing(p);
    test, as the authors: Resize(image_size * 9 / 8) + CenterCrop(image_size) (36 then 32),
    normalize; ``eval_center_crop=False``: resize straight to ``image_size``. ``root`` defaults
    to ``$XSAM_DATA_ROOT/tiny-imagenet-200``.
    """
    mean, std = tuple(mean), tuple(std)
    root = dataset_root(root, "tiny-imagenet-200")
    what = f"Tiny-ImageNet-{num_classes}"
    _require_val_folders(root)
    train = image_folder(
        root / "train",
        transform=transforms.tinyimagenet_train(
            image_size, mean, std, scale=tuple(crop_scale), erasing_p=erasing_p
        ),
        classes=num_classes,
        what=f"{what} train/",
        hint="download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it there",
    )
    test = image_folder(
        root / "val",
        transform=transforms.evaluation(
            mean, std, image_size=image_size, center_crop=eval_center_crop
        ),
        classes=train.classes,
        what=f"{what} val/",
    )
    return DataSplits(train=train, test=test, num_classes=num_classes)


def _require_val_folders(root: Path) -> None:
    """The zip ships ``val/images/`` flat; the builder needs it in class folders."""
    if (root / "val" / "images").is_dir():
        raise DatasetNotFound(
            root / "val",
            "validation images in class folders (val/<wnid>/), found the flat val/images/",
            problem="not reorganized",
            hint=f"run: python {_SCRIPT} {root}",
        )
