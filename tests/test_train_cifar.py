"""One epoch of train.py per model family, on CIFAR files written in the real on-disk format."""

import json

import pytest
from formats import accept_cifar_checksums, write_cifar
from test_train import compose_run, run_dirs

import train

FAMILIES = ["resnet18", "vgg11_bn", "densenet121", "wrn16_8", "pyramidnet110", "vit_cifar"]


@pytest.mark.slow
@pytest.mark.parametrize("model", FAMILIES)
def test_one_epoch_on_cifar_format_files(tmp_path, monkeypatch, model):
    data_root = tmp_path / "data"
    write_cifar(data_root / "cifar100", num_classes=100, n_train=16, n_test=8)
    accept_cifar_checksums(monkeypatch, data_root / "cifar100", num_classes=100)
    cfg, choices = compose_run(
        [
            f"run_root={tmp_path / 'runs'}",
            f"data_root={data_root}",
            "dataset=cifar100",
            f"model={model}",
            "optimizer=sam",
            "epochs=1",
            "batch_size=8",
            "progress=false",
            "logger.mode=disabled",
        ]
    )
    summary = train.run(cfg, choices)
    (run_dir,) = run_dirs(tmp_path / "runs")
    (record,) = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and summary["compute"]["backward_passes"] == 4
    assert 0 <= record["test/acc"] <= 100


def test_device_resident_fast_path_runs_train_py(tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    write_cifar(data_root / "cifar10", num_classes=10, n_train=32, n_test=8)
    accept_cifar_checksums(monkeypatch, data_root / "cifar10", num_classes=10)
    common = [
        f"data_root={data_root}",
        "dataset=cifar10",
        "model=resnet18",
        "epochs=1",
        "batch_size=16",
        "progress=false",
        "logger.mode=disabled",
    ]
    runs = {}
    for path in ("true", "false"):
        cfg, choices = compose_run(
            [f"run_root={tmp_path / path}", f"loader.device_resident={path}", *common]
        )
        runs[path] = train.run(cfg, choices)
    assert runs["true"]["final"]["step"] == runs["false"]["final"]["step"] == 2
    assert runs["true"]["config_hash"] != runs["false"]["config_hash"]  # different random streams
