"""Every model config: parameter count, forward and backward at its dataset's input size.

Models are built from ``configs/model/*.yaml`` with the dataset sizes interpolated, as
``train.py`` builds them. Parameter counts are exact; the literature values they match are in
``docs/DATA_AND_MODELS.md``.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from xsam.models import cifar_resnet, vit_cifar, weight_decay_groups

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
DIGITS = {"num_classes": 10, "image_size": 8, "in_channels": 1}
CIFAR10 = {"num_classes": 10, "image_size": 32, "in_channels": 3}
CIFAR100 = {"num_classes": 100, "image_size": 32, "in_channels": 3}
IMAGENET = {"num_classes": 1000, "image_size": 224, "in_channels": 3}
MNIST = {"num_classes": 10, "image_size": 28, "in_channels": 1}  # and Fashion-MNIST

# model config -> (dataset it is built for, exact parameter count); measured, and where the
# literature gives a count they agree: CIFAR ResNet-18 11,173,962; WRN-28-10 36.5M (paper)
PARAMS = {
    "small_cnn": (DIGITS, 24_058),
    "small_cnn28": (MNIST, 24_058),
    "mlp": (MNIST, 671_754),  # 784*512+512 + 2*512 + 512*512+512 + 2*512 + 512*10+10
    "wrn16_2": (MNIST, 691_386),  # WRN-16-2 with a 1-channel stem
    "resnet18": (CIFAR10, 11_173_962),
    "resnet50": (CIFAR10, 23_520_842),
    "vgg11_bn": (CIFAR10, 9_231_114),
    "densenet121": (CIFAR10, 6_956_298),
    "wrn28_10": (CIFAR10, 36_479_194),
    "wrn16_8": (CIFAR10, 10_961_370),
    "pyramidnet110": (CIFAR10, 28_485_477),
    "vit_cifar": (CIFAR10, 21_342_346),
    "resnet50_imagenet": (IMAGENET, 25_557_032),  # torchvision's resnet50
    "vit_s16": (IMAGENET, 22_050_664),  # timm's vit_small_patch16_224
}
PARAMS_CIFAR100 = {
    "resnet18": 11_220_132,
    "resnet50": 23_705_252,
    "vgg11_bn": 9_277_284,
    "densenet121": 7_048_548,
    "wrn28_10": 36_536_884,
    "wrn16_8": 11_007_540,
    "pyramidnet110": 28_511_307,
    "vit_cifar": 21_376_996,
}


def build(name: str, dataset: dict) -> torch.nn.Module:
    """Instantiate ``configs/model/<name>.yaml`` for a dataset's sizes, as train.py does."""
    cfg = OmegaConf.create({"dataset": dataset, "model": OmegaConf.load(CONFIGS / f"{name}.yaml")})
    return instantiate(cfg.model)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_model_config_is_covered():
    assert {path.stem for path in CONFIGS.glob("*.yaml")} == set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count(name):
    dataset, expected = PARAMS[name]
    with torch.device("meta"):  # counts without allocating or initializing the weights
        assert count(build(name, dataset)) == expected


@pytest.mark.parametrize("name", sorted(PARAMS_CIFAR100))
def test_parameter_count_follows_num_classes(name):
    with torch.device("meta"):
        assert count(build(name, CIFAR100)) == PARAMS_CIFAR100[name]


# above a few seconds each on one CPU thread: marked slow, still part of the suite
HEAVY = {"pyramidnet110", "wrn28_10", "resnet50", "resnet50_imagenet", "vit_s16"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(PARAMS)],
)
def test_forward_backward_at_input_size(name):
    dataset, _ = PARAMS[name]
    torch.manual_seed(0)
    model = build(name, dataset).train()
    size = dataset["image_size"]
    x = torch.randn(2, dataset["in_channels"], size, size)
    logits = model(x)
    assert logits.shape == (2, dataset["num_classes"])
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn"])
def test_cifar_networks_take_tinyimagenet_sizes(name):
    """Input size and classes follow the dataset: 64x64, 200 classes."""
    dataset = {"num_classes": 200, "image_size": 64, "in_channels": 3}
    model = build(name, dataset)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def test_in_channels_follow_the_dataset():
    model = cifar_resnet(arch="resnet18", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_weight_decay_groups_exclude_norms_biases_and_vit_tokens():
    model = vit_cifar(num_classes=10, depth=2)
    decay, no_decay = _split_groups(weight_decay_groups(model, weight_decay=0.05), 0.05)
    names = {p: n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay)
    assert {names[p] for p in no_decay if p.ndim > 1} == {"pos_embed", "cls_token"}
    assert {"norm.weight", "norm.bias", "head.bias"} <= {names[p] for p in no_decay}
    assert len(decay) + len(no_decay) == len(names)


def test_weight_decay_groups_on_a_cnn_and_switched_off():
    model = cifar_resnet(arch="resnet18", num_classes=10)
    decay, no_decay = _split_groups(weight_decay_groups(model, weight_decay=5e-4), 5e-4)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    expected = [p for bn in bns for p in (bn.weight, bn.bias)] + [model.fc.bias]
    assert {id(p) for p in expected} == {id(p) for p in no_decay}
    assert count(model) == sum(p.numel() for p in decay + no_decay)
    (group,) = weight_decay_groups(model, weight_decay=5e-4, exclude_norm_and_bias=False)
    assert group["weight_decay"] == 5e-4 and len(group["params"]) == len(list(model.parameters()))
    optimizer = torch.optim.SGD(weight_decay_groups(model, weight_decay=5e-4), lr=0.1)
    assert sorted(g["weight_decay"] for g in optimizer.param_groups) == [0.0, 5e-4]


def _split_groups(groups: list[dict], weight_decay: float) -> tuple[list, list]:
    decay = [p for g in groups if g["weight_decay"] == weight_decay for p in g["params"]]
    no_decay = [p for g in groups if g["weight_decay"] == 0.0 for p in g["params"]]
    return decay, no_decay
