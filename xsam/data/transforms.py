"""Image pipelines for the CIFAR, (Fashion-)MNIST and Tiny-ImageNet builders (transforms.v2).

Cutout: DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with
Cutout", arXiv:1708.04552. ImageNet takes timm's transform factory directly (see
:mod:`xsam.data.imagenet`).
"""

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

Stats = Sequence[float]


class Cutout(v2.Transform):
    """Zero a ``size`` x ``size`` square with probability ``p``.

    The square's centre is uniform over the pixels and the square is clipped at the borders
    (so near an edge fewer pixels are zeroed), as in the paper. Put it after ``Normalize``:
    zero then means "the dataset mean", which is what the authors' pipeline does.
    """

    def __init__(self, size: int = 16, p: float = 0.5) -> None:
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


def cifar_train(
    mean: Stats, std: Stats, *, padding: int = 4, cutout_size: int = 16, cutout_p: float = 0.5
) -> v2.Compose:
    """RandomCrop(32, padding) + flip, normalize, then Cutout (the SAM papers' pipeline)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomCrop(32, padding=padding),
            v2.RandomHorizontalFlip(),
            *_to_float(mean, std),
            Cutout(cutout_size, p=cutout_p),
            v2.ToPureTensor(),
        ]
    )


def grey_train(mean: Stats, std: Stats, *, padding: int, flip: bool) -> v2.Compose:
    """RandomCrop(28, padding) (+ horizontal flip), normalize: (Fashion-)MNIST training."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomCrop(28, padding=padding),
            *([v2.RandomHorizontalFlip()] if flip else []),
            *_to_float(mean, std),
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
