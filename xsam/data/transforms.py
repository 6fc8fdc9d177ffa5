"""Image pipelines for the CIFAR, (Fashion-)MNIST and Tiny-ImageNet builders (transforms.v2).

Cutout: DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with
Cutout", arXiv:1708.04552. ImageNet takes timm's transform factory directly (see
:mod:`xsam.data.imagenet`).
"""

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from xsam.data.augmentation import Augmentation

Stats = Sequence[float]


class Cutout(v2.Transform):
    """Zero a ``size`` x ``size`` square with probability ``p``.

    The square's centre is uniform over the pixels and the square is clipped at the borders
    (so near an edge fewer pixels are zeroed), as in the paper. Put it after ``Normalize``:
    zero then means "the dataset mean", which is what the authors' pipeline does.
    """

    def __init__(self, size: int, *, p: float) -> None:
        super().__init__()
        if size < 1 or not 0.0 <= p <= 1.0:
            raise ValueError(f"Cutout needs size >= 1 and p in [0, 1], got {size}, {p}")
        self.size, self.p = size, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        # drawn from torch's global RNG, so DataLoader worker seeding makes it reproducible
        apply, u_row, u_col = torch.rand(3).tolist()
        return {"apply": apply < self.p, "u_row": u_row, "u_col": u_col}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        height, width = inpt.shape[-2:]
        row, col = int(params["u_row"] * height), int(params["u_col"] * width)
        top, left = max(row - self.size // 2, 0), max(col - self.size // 2, 0)
        bottom, right = min(row + self.size // 2, height), min(col + self.size // 2, width)
        zero = torch.zeros((), dtype=inpt.dtype)
        return v2.functional.erase(inpt, top, left, bottom - top, right - left, zero)


def _to_float(mean: Stats, std: Stats) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def crop_flip_cutout(
    augmentation: Augmentation, mean: Stats, std: Stats, *, size: int
) -> v2.Compose:
    """RandomCrop(size, padding) + flip, normalize, then Cutout: the SAM papers' CIFAR
    pipeline, and (Fashion-)MNIST's without Cutout; the torchvision twin of
    :mod:`xsam.data.device_cifar`, built from the same record.

    A step that never fires (``flip_p = 0``, ``cutout_p = 0``) is left out. That keeps the
    samples of :func:`xsam.data.loader.build_loader` as they were with it in: the loader seeds
    the generator per sample, and the steps draw in pipeline order, Cutout last.
    """
    a = augmentation
    flip = [v2.RandomHorizontalFlip(a.flip_p)] if a.flip_p > 0 else []
    cutout = [Cutout(a.cutout_size, p=a.cutout_p)] if a.cutout_p > 0 else []
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomCrop(size, padding=a.padding),
            *flip,
            *_to_float(mean, std),
            *cutout,
            v2.ToPureTensor(),
        ]
    )


def tinyimagenet_train(
    image_size: int,
    mean: Stats,
    std: Stats,
    *,
    scale: tuple[float, float] = (0.8, 1.0),
    erasing_p: float = 0.5,
) -> v2.Compose:
    """RandomResizedCrop(image_size, scale) + flip, normalize, then RandomErasing."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, scale=tuple(scale), antialias=True),
            v2.RandomHorizontalFlip(),
            *_to_float(mean, std),
            v2.RandomErasing(p=erasing_p),
            v2.ToPureTensor(),
        ]
    )


def evaluation(
    mean: Stats, std: Stats, *, image_size: int | None = None, center_crop: bool = False
) -> v2.Compose:
    """Normalize only (after resizing to ``image_size`` when given): no randomness.

    ``center_crop``: Resize(image_size * 9 / 8) + CenterCrop(image_size) instead, the XSAM
    authors' Tiny-ImageNet evaluation (Resize(36) + CenterCrop(32)).
    """
    resize = [v2.Resize(image_size, antialias=True)] if image_size is not None else []
    if image_size is not None and center_crop:
        resize = [v2.Resize(image_size * 9 // 8, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), *resize, *_to_float(mean, std), v2.ToPureTensor()])
