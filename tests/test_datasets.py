"""Dataset builders on small files in the real on-disk formats, loaded by the real code.

CIFAR pickles + meta through torchvision's CIFAR10/100, the Tiny-ImageNet tree through the
val re-organizing script and ImageFolder, an ImageNet ImageFolder of JPEGs through timm's
transforms. No download anywhere.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from formats import (
    accept_cifar_checksums,
    configured_splits,
    write_cifar,
    write_imagenet,
    write_tinyimagenet,
)
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from timm.data import Mixup

from xsam.data import DataSplits
from xsam.data.augmentation import FLIP_P, Augmentation
from xsam.data.errors import DatasetNotFound
from xsam.data.imagenet import imagenet_splits
from xsam.data.roots import dataset_root
from xsam.data.tinyimagenet import MEAN as TINY_MEAN
from xsam.data.tinyimagenet import STD as TINY_STD
from xsam.data.tinyimagenet import tinyimagenet_splits
from xsam.data.transforms import Cutout

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "tinyimagenet_val_to_folders.py"


def normalized(images: np.ndarray, mean, std) -> torch.Tensor:
    """N x H x W x C uint8 -> N x C x H x W, (x / 255 - mean) / std, in float64."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def stack(dataset, indices) -> tuple[torch.Tensor, list[int]]:
    samples = [dataset[i] for i in indices]
    return torch.stack([x for x, _ in samples]), [y for _, y in samples]


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ---------------------------------------------------------------- CIFAR


@pytest.fixture
def cifar10(tmp_path, monkeypatch):
    written = write_cifar(tmp_path / "cifar10", num_classes=10, n_train=50, n_test=20)
    accept_cifar_checksums(monkeypatch, tmp_path / "cifar10", num_classes=10)
    return tmp_path / "cifar10", written


def test_cifar10_test_split_is_normalized_with_train_statistics(cifar10):
    root, written = cifar10
    splits = configured_splits("cifar10", root)
    assert isinstance(splits, DataSplits) and splits.num_classes == 10
    assert (len(splits.train), len(splits.test)) == (50, 20)
    pixels = written.train_images.reshape(-1, 3) / 255.0
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    x, labels = stack(splits.test, range(20))
    assert x.dtype == torch.float32 and type(x) is torch.Tensor and x.shape == (20, 3, 32, 32)
    assert labels == written.test_labels.tolist()
    torch.testing.assert_close(
        x.double(), normalized(written.test_images, mean, std), atol=1e-5, rtol=0
    )
    train_normalized = normalized(written.train_images, mean, std)
    torch.testing.assert_close(
        train_normalized.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64)
    )
    torch.testing.assert_close(
        train_normalized.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64)
    )


def test_cifar10_augmentation_only_in_training(cifar10):
    root, written = cifar10
    splits = configured_splits("cifar10", root)
    assert torch.equal(splits.test[3][0], splits.test[3][0])
    torch.manual_seed(0)
    draws = [splits.train[3] for _ in range(200)]
    assert {y for _, y in draws} == {int(written.train_labels[3])}
    assert len({x.sum().item() for x, _ in draws}) > 150  # crops and flips differ
    # Cutout zeroes a (clipped) 16x16 square in all channels, in about half of the samples
    zeroed = [int((x == 0).all(dim=0).sum()) for x, _ in draws]
    with_cutout = [n for n in zeroed if n >= 64]
    assert 0.35 < len(with_cutout) / len(draws) < 0.65
    assert max(with_cutout) == 256 and min(with_cutout) < 256  # whole and border-clipped squares


def test_cifar100_fine_labels_and_class_names(tmp_path, monkeypatch):
    written = write_cifar(tmp_path, num_classes=100, n_train=30, n_test=10)
    accept_cifar_checksums(monkeypatch, tmp_path, num_classes=100)
    splits = configured_splits("cifar100", tmp_path)
    assert splits.num_classes == 100 and splits.train.classes == written.classes
    assert [splits.test[i][1] for i in range(10)] == written.test_labels.tolist()
    assert splits.train[0][0].shape == (3, 32, 32)


def test_cifar_missing_data_is_one_line_with_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        configured_splits("cifar10", tmp_path / "nowhere")
    assert_one_line(
        err,
        f"missing: {tmp_path / 'nowhere' / 'cifar-10-batches-py' / 'data_batch_1'}",
        "batches.meta",
        "download=true",
        "cifar-10-python.tar.gz",
    )


def test_cifar_partial_and_corrupt_data_name_the_file(cifar10):
    root, _ = cifar10
    folder = root / "cifar-10-batches-py"
    (folder / "batches.meta").unlink()
    with pytest.raises(DatasetNotFound) as err:
        configured_splits("cifar10", root)
    assert_one_line(err, f"missing: {folder / 'batches.meta'}")
    batch = folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-10])  # truncated download
    with pytest.raises(DatasetNotFound) as err:
        configured_splits("cifar10", root)
    assert_one_line(err, f"corrupt (md5 mismatch): {batch}")


def test_data_root_from_environment(tmp_path, monkeypatch):
    write_cifar(tmp_path / "shared" / "cifar10", n_train=10, n_test=5)
    accept_cifar_checksums(monkeypatch, tmp_path / "shared" / "cifar10")
    monkeypatch.setenv("XSAM_DATA_ROOT", str(tmp_path / "shared"))
    assert len(configured_splits("cifar10", None).test) == 5
    assert dataset_root("/explicit", "cifar10") == Path("/explicit")
    monkeypatch.delenv("XSAM_DATA_ROOT")
    assert dataset_root(None, "cifar10") == Path("data") / "cifar10"


def test_cutout_square_is_zero_after_normalization_and_clipped_at_borders():
    torch.manual_seed(0)
    image = torch.ones(3, 32, 32)
    shapes = set()
    for _ in range(300):
        zero = (Cutout(16, p=1.0)(image) == 0).all(dim=0)
        rows, cols = zero.any(dim=1).nonzero(), zero.any(dim=0).nonzero()
        height, width = len(rows), len(cols)
        assert int(zero.sum()) == height * width and 8 <= min(height, width) <= 16
        shapes.add((height, width))
    assert (16, 16) in shapes and (8, 8) in shapes  # centre anywhere, even in a corner
    assert torch.equal(Cutout(16, p=0.0)(image), image)


# ---------------------------------------------------------------- Tiny-ImageNet


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    return root, write_tinyimagenet(root, num_classes=3, n_train=4, n_val=2)


def reorganize(root: Path) -> str:
    """Run the real script, as a user would."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_tinyimagenet_needs_val_in_class_folders_and_script_is_idempotent(tiny):
    root, written = tiny
    with pytest.raises(DatasetNotFound) as err:
        tinyimagenet_splits(root=root, num_classes=3)
    assert_one_line(err, str(root / "val"), "tinyimagenet_val_to_folders.py")
    assert "moved 6 " in reorganize(root)
    tree = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert not (root / "val" / "images").exists()
    assert "moved 0 " in reorganize(root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == tree


@pytest.mark.parametrize("image_size", [32, 64])
def test_tinyimagenet_splits_labels_shapes_and_normalization(tiny, image_size):
    root, written = tiny
    reorganize(root)
    splits = tinyimagenet_splits(
        root=root, num_classes=3, image_size=image_size, eval_center_crop=False
    )
    assert (len(splits.train), len(splits.test), splits.num_classes) == (12, 6, 3)
    assert splits.train.classes == splits.test.classes == written.classes
    annotated = dict(
        line.split("\t")[:2]
        for line in (root / "val" / "val_annotations.txt").read_text().splitlines()
    )
    for path, label in splits.test.samples:
        assert written.classes[label] == annotated[Path(path).name]
    x, _ = stack(splits.test, range(6))
    assert x.shape == (6, 3, image_size, image_size)
    if image_size == 64:  # native size: the test transform is normalization only
        decoded = np.stack(
            [np.asarray(Image.open(p).convert("RGB")) for p, _ in splits.test.samples]
        )
        torch.testing.assert_close(
            x.double(), normalized(decoded, TINY_MEAN, TINY_STD), atol=1e-5, rtol=0
        )
    torch.manual_seed(0)
    draws = [splits.train[0][0] for _ in range(5)]
    assert draws[0].shape == (3, image_size, image_size)
    assert not all(torch.equal(draws[0], d) for d in draws[1:])  # resized crop, flip, erasing


def test_tinyimagenet_evaluates_as_the_authors_by_default(tiny):
    """Resize(36) + CenterCrop(32) and the authors' std (0.2541, 0.2456, 0.2604)."""
    root, _ = tiny
    reorganize(root)
    splits = tinyimagenet_splits(root=root, num_classes=3)
    assert TINY_STD == (0.2541, 0.2456, 0.2604)
    x, _ = stack(splits.test, range(6))
    expected = []
    for path, _ in splits.test.samples:
        image = Image.open(path).convert("RGB").resize((36, 36), Image.BILINEAR)
        expected.append(np.asarray(image)[2:34, 2:34])  # the centre 32 x 32
    # PIL's and torchvision's bilinear resizes differ by a few grey levels, not by a shift
    torch.testing.assert_close(
        x.double(), normalized(np.stack(expected), TINY_MEAN, TINY_STD), atol=0.1, rtol=0
    )


def test_tinyimagenet_partial_tree_is_one_line(tiny):
    root, written = tiny
    reorganize(root)
    missing = root / "val" / written.classes[1]
    for file in missing.iterdir():
        file.unlink()
    missing.rmdir()
    with pytest.raises(DatasetNotFound) as err:
        tinyimagenet_splits(root=root, num_classes=3)
    assert_one_line(err, f"partial: {root / 'val'}", written.classes[1])
    with pytest.raises(DatasetNotFound) as err:
        tinyimagenet_splits(root=root, num_classes=200)
    assert_one_line(err, f"partial: {root / 'train'}", "200 class folders, found 3")


# ---------------------------------------------------------------- ImageNet


@pytest.fixture
def imagenet(tmp_path):
    return tmp_path / "imagenet", write_imagenet(
        tmp_path / "imagenet", num_classes=3, n_train=3, n_val=2
    )


def test_imagenet_resnet_recipe(imagenet):
    root, classes = imagenet
    splits = imagenet_splits(root=root, num_classes=3)
    assert (len(splits.train), len(splits.test)) == (9, 6) and splits.train.classes == classes
    x, labels = stack(splits.test, range(6))
    assert x.shape == (6, 3, 224, 224) and labels == [0, 0, 1, 1, 2, 2]
    assert torch.equal(splits.test[0][0], splits.test[0][0])  # resize + center crop
    torch.manual_seed(0)
    assert not torch.equal(splits.train[0][0], splits.train[0][0])  # random resized crop, flip
    # normalized with timm's ImageNet statistics: a mid-grey image maps to about (0.5 - mean) / std
    assert x.abs().max() < (1 - 0.406) / 0.225 + 1e-4


def test_imagenet_vit_recipe_randaugment_mixup_label_smoothing(imagenet):
    root, _ = imagenet
    splits = imagenet_splits(
        root=root,
        num_classes=3,
        image_size=64,
        auto_augment="rand-m9-mstd0.5-inc1",
        re_prob=0.25,
        interpolation="bicubic",
    )
    assert "RandAugment" in repr(splits.train.transform)
    x, labels = stack(splits.train, range(4))
    assert x.shape == (4, 3, 64, 64)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=3)
    mixed, targets = mixup(x, torch.tensor(labels))
    assert mixed.shape == x.shape and targets.shape == (4, 3)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
    assert targets.min() > 0  # smoothed


def test_imagenet_corrupt_image_names_the_file(imagenet):
    root, _ = imagenet
    splits = imagenet_splits(root=root, num_classes=3)
    path = Path(splits.test.samples[1][0])
    path.write_bytes(path.read_bytes()[:200])  # a truncated JPEG
    with pytest.raises(DatasetNotFound) as err:
        splits.test[1]
    assert_one_line(err, f"corrupt: {path}", "a readable image")


def test_imagenet_missing_split_is_one_line(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        imagenet_splits(root=tmp_path / "imagenet", num_classes=3)
    assert_one_line(err, f"missing: {tmp_path / 'imagenet' / 'train'}", "class sub-folders")


# ---------------------------------------------------------------- configs


def load_dataset_config(name: str, data_root: Path):
    """``configs/dataset/<name>.yaml`` under ``dataset``, with the top-level ``data_root``."""
    dataset = OmegaConf.load(REPO / "configs" / "dataset" / f"{name}.yaml")
    return OmegaConf.create({"data_root": str(data_root), "dataset": dataset})


def test_dataset_configs_build_their_splits(tmp_path, monkeypatch):
    """Each dataset YAML instantiates its builder with the root under ``data_root``."""
    write_cifar(tmp_path / "cifar10", n_train=10, n_test=5)
    accept_cifar_checksums(monkeypatch, tmp_path / "cifar10")
    write_cifar(tmp_path / "cifar100", num_classes=100, n_train=10, n_test=5)
    accept_cifar_checksums(monkeypatch, tmp_path / "cifar100", num_classes=100)
    write_tinyimagenet(tmp_path / "tiny-imagenet-200", num_classes=3, n_train=1, n_val=1)
    reorganize(tmp_path / "tiny-imagenet-200")
    write_imagenet(tmp_path / "imagenet", num_classes=3, n_train=1, n_val=1)
    for name in ["digits", "cifar10", "cifar100", "tinyimagenet", "imagenet"]:
        cfg = load_dataset_config(name, tmp_path)
        if name in ("tinyimagenet", "imagenet"):  # a 3-class tree: dataset.num_classes=3
            cfg.dataset.num_classes = 3
        splits = instantiate(cfg.dataset.splits)
        assert splits.num_classes == cfg.dataset.num_classes, name
        x, y = splits.test[0]
        size = cfg.dataset.image_size
        assert x.shape == (cfg.dataset.in_channels, size, size) and 0 <= int(y) < splits.num_classes
        # the crop / flip / Cutout record for the device path: CIFAR's from its keys, else none
        keys = cfg.dataset.splits
        expected = (
            Augmentation(
                padding=keys.padding,
                flip_p=FLIP_P,
                cutout_size=keys.cutout_size,
                cutout_p=keys.cutout_p,
            )
            if name.startswith("cifar")
            else None
        )
        assert splits.augmentation == expected, name
