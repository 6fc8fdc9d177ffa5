"""The one thing every dataset builder returns."""

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataSplits:
    """A train and a test split; samples are ``(image_tensor, int_label)``."""

    train: Dataset
    test: Dataset
    num_classes: int
