"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (1,797 images).

It ships inside scikit-learn, so a fresh offline machine can run the whole suite. The
train/test split is fixed (stratified, seeded) so that results are comparable across runs.
``label_noise`` replaces that fraction of the *training* labels by a uniformly drawn other
class (fixed by ``split_seed``; the test labels stay clean): the setting in which SAM's
robustness is a known effect (Foret et al. 2021, section 3.3), used by the demo.
"""

import numpy as np
import torch
from torch.utils.data import TensorDataset

from xsam.data.splits import DataSplits

# pixel values are integers 0..16; these are the train split's statistics
_PIXEL_MAX = 16.0


def digits_splits(
    *, test_fraction: float = 0.2, split_seed: int = 0, label_noise: float = 0.0
) -> DataSplits:
    """Stratified split of the digits into train and test, as 1x8x8 float images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"dataset.splits.test_fraction must be in (0, 1), got {test_fraction}")
    digits = load_digits()
    images = digits.images.astype(np.float32) / _PIXEL_MAX
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=test_fraction,
        random_state=split_seed,
        stratify=digits.target,
    )
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"dataset.splits.label_noise must be in [0, 1), got {label_noise}")
    y_train = noisy_labels(y_train, label_noise, num_classes=10, seed=split_seed)
    mean, std = x_train.mean(), x_train.std()
    return DataSplits(
        train=_as_tensor_dataset(x_train, y_train, mean, std),
        test=_as_tensor_dataset(x_test, y_test, mean, std),
        num_classes=10,
    )


def noisy_labels(labels: np.ndarray, fraction: float, *, num_classes: int, seed: int) -> np.ndarray:
    """A copy of ``labels`` with round(fraction * N) of them, chosen at random, moved to a
    uniformly drawn *different* class."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    flipped = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, len(flipped))) % num_classes
    return noisy


def _as_tensor_dataset(x: np.ndarray, y: np.ndarray, mean: float, std: float) -> TensorDataset:
    images = torch.from_numpy((x - mean) / std).unsqueeze(1)  # N x 1 x 8 x 8
    return TensorDataset(images, torch.from_numpy(y).long())
