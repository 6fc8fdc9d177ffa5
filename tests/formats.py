"""Write small datasets in their real on-disk formats, for tests to load through real code.

Plain functions over a directory; each returns what it wrote so a test can compare.
:func:`configured_splits` loads them back with a dataset config's own settings.
"""

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100


@dataclass(frozen=True)
class Written:
    """Images (uint8, N x H x W x 3) and integer labels, per split, as written."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def write_cifar(
    root: Path, num_classes: int = 10, n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Written:
    """CIFAR-10/100 python pickles under ``root`` (cifar-10-batches-py / cifar-100-python).

    Same keys, dtypes and row layout (3072 uint8, R then G then B planes) as the real
    batches; CIFAR-10's train split is spread over five ``data_batch_*`` files.
    """
    rng = np.random.default_rng(seed)
    written = Written(
        train_images=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        train_labels=rng.integers(0, num_classes, n_train),
        test_images=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        test_labels=rng.integers(0, num_classes, n_test),
        classes=[f"class_{k:03d}" for k in range(num_classes)],
    )
    dataset_cls = CIFAR10 if num_classes == 10 else CIFAR100
    folder = Path(root) / dataset_cls.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    train_files = [name for name, _ in dataset_cls.train_list]
    chunks = np.array_split(np.arange(n_train), len(train_files))
    for name, idx in zip(train_files, chunks, strict=True):
        batch = _cifar_batch(written.train_images[idx], written.train_labels[idx], num_classes)
        _pickle(folder / name, batch)
    test_file = dataset_cls.test_list[0][0]
    _pickle(folder / test_file, _cifar_batch(written.test_images, written.test_labels, num_classes))
    _pickle(folder / dataset_cls.meta["filename"], _cifar_meta(written.classes))
    return written


def accept_cifar_checksums(
    monkeypatch: pytest.MonkeyPatch, root: Path, num_classes: int = 10
) -> None:
    """Make torchvision's md5 check accept the files :func:`write_cifar` wrote under ``root``.

    torchvision verifies every CIFAR file against the md5 of the real download; the tests
    swap in the md5s of the written files so the real loading code runs unchanged.
    """
    dataset_cls = CIFAR10 if num_classes == 10 else CIFAR100
    folder = Path(root) / dataset_cls.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    for attr in ("train_list", "test_list"):
        files = [[name, md5(name)] for name, _ in getattr(dataset_cls, attr)]
        monkeypatch.setattr(dataset_cls, attr, files)
    meta = dict(dataset_cls.meta, md5=md5(dataset_cls.meta["filename"]))
    monkeypatch.setattr(dataset_cls, "meta", meta)


def configured_splits(name: str, root: Path | None, **overrides):
    """The splits of the builder ``configs/dataset/<name>.yaml`` names, called with its
    ``splits`` keys (``root`` and ``overrides`` replaced): settings such as the augmentation
    come from the YAML, their one home. Called directly rather than through Hydra's
    ``instantiate``, which would wrap the builder's own errors."""
    config = Path(__file__).resolve().parents[1] / "configs" / "dataset" / f"{name}.yaml"
    cfg = OmegaConf.create({"dataset": OmegaConf.load(config)})
    cfg.dataset.splits.root = None if root is None else str(root)
    settings = {**OmegaConf.to_container(cfg.dataset.splits, resolve=True), **overrides}
    return get_method(settings.pop("_target_"))(**settings)


def write_tinyimagenet(
    root: Path, num_classes: int = 3, n_train: int = 4, n_val: int = 2, seed: int = 0
) -> Written:
    """The unzipped ``tiny-imagenet-200`` tree at ``root``, with 64x64 JPEGs.

    wnids.txt, words.txt, train/<wnid>/images/<wnid>_<k>.JPEG with <wnid>_boxes.txt,
    val/images/val_<k>.JPEG with val_annotations.txt, test/images/test_<k>.JPEG.
    Counts are per class. The val split is flat, as shipped.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    wnids = [f"n{1443537 + 1000 * k:08d}" for k in range(num_classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text("".join(f"{w}\tthing {k}\n" for k, w in enumerate(wnids)))
    train_images, train_labels = [], []
    for label, wnid in enumerate(wnids):
        names = [f"{wnid}_{k}.JPEG" for k in range(n_train)]
        images = _write_jpegs(root / "train" / wnid / "images", names, 64, rng)
        boxes = "".join(f"{name}\t0\t0\t63\t63\n" for name in names)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(boxes)
        train_images += images
        train_labels += [label] * n_train
    val_labels = [label for label in range(num_classes) for _ in range(n_val)]
    val_names = [f"val_{k}.JPEG" for k in range(len(val_labels))]
    val_images = _write_jpegs(root / "val" / "images", val_names, 64, rng)
    annotations = "".join(
        f"{name}\t{wnids[label]}\t0\t0\t63\t63\n"
        for name, label in zip(val_names, val_labels, strict=True)
    )
    (root / "val" / "val_annotations.txt").write_text(annotations)
    _write_jpegs(root / "test" / "images", [f"test_{k}.JPEG" for k in range(2)], 64, rng)
    return Written(
        np.stack(train_images),
        np.array(train_labels),
        np.stack(val_images),
        np.array(val_labels),
        wnids,
    )


def write_image_folder(
    root: Path, classes: list[str], n_per_class: int, size: int = 48, seed: int = 0
) -> list[tuple[Path, int]]:
    """``root/<class>/<k>.JPEG`` for each class; returns (path, label) in ImageFolder order."""
    rng = np.random.default_rng(seed)
    samples = []
    for label, name in enumerate(sorted(classes)):
        names = [f"{name}_{k:04d}.JPEG" for k in range(n_per_class)]
        _write_jpegs(Path(root) / name, names, size, rng)
        samples += [(Path(root) / name / file, label) for file in names]
    return samples


def write_imagenet(root: Path, num_classes: int = 3, n_train: int = 3, n_val: int = 2) -> list[str]:
    """ImageNet's ``train/`` and ``val/`` ImageFolders of JPEGs; returns the class names."""
    classes = [f"n{1440764 + 17 * k:08d}" for k in range(num_classes)]
    write_image_folder(Path(root) / "train", classes, n_train, seed=1)
    write_image_folder(Path(root) / "val", classes, n_val, seed=2)
    return classes


def _cifar_batch(images: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)  # R, G, B planes
    label_key = "labels" if num_classes == 10 else "fine_labels"
    batch = {
        "batch_label": "testing batch 1 of 1",
        label_key: [int(y) for y in labels],
        "data": np.ascontiguousarray(rows),
        "filenames": [f"img_{k}.png" for k in range(len(images))],
    }
    if num_classes == 100:
        batch["coarse_labels"] = [int(y) // 5 for y in labels]
    return batch


def _cifar_meta(classes: list[str]) -> dict:
    if len(classes) == 10:
        return {"num_cases_per_batch": 10000, "label_names": classes, "num_vis": 3072}
    return {"fine_label_names": classes, "coarse_label_names": [f"super_{k}" for k in range(20)]}


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the real files are Python 2 pickles


def _write_jpegs(folder: Path, names: list[str], size: int, rng: np.random.Generator) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for name in names:
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, format="JPEG", quality=95)
        images.append(pixels)
    return images


IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_idx(
    folder: Path, n_train: int = 40, n_test: int = 12, seed: int = 0, gz: bool = False
) -> Written:
    """The four (Fashion-)MNIST idx files in ``folder``: the big-endian header (magic 0x0803
    for uint8 images, 0x0801 for labels, then each dimension) followed by the raw bytes, as
    in the originals; gzipped (``.gz`` names) when ``gz``. Images come back as N x 28 x 28."""
    import gzip

    rng = np.random.default_rng(seed)
    written = Written(
        train_images=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, 10, n_train).astype(np.uint8),
        test_images=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, 10, n_test).astype(np.uint8),
        classes=[str(k) for k in range(10)],
    )
    arrays = (written.train_images, written.train_labels, written.test_images, written.test_labels)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
            d.to_bytes(4, "big") for d in array.shape
        )
        data = header + array.tobytes()
        path = folder / (name + ".gz" if gz else name)
        path.write_bytes(gzip.compress(data) if gz else data)
    return written


def idx_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of each uncompressed idx file in ``folder`` (as scripts/get_data.py computes)."""
    import gzip

    sums = {}
    for name in IDX_NAMES:
        path = folder / name if (folder / name).is_file() else folder / f"{name}.gz"
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        sums[name] = hashlib.sha256(data).hexdigest()
    return sums
