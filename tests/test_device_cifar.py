"""The device-resident CIFAR path against the torchvision path, on CPU.

Small CIFAR-10 pickles in the real format, loaded by ``cifar_splits`` with the settings of
configs/dataset/cifar10.yaml. The labels are
replaced by the sample index, so every output names its source image; crop offsets, flips and
Cutout squares are then recovered from each augmented output by matching it against every
candidate crop of its source, and their distributions compared with the torchvision path's.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from formats import accept_cifar_checksums, configured_splits, write_cifar, write_tinyimagenet
from omegaconf import OmegaConf
from torchvision.transforms import v2

from xsam.data.augmentation import FLIP_P, Augmentation
from xsam.data.cifar import channel_stats
from xsam.data.device_cifar import DeviceCifarLoader, device_cifar_loaders
from xsam.data.loader import SeededOrderSampler, build_loader
from xsam.data.transforms import Cutout

REPO = Path(__file__).resolve().parents[1]

N_TRAIN, N_TEST, PAD = 32, 20, 4
# chi-square critical values at p = 1e-3 for 8, 31, 80 and 1023 degrees of freedom
CHI2_DF8, CHI2_DF31, CHI2_DF80, CHI2_DF1023 = 26.12, 61.10, 124.84, 1168.50


@pytest.fixture
def splits(tmp_path, monkeypatch):
    """CIFAR-10 splits whose train labels are the sample indices."""
    write_cifar(tmp_path, num_classes=10, n_train=N_TRAIN, n_test=N_TEST)
    accept_cifar_checksums(monkeypatch, tmp_path, num_classes=10)
    splits = configured_splits("cifar10", tmp_path)
    splits.train.targets = list(range(N_TRAIN))
    return splits


def collect(loader, epochs) -> tuple[torch.Tensor, torch.Tensor]:
    batches = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        batches += list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def raw_loader(splits, split: str = "train", **kwargs) -> DeviceCifarLoader:
    """A loader on a split's arrays, with the splits' augmentation and round normalization
    constants."""
    dataset = getattr(splits, split)
    return DeviceCifarLoader(
        dataset.data,
        dataset.targets,
        mean=[0.5] * 3,
        std=[0.2] * 3,
        augmentation=splits.augmentation,
        **kwargs,
    )


def plans(loader, epochs) -> torch.Tensor:
    """The loader's parameter table (index, top, left, flip, cut, row, col) over ``epochs``."""
    tables = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        tables.append(loader.epoch_plan())
    return torch.cat(tables, 1)


# ---------------------------------------------------------------- interface and exactness


def test_batches_shapes_dtypes_and_length(splits):
    train, test = device_cifar_loaders(splits, batch_size=8, seed=0, device="cpu")
    assert (len(train), len(test)) == (N_TRAIN // 8, -(-N_TEST // 8))
    x, y = next(iter(train))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert train.images.dtype == torch.uint8 and train.images.shape == (N_TRAIN, 3, 32, 32)
    assert [len(y) for _, y in test] == [8, 8, 4]  # the test split keeps its last batch
    odd = raw_loader(splits, batch_size=10, seed=0, channels_last=True)
    assert len(odd) == 3 and [len(y) for _, y in odd] == [10, 10, 10]  # 2 dropped
    assert next(iter(odd))[0].is_contiguous(memory_format=torch.channels_last)


def test_test_split_equals_the_torchvision_test_transform_bit_for_bit(splits):
    _, test = device_cifar_loaders(splits, batch_size=7, seed=0, device="cpu")
    x, y = collect(test, [0])
    reference = torch.stack([splits.test[i][0] for i in range(N_TEST)])
    assert torch.equal(x, reference)
    assert y.tolist() == splits.test.targets


def test_order_is_the_seeded_sampler_order_of_the_torchvision_path(splits):
    train, _ = device_cifar_loaders(splits, batch_size=8, seed=3, device="cpu")
    for epoch in (0, 5):
        sampler = SeededOrderSampler(N_TRAIN, seed=3, drop_last_to=8)
        sampler.set_epoch(epoch)
        assert collect(train, [epoch])[1].tolist() == [index for index, _ in sampler]


def test_order_and_augmentation_are_a_function_of_seed_and_epoch(splits):
    def epoch_of(seed, epoch):
        return collect(
            device_cifar_loaders(splits, batch_size=8, seed=seed, device="cpu")[0], [epoch]
        )

    x, y = epoch_of(1, 2)
    assert all(torch.equal(a, b) for a, b in zip((x, y), epoch_of(1, 2), strict=True))
    assert not torch.equal(x, epoch_of(1, 3)[0]) and not torch.equal(x, epoch_of(2, 2)[0])
    assert sorted(y.tolist()) == list(range(N_TRAIN))  # every sample once per epoch


def test_resumed_epoch_yields_exactly_the_remaining_batches(splits):
    train, _ = device_cifar_loaders(splits, batch_size=8, seed=0, device="cpu")
    train.set_epoch(4)
    full = list(train)
    for k in (1, 3):
        train.set_epoch(4, start=k * 8)
        assert len(train) == len(full) - k
        rest = list(train)
        assert len(rest) == len(full) - k
        for (x, y), (x_full, y_full) in zip(rest, full[k:], strict=True):
            assert torch.equal(x, x_full) and torch.equal(y, y_full)
    with pytest.raises(ValueError, match="start"):
        train.set_epoch(4, start=N_TRAIN + 1)


def test_sharding_splits_the_permutation_and_keeps_each_position_augmentation(splits):
    replicas, batch = 3, 4
    x_all, y_all = collect(raw_loader(splits, batch_size=replicas * batch, seed=7), [1])
    seen = []  # single process: global positions 0 .. 23 (32 - 32 % 12)
    for rank in range(replicas):
        shard = raw_loader(splits, batch_size=batch, seed=7, rank=rank, num_replicas=replicas)
        assert len(shard) == 2
        x, y = collect(shard, [1])
        assert torch.equal(y, y_all[rank::replicas]) and torch.equal(x, x_all[rank::replicas])
        seen += y.tolist()
    assert len(seen) == len(set(seen)) == len(y_all)
    shares = []
    for rank in range(replicas):
        kwargs = dict(batch_size=batch, seed=7, train=False, rank=rank, num_replicas=replicas)
        shares.append(collect(raw_loader(splits, "test", **kwargs), [0])[1].tolist())
    assert [len(share) for share in shares] == [7, 7, 6]  # evaluation: every sample once
    assert sorted(sum(shares, [])) == sorted(splits.test.targets)


def pipeline_settings(transform: v2.Compose) -> dict:
    """What the torchvision pipeline's own steps say: crop padding, flip and Cutout."""
    steps = {type(t): t for t in transform.transforms}
    crop, flip, cutout = steps[v2.RandomCrop], steps.get(v2.RandomHorizontalFlip), steps.get(Cutout)
    assert len(set(crop.padding)) == 1 and crop.padding_mode == "constant" and crop.fill == 0
    return {
        "padding": crop.padding[0],
        "flip_p": flip.p if flip else 0.0,
        "cutout": (cutout.size, cutout.p) if cutout else None,
    }


def test_one_dataset_config_gives_both_paths_one_augmentation(splits, tmp_path):
    yaml = OmegaConf.load(REPO / "configs" / "dataset" / "cifar10.yaml").splits
    expected = Augmentation(
        padding=yaml.padding, flip_p=FLIP_P, cutout_size=yaml.cutout_size, cutout_p=yaml.cutout_p
    )
    assert splits.augmentation == expected
    assert pipeline_settings(splits.train.transform) == {
        "padding": yaml.padding,
        "flip_p": FLIP_P,
        "cutout": (yaml.cutout_size, yaml.cutout_p),
    }
    train, _ = device_cifar_loaders(splits, batch_size=8, seed=0, device="cpu")
    assert train.augmentation == expected
    # an override of the config's keys reaches both paths: padding 2, Cutout off
    plain = configured_splits("cifar10", tmp_path, padding=2, cutout_size=8, cutout_p=0.0)
    assert pipeline_settings(plain.train.transform) == {
        "padding": 2,
        "flip_p": FLIP_P,
        "cutout": None,
    }
    train, _ = device_cifar_loaders(plain, batch_size=32, seed=0, device="cpu")
    assert train.augmentation == Augmentation(padding=2, flip_p=FLIP_P, cutout_size=8, cutout_p=0.0)
    offsets = plans(train, range(20))[1:3]
    assert set(offsets.flatten().tolist()) == set(range(5))  # top, left ~ U{0..2 * 2}
    x, _ = collect(train, range(3))
    assert not (x == 0).all(dim=1).any()  # no Cutout


def test_a_pair_of_datasets_takes_the_augmentation_explicitly(splits):
    pair = (splits.train, splits.test)
    with pytest.raises(ValueError, match="pair needs augmentation=") as err:
        device_cifar_loaders(pair, batch_size=8, seed=0, device="cpu")
    assert "\n" not in str(err.value)
    loaders = device_cifar_loaders(
        pair, batch_size=8, seed=0, device="cpu", augmentation=splits.augmentation
    )
    reference = device_cifar_loaders(splits, batch_size=8, seed=0, device="cpu")
    for loader, expected in zip(loaders, reference, strict=True):
        x, y = collect(loader, [2])
        x_ref, y_ref = collect(expected, [2])
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    kwargs = dict(batch_size=8, seed=0, device="cpu", augmentation=splits.augmentation)
    with pytest.raises(ValueError, match="splits carry their augmentation"):
        device_cifar_loaders(splits, **kwargs)  # a second home for it: refused
    with pytest.raises(ValueError, match="training loader needs an Augmentation"):
        DeviceCifarLoader(
            splits.train.data,
            splits.train.targets,
            mean=[0.5] * 3,
            std=[0.2] * 3,
            batch_size=8,
            seed=0,
        )


def test_an_augmentation_the_device_path_cannot_reproduce_is_one_clear_error(tmp_path):
    """Tiny-ImageNet's RandomResizedCrop + RandomErasing is no crop / flip / Cutout record."""
    root = tmp_path / "tiny-imagenet-200"
    write_tinyimagenet(root, num_classes=3, n_train=2, n_val=1)
    script = REPO / "scripts" / "tinyimagenet_val_to_folders.py"
    subprocess.run([sys.executable, str(script), str(root)], capture_output=True, check=True)
    tiny = configured_splits("tinyimagenet", root, num_classes=3)
    assert tiny.augmentation is None
    with pytest.raises(ValueError, match="loader.device_resident: the device path applies") as err:
        device_cifar_loaders(tiny, batch_size=2, seed=0, device="cpu")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"padding": -1}, "dataset.splits.padding"),
        ({"padding": 1.5}, "dataset.splits.padding"),
        ({"cutout_p": 1.5}, "dataset.splits.cutout_p"),
        ({"cutout_size": 0, "cutout_p": 0.5}, "dataset.splits.cutout_size"),
    ],
)
def test_a_bad_augmentation_setting_is_one_line_naming_the_key(splits, tmp_path, overrides, key):
    with pytest.raises(ValueError, match=key) as err:
        configured_splits("cifar10", tmp_path, **overrides)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- augmentation statistics


def recover(x: torch.Tensor, source: torch.Tensor, images: np.ndarray, mean, std) -> dict:
    """Crop offsets, flip, and the Cutout square of each augmented output.

    The crop and flip are found by matching channel 0 against all (2p+1)^2 x 2 candidate
    crops of the source image outside the zeroed square; the match is then checked on every
    channel, so an output that is not exactly some crop + flip + Cutout fails the test.
    """
    pixels = (x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)) * 255
    pixels = pixels.round().short()
    erased = (x == 0).all(dim=1)  # [M, 32, 32]; a real pixel never normalizes to exactly 0
    padded = F.pad(torch.from_numpy(images).permute(0, 3, 1, 2), (PAD,) * 4).short()
    offsets = [(t, l, f) for t in range(2 * PAD + 1) for l in range(2 * PAD + 1) for f in (0, 1)]
    crops = [padded[..., t : t + 32, l : l + 32] for t, l, _ in offsets]
    candidates = torch.stack(
        [c.flip(-1) if f else c for c, (*_, f) in zip(crops, offsets, strict=True)], 1
    )
    found = torch.empty(len(x), 3, dtype=torch.long)
    for m in range(len(x)):
        same = (candidates[source[m], :, 0] == pixels[m, 0]) | erased[m]  # [162, 32, 32]
        match = same.flatten(1).all(1).nonzero().flatten()
        assert len(match) == 1, f"output {m}: {len(match)} matching crops"
        full = candidates[source[m], match[0]] == pixels[m]
        assert (full | erased[m]).all()
        found[m] = torch.tensor(offsets[match[0]])
    return {"top": found[:, 0], "left": found[:, 1], "flip": found[:, 2], **squares(erased)}


def squares(erased: torch.Tensor) -> dict:
    """Whether each output has a Cutout square, its area, and its centre (row, col)."""
    rows, cols = erased.any(dim=2), erased.any(dim=1)  # [M, 32]
    area = erased.flatten(1).sum(1)
    assert torch.equal(area, rows.sum(1) * cols.sum(1))  # the zeroed pixels form a rectangle
    cut = area > 0

    def centre(hit: torch.Tensor) -> torch.Tensor:  # first = max(c - 8, 0), end = min(c + 8, 32)
        first = hit.float().argmax(1)
        end = 32 - hit.flip(1).float().argmax(1)
        return torch.where(first > 0, first + 8, end - 8)

    return {"cut": cut, "area": area[cut], "row": centre(rows[cut]), "col": centre(cols[cut])}


def chi2_uniform(values: torch.Tensor, bins: int) -> float:
    counts = torch.bincount(values, minlength=bins).double()
    expected = len(values) / bins
    return float(((counts - expected) ** 2 / expected).sum())


def test_epoch_plan_draws_the_augmentation_distribution(splits):
    """Many cheap draws of the parameters alone; the next test shows they are what is applied."""
    train, _ = device_cifar_loaders(splits, batch_size=N_TRAIN, seed=0, device="cpu")
    index, top, left, flip, cut, row, col = plans(train, range(600))  # 19,200 draws
    assert torch.equal(torch.bincount(index), torch.full((N_TRAIN,), 600))
    assert abs(flip.float().mean() - 0.5) < 0.015 and abs(cut.float().mean() - 0.5) < 0.015
    assert abs((flip * cut).float().mean() - 0.25) < 0.015  # 4 sigma at n = 19,200
    assert chi2_uniform(top * 9 + left, 81) < CHI2_DF80  # offsets uniform and independent
    assert chi2_uniform(row * 32 + col, 1024) < CHI2_DF1023  # Cutout centre over the pixels


def test_augmentation_distribution_matches_the_torchvision_path(splits):
    epochs = range(50)  # 1,600 augmented samples per path
    tv_loader = build_loader(splits.train, batch_size=N_TRAIN, seed=11, train=True)
    fast_loader, _ = device_cifar_loaders(splits, batch_size=N_TRAIN, seed=11, device="cpu")
    mean, std = channel_stats(splits.train.data)
    draws = {}
    for name, loader in (("torchvision", tv_loader), ("device", fast_loader)):
        x, source = collect(loader, epochs)
        draws[name] = (x, recover(x, source, splits.train.data, mean, std))
    plan = plans(fast_loader, epochs)
    found = draws["device"][1]  # the device path applied exactly its drawn parameters
    for key, drawn in zip(("top", "left", "flip", "cut"), plan[1:5], strict=True):
        assert torch.equal(found[key], drawn), key
    assert torch.equal(found["row"], plan[5][found["cut"]])
    assert torch.equal(found["col"], plan[6][found["cut"]])
    n = len(epochs) * N_TRAIN
    # the expected Cutout area: the clipped side lengths for centres 0..31, squared
    side = (torch.arange(32) + 8).clamp(max=32) - (torch.arange(32) - 8).clamp(min=0)
    expected_area = float(side.double().mean() ** 2)
    for name, (_, p) in draws.items():
        assert len(p["flip"]) == n
        assert abs(p["flip"].float().mean() - 0.5) < 0.05, name  # 4 sigma at n = 1600
        assert abs(p["cut"].float().mean() - 0.5) < 0.05, name
        assert chi2_uniform(p["top"], 9) < CHI2_DF8 and chi2_uniform(p["left"], 9) < CHI2_DF8
        assert chi2_uniform(p["row"], 32) < CHI2_DF31 and chi2_uniform(p["col"], 32) < CHI2_DF31
        areas = p["area"].double()
        assert abs(areas.mean() - expected_area) < 4 * areas.std() / len(areas) ** 0.5, name
        assert p["area"].max() == 256 and p["area"].min() < 128  # whole and clipped squares
    (x_tv, _), (x_fast, _) = draws["torchvision"], draws["device"]
    # per-pixel mean: the two paths differ by less than 5 standard errors everywhere
    se = (x_tv.var(0) / n + x_fast.var(0) / n).sqrt()
    assert ((x_tv.mean(0) - x_fast.mean(0)).abs() < 5 * se).all()
    channels = (0, 2, 3)  # per-channel mean and std of the augmented batches
    torch.testing.assert_close(x_fast.mean(channels), x_tv.mean(channels), atol=0.03, rtol=0)
    torch.testing.assert_close(x_fast.std(channels), x_tv.std(channels), atol=0.03, rtol=0)
