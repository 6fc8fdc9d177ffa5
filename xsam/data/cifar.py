"""CIFAR-10 and CIFAR-100 through torchvision's own classes and on-disk format.

Layout (what ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` extract to)::

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Normalization uses the per-channel mean and std of the training images, computed when the
data is loaded (CIFAR-10: mean 0.4914, 0.4822, 0.4465, std 0.2470, 0.2435, 0.2616).
"""

import os
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from xsam.data import transforms
from xsam.data.augmentation import from_config_keys
from xsam.data.errors import DatasetNotFound
from xsam.data.roots import dataset_root
from xsam.data.splits import DataSplits


def cifar_splits(
    *,
    num_classes: int = 10,
    root: str | os.PathLike | None = None,
    download: bool = False,
    padding: int,
    cutout_size: int,
    cutout_p: float,
) -> DataSplits:
    """CIFAR-10 (``num_classes=10``) or CIFAR-100 (``num_classes=100``).

    Train: RandomCrop(32, padding) + flip, normalize, Cutout; test: normalize only. The
    augmentation settings are configs/dataset/cifar10.yaml's (no defaults here: one home);
    the splits carry them as an :class:`~xsam.data.augmentation.Augmentation`.
    ``root`` defaults to ``$XSAM_DATA_ROOT/cifar<num_classes>`` (see :mod:`xsam.data.roots`).
    """
    augmentation = from_config_keys(padding=padding, cutout_size=cutout_size, cutout_p=cutout_p)
    dataset_cls = _dataset_class(num_classes)
    root = dataset_root(root, f"cifar{num_classes}")
    train = _load(dataset_cls, root, train=True, download=download)
    test = _load(dataset_cls, root, train=False, download=False)
    mean, std = channel_stats(train.data)
    # torchvision's CIFAR reads ``self.transform`` in __getitem__; set it once the stats exist
    train.transform = transforms.crop_flip_cutout(augmentation, mean, std, size=32)
    test.transform = transforms.evaluation(mean, std)
    return DataSplits(train=train, test=test, num_classes=num_classes, augmentation=augmentation)


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std, in [0, 1] units, of uint8 ``N x H x W x C`` images.

    Exact and cheap: computed from each channel's histogram of the 256 pixel values.
    """
    pixels = torch.from_numpy(images).reshape(-1, images.shape[-1])
    counts = torch.stack([torch.bincount(channel, minlength=256) for channel in pixels.T])
    counts = counts.double()
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum(dim=1)
    mean = counts @ values / total
    variance = counts @ values.square() / total - mean.square()
    return mean.tolist(), variance.clamp_min(0).sqrt().tolist()


def _dataset_class(num_classes: int) -> type[CIFAR10]:
    if num_classes not in (10, 100):
        raise ValueError(f"CIFAR has 10 or 100 classes, got num_classes={num_classes}")
    return CIFAR10 if num_classes == 10 else CIFAR100


def _load(dataset_cls: type[CIFAR10], root: Path, *, train: bool, download: bool) -> CIFAR10:
    try:
        return dataset_cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: a file is missing or fails its md5 check
        raise _describe_problem(dataset_cls, root) from err


def _describe_problem(dataset_cls: type[CIFAR10], root: Path) -> DatasetNotFound:
    """Name the first missing or corrupt file, what belongs there, and how to get it."""
    folder = root / dataset_cls.base_folder
    expected = (
        f"{dataset_cls.__name__.replace('CIFAR', 'CIFAR-')} python pickles "
        f"({', '.join(_file_names(dataset_cls))}) from {dataset_cls.filename}"
    )
    hint = (
        f"set dataset.splits.download=true, or download {dataset_cls.url} "
        f"and extract it into {root}"
    )
    for name, md5 in _files_with_md5(dataset_cls):
        path = folder / name
        if not path.is_file():
            return DatasetNotFound(path, expected, problem="missing", hint=hint)
        if not check_integrity(str(path), md5):
            return DatasetNotFound(path, expected, problem="corrupt (md5 mismatch)", hint=hint)
    return DatasetNotFound(folder, expected, problem="unreadable", hint=hint)


def _files_with_md5(dataset_cls: type[CIFAR10]) -> list[tuple[str, str]]:
    meta = dataset_cls.meta
    pairs = dataset_cls.train_list + dataset_cls.test_list + [[meta["filename"], meta["md5"]]]
    return [(name, md5) for name, md5 in pairs]


def _file_names(dataset_cls: type[CIFAR10]) -> list[str]:
    return [name for name, _ in _files_with_md5(dataset_cls)]
