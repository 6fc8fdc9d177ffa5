"""Data loaders whose order and augmentation are a pure function of (seed, epoch, position).

The sampler yields ``(index, sample_seed)`` keys; the dataset wrapper seeds torch, numpy and
Python's RNGs from ``sample_seed`` before applying the (random) transform. So a run resumed
in the middle of an epoch, with any number of workers, sees exactly the batches and the
augmentations of an uninterrupted run.
"""

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

_SEED_SPACE = 2**31 - 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that draws an epoch's order (and per-sample seeds) for a run seed."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class SeededOrderSampler(Sampler):
    """A permutation per epoch from ``(seed, epoch)``, sharded over ranks, resumable.

    Each rank takes every ``num_replicas``-th index of the shared permutation (the tail that
    does not fill a global batch is dropped when ``drop_last``), starting at ``start``.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_last_to: int = 1,
        rank: int = 0,
        num_replicas: int = 1,
    ) -> None:
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.num_replicas = rank, num_replicas
        usable = num_samples - num_samples % (drop_last_to * num_replicas)
        # without dropping (evaluation), ranks take uneven shares so every sample is seen once
        self.per_rank = (
            usable // num_replicas
            if drop_last_to > 1
            else len(range(rank, num_samples, num_replicas))
        )
        self.stop = usable if drop_last_to > 1 else num_samples
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start`` samples of this rank."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(self.num_samples, generator=g) if self.shuffle else None
        sample_seeds = torch.randint(_SEED_SPACE, (self.num_samples,), generator=g)
        positions = range(self.rank, self.stop, self.num_replicas)
        for pos in list(positions)[self.start :]:
            index = int(order[pos]) if order is not None else pos
            yield index, int(sample_seeds[pos])


class SeededDataset(Dataset):
    """Looks up ``(index, sample_seed)``: seeds every RNG a transform may use, then reads."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, sample_seed = key
        torch.default_generator.manual_seed(
            sample_seed
        )  # CPU only: torch.manual_seed is ~100x slower
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        return self.dataset[index]


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int,
    train: bool,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = True,
    rank: int = 0,
    num_replicas: int = 1,
) -> DataLoader:
    """A DataLoader over ``dataset``; training drops the last partial batch and shuffles."""
    sampler = SeededOrderSampler(
        len(dataset),
        seed=seed,
        shuffle=train,
        drop_last_to=batch_size if train else 1,
        rank=rank,
        num_replicas=num_replicas,
    )
    return DataLoader(
        SeededDataset(dataset),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
    )
