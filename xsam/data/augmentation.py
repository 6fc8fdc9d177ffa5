"""The training augmentation both CIFAR-shaped data paths apply: one record, built once.

Random crop of the image's own size from the image zero-padded by ``padding`` on every side,
horizontal flip with probability ``flip_p``, normalization, then Cutout (DeVries & Taylor,
arXiv:1708.04552): a ``cutout_size`` square zeroed with probability ``cutout_p``. The split
builders (:func:`xsam.data.cifar.cifar_splits`, :func:`xsam.data.mnist.mnist_splits`) make it
from the dataset config's keys and store it on their :class:`~xsam.data.splits.DataSplits`;
the torchvision pipeline (:func:`xsam.data.transforms.crop_flip_cutout`) and the device path
(:mod:`xsam.data.device_cifar`) both read it from there, so neither keeps settings of its own.
"""

from dataclasses import dataclass

# torchvision's RandomHorizontalFlip default and the SAM papers' flip; a property of the
# pipelines, not a config key (adding one would change every run directory's config hash)
FLIP_P = 0.5


@dataclass(frozen=True)
class Augmentation:
    """Crop padding, flip probability, Cutout square side and probability.

    A probability of 0 means the pipeline has no such step: MNIST's digits are not flipped
    (``flip_p = 0``), and only CIFAR has Cutout (MNIST: ``cutout_size = cutout_p = 0``).
    """

    padding: int
    flip_p: float
    cutout_size: int
    cutout_p: float

    def __post_init__(self) -> None:
        # the names are the dataset config's keys, where these values come from
        if not _is_int(self.padding) or self.padding < 0:
            raise ValueError(f"dataset.splits.padding must be an integer >= 0, got {self.padding}")
        if not _is_int(self.cutout_size) or self.cutout_size < 0:
            raise ValueError(
                f"dataset.splits.cutout_size must be an integer >= 0, got {self.cutout_size}"
            )
        for name, value in (("flip_p", self.flip_p), ("dataset.splits.cutout_p", self.cutout_p)):
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.cutout_size == 0 and self.cutout_p > 0:
            raise ValueError(
                f"dataset.splits.cutout_size must be >= 1 for cutout_p={self.cutout_p}, got 0"
            )


CONFIG_KEYS = ("padding", "flip", "cutout_size", "cutout_p")  # under dataset.splits


def from_config_keys(
    *, padding: int, flip: bool = True, cutout_size: int = 0, cutout_p: float = 0.0
) -> Augmentation:
    """The record from the dataset config's keys, for the builders and the config checks
    alike. A key a dataset does not have is a step it does not take, except the flip: CIFAR
    has no ``flip`` key and always flips."""
    if not isinstance(flip, bool):
        raise ValueError(f"dataset.splits.flip must be true or false, got {flip!r}")
    flip_p = FLIP_P if flip else 0.0
    return Augmentation(padding=padding, flip_p=flip_p, cutout_size=cutout_size, cutout_p=cutout_p)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
