"""MNIST and Fashion-MNIST through torchvision's own classes and the original idx files.

Layout (torchvision's; ``scripts/get_data.py mnist|fashion_mnist`` puts the files there)::

    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte           (.gz accepted)
    <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte    (.gz accepted)

Train: RandomCrop(28, padding) (+ horizontal flip for Fashion-MNIST: garments are mirror
symmetric, digits are not), normalize; test: normalize only. Normalization uses the mean and
std of all 60,000 training images (MNIST 0.1307 / 0.3081, Fashion-MNIST 0.2860 / 0.3530).

Two protocol knobs, both fixed by ``split_seed`` so that every run of a table sees the same
images: ``train_subset`` trains on the first N images of a seeded permutation of the training
set (a CPU-scale protocol: fewer images, more epochs), and ``holdout`` keeps the last N images
of that permutation out of training and evaluates on them instead of the test set (for
choosing hyper-parameters without looking at the test set).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision.datasets import MNIST, FashionMNIST

from xsam.data import transforms
from xsam.data.augmentation import from_config_keys
from xsam.data.cifar import channel_stats
from xsam.data.errors import DatasetNotFound
from xsam.data.roots import dataset_root
from xsam.data.splits import DataSplits

VARIANTS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
# the four original files and their sample counts (the idx header must agree)
FILES = {
    "train-images-idx3-ubyte": 60_000,
    "train-labels-idx1-ubyte": 60_000,
    "t10k-images-idx3-ubyte": 10_000,
    "t10k-labels-idx1-ubyte": 10_000,
}


def mnist_splits(
    *,
    variant: str,
    root: str | os.PathLike | None,
    padding: int,
    flip: bool,
    train_subset: int | None,
    holdout: int,
    split_seed: int,
) -> DataSplits:
    """MNIST (``variant="mnist"``) or Fashion-MNIST (``"fashion_mnist"``) as 1x28x28 images."""
    augmentation = from_config_keys(padding=padding, flip=flip)
    dataset_cls = _dataset_class(variant)
    root = dataset_root(root, variant)
    train, evaluation_copy = (_load(dataset_cls, root, train=True) for _ in range(2))
    test = _load(dataset_cls, root, train=False)
    mean, std = channel_stats(train.data.unsqueeze(-1).numpy())
    train.transform = transforms.crop_flip_cutout(augmentation, mean, std, size=28)
    evaluation_copy.transform = test.transform = transforms.evaluation(mean, std)
    train_ids, holdout_ids = _split_indices(len(train), train_subset, holdout, split_seed)
    return DataSplits(
        train=Subset(train, train_ids) if len(train_ids) < len(train) else train,
        test=Subset(evaluation_copy, holdout_ids) if holdout else test,
        num_classes=10,
        augmentation=augmentation,
    )


def _split_indices(
    total: int, train_subset: int | None, holdout: int, split_seed: int
) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices): disjoint parts of one seeded permutation."""
    size = check_split_sizes(train_subset, holdout, total=total)
    available = total - holdout
    order = torch.randperm(total, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return sorted(order[:size]), sorted(order[available:])


def check_split_sizes(train_subset: int | None, holdout: int, *, total: int = 60_000) -> int:
    """The training-subset size, or ValueError naming the setting (no data is read)."""
    if not 0 <= holdout < total:
        raise ValueError(f"dataset.splits.holdout must be in [0, {total}), got {holdout}")
    available = total - holdout
    size = available if train_subset is None else train_subset
    if not 0 < size <= available:
        raise ValueError(
            f"dataset.splits.train_subset must be in [1, {available}] "
            f"(the training images left after holdout={holdout}), got {train_subset}"
        )
    return size


def _dataset_class(variant: str) -> type[MNIST]:
    if variant not in VARIANTS:
        raise ValueError(f"dataset.splits.variant must be one of {sorted(VARIANTS)}, got {variant}")
    return VARIANTS[variant]


def _load(dataset_cls: type[MNIST], root: Path, *, train: bool) -> MNIST:
    """torchvision's reader over ``root/<Class>/raw``; a ``.gz`` original is decompressed
    beside itself first (what torchvision's own download does)."""
    raw = root / dataset_cls.__name__ / "raw"
    split = "train" if train else "t10k"
    for name in FILES:  # torchvision checks all four before reading either split
        _ensure_plain(raw / name, dataset_cls)
    try:
        dataset = dataset_cls(str(root), train=train, download=False)
    except (RuntimeError, AssertionError, ValueError, KeyError, IndexError, OSError) as err:
        raise _describe_problem(dataset_cls, raw, split, str(err)) from err
    if len(dataset.data) != len(dataset.targets) or dataset.data.shape[1:] != (28, 28):
        raise _describe_problem(dataset_cls, raw, split, "images and labels disagree")
    return dataset


def _ensure_plain(path: Path, dataset_cls: type[MNIST]) -> None:
    packed = path.with_name(path.name + ".gz")
    if path.is_file() or not packed.is_file():
        return
    try:
        with gzip.open(packed, "rb") as src, open(f"{path}.partial", "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as err:
        Path(f"{path}.partial").unlink(missing_ok=True)
        raise DatasetNotFound(packed, _expected(dataset_cls), problem=f"corrupt ({err})") from err
    os.replace(f"{path}.partial", path)  # atomic: a crash never leaves half a file under the name


def _describe_problem(dataset_cls: type[MNIST], raw: Path, split: str, why: str):
    for name in FILES:
        if not (raw / name).is_file():
            return DatasetNotFound(raw / name, _expected(dataset_cls), hint=_hint(dataset_cls))
    return DatasetNotFound(
        raw / f"{split}-images-idx3-ubyte",
        _expected(dataset_cls),
        problem=f"unreadable ({why.splitlines()[0] if why else 'idx format'})",
        hint=_hint(dataset_cls),
    )


def _expected(dataset_cls: type[MNIST]) -> str:
    return f"the original {dataset_cls.__name__} idx files ({', '.join(FILES)}, or .gz)"


def _hint(dataset_cls: type[MNIST]) -> str:
    variant = next(k for k, v in VARIANTS.items() if v is dataset_cls)
    return f"run python scripts/get_data.py {variant}"
