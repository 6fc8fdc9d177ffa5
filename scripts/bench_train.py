"""Training-step benchmark: the SAM family on ResNet-18 / CIFAR, torchvision vs fast data path.

    python scripts/bench_train.py              # CPU, and CUDA when present: docs/BENCHMARKS.md
    python scripts/bench_train.py --device cuda --batch-size 125 --workers 8
    python scripts/bench_train.py --quick      # CPU in a few minutes

Every number comes from the real code: a synthetic CIFAR-10 (random pixels, 50,000 training
images) written in the real pickle format and loaded by ``cifar_splits``, a CIFAR ResNet-18
from ``xsam.models``, ``xsam.optim.XSAM`` in each configuration, and each step as the real
training loop takes it (``BatchClosure``, ``opt.step``). Two data paths:

* torchvision: ``xsam.data.loader.build_loader`` (a DataLoader, per-sample v2 transforms in
  ``--workers`` processes, batches copied to the device);
* fast: ``xsam.data.device_cifar.device_cifar_loaders`` (uint8 images on the device,
  augmentation in batches there).

Per device, per path, per method: ms per training step (data included) and images/s. Every
method keeps its model and optimizer (warm) for the whole run; each of ``--repeats`` rounds
times ``--steps`` steps of every method in turn on both paths, so load drift on a shared
machine reaches every cell alike. Cells are medians over rounds; ratios are medians of
per-round ratios. XSAM dynamic is the per-epoch
cost: its steps between searches are XSAM static's, plus one alpha-search step per epoch of
50,000 images (measured on the same optimizer), spread over the epoch's steps. The "data
only" row times the loader alone (batches moved to the device, no model).
"""

import argparse
import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import count, islice
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from xsam import engine
from xsam.benchmarking import cpu_name, markdown_table
from xsam.data.device_cifar import device_cifar_loaders
from xsam.data.loader import build_loader
from xsam.models import SmallCNN, cifar_resnet
from xsam.optim import XSAM, BatchClosure

REPO = Path(__file__).resolve().parents[1]
LR, MOMENTUM, WEIGHT_DECAY, RHO = 0.05, 0.9, 1e-3, 0.15  # the paper's CIFAR settings
CIFAR_TRAIN = 50_000  # images per epoch, for the per-epoch cost of the alpha search
PATHS = ("torchvision", "fast")
LOSS = nn.CrossEntropyLoss()


@dataclass(frozen=True)
class Method:
    label: str
    settings: dict = field(default_factory=dict)  # XSAM keyword arguments


METHODS = (
    Method("SGD", dict(rho=0.0, steps=0)),
    Method("SAM", dict(steps=1, alpha=1.0)),  # the angle: logged steps only
    Method("XSAM static", dict(steps=1, alpha=0.5)),
    Method("XSAM dynamic", dict(steps=1, alpha=0.5)),  # timed with XSAM static, see above
    Method("MSAM k=2", dict(steps=2, alpha=1.0)),
    Method("MSAM k=3", dict(steps=3, alpha=1.0)),
)
TIMED = [m for m in METHODS if m.label != "XSAM dynamic"]
XSAM_ROWS = ("XSAM static", "XSAM dynamic")  # the rows held to within 2% of SAM


# ---------------------------------------------------------------------------------------------
# Data: synthetic CIFAR-10 files, the two loaders, an endless stream of batches.
# ---------------------------------------------------------------------------------------------
def synthetic_cifar(root: Path, n_train: int, n_test: int):
    """CIFAR-10 pickles with random pixels under ``root``, loaded by ``cifar_splits`` with
    configs/dataset/cifar10.yaml's settings.

    The writer is the tests' (tests/formats.py); torchvision's md5 check is pointed at the
    written files for as long as the datasets load.
    """
    spec = importlib.util.spec_from_file_location("formats", REPO / "tests" / "formats.py")
    formats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(formats)
    formats.write_cifar(root, num_classes=10, n_train=n_train, n_test=n_test)
    with pytest.MonkeyPatch.context() as patch:
        formats.accept_cifar_checksums(patch, root, num_classes=10)
        return formats.configured_splits("cifar10", root)  # the YAML's augmentation


def train_loader(path: str, splits, device: torch.device, args):
    if path == "fast":
        return device_cifar_loaders(splits, batch_size=args.batch_size, seed=0, device=device)[0]
    return build_loader(
        splits.train,
        batch_size=args.batch_size,
        seed=0,
        train=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )


def endless(loader) -> Iterator:
    """Batch after batch, epoch after epoch (both loaders have ``sampler.set_epoch``)."""
    for epoch in count():
        loader.sampler.set_epoch(epoch)
        yield from loader


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(args, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if args.model == "small_cnn":
        model = SmallCNN(num_classes=10, in_channels=3)
    else:
        model = cifar_resnet(arch="resnet18", num_classes=10)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if args.channels_last else model


def train_steps(model, opt, batches: Iterator, steps: int, device, args) -> float:
    """Seconds per step over ``steps`` steps as train.py's loop takes them (batch to the
    device, ``BatchClosure``, ``opt.step``), synchronized at both ends."""
    model.train()
    autocast = torch.bfloat16 if args.bf16 else None
    sync(device)
    start = time.perf_counter()
    for batch in islice(batches, steps):
        inputs, targets = engine.to_device(batch, device, args.channels_last)
        closure = BatchClosure(model, LOSS, inputs, targets, autocast_dtype=autocast)
        opt.step(closure)
    engine.stop_if_skipped(opt)  # the loop's host read of the skipped-step counter
    sync(device)
    return (time.perf_counter() - start) / steps


def build_runner(method: Method, device: torch.device, args) -> tuple[nn.Module, XSAM]:
    """A model and its optimizer for one method, kept (warm) for the whole run; the base is
    fused SGD and SAM forms its angle on no step, as train.py runs them between logged steps."""
    model = build_model(args, device)
    base = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, fused=True)
    return model, XSAM(model.parameters(), base, **{"rho": RHO, **method.settings})


def time_round(runners: dict, stream: Iterator, device, args) -> dict[str, float]:
    """ms per step of every method on one path, in turn; then the data path alone.

    XSAM dynamic: XSAM static's steps plus one alpha-search step (timed on the same warm
    optimizer) per epoch of 50,000 images.
    """
    times = {}
    for label, (model, opt) in runners.items():
        times[label] = 1e3 * train_steps(model, opt, stream, args.steps, device, args)
    model, opt = runners["XSAM static"]
    opt.search_every = 1  # every step searches alpha
    search = 1e3 * train_steps(model, opt, stream, args.search_steps, device, args)
    opt.search_every = None
    static = times["XSAM static"]
    times["XSAM dynamic"] = static + (search - static) / (CIFAR_TRAIN // args.batch_size)
    times["alpha-search step"] = search
    times["data only"] = time_data(stream, max(args.steps, 10), device, args)
    return times


def time_data(batches: Iterator, n: int, device, args) -> float:
    """ms per batch of the data path alone: next batch, moved to the device."""
    sync(device)
    start = time.perf_counter()
    for batch in islice(batches, n):
        engine.to_device(batch, device, args.channels_last)
    sync(device)
    return 1e3 * (time.perf_counter() - start) / n


def measure(device: torch.device, splits, args) -> dict[str, dict[str, list[float]]]:
    """``{path: {label: [ms per step, one per round]}}``.

    Load on a shared machine drifts; so every round times every method on both paths (path
    order alternating), and the ratios are taken within a round.
    """
    streams = {path: endless(train_loader(path, splits, device, args)) for path in PATHS}
    runners = {m.label: build_runner(m, device, args) for m in TIMED}
    warm_up = argparse.Namespace(**{**vars(args), "steps": args.warmup, "search_steps": 1})
    for path in PATHS:
        time_round(runners, streams[path], device, warm_up)
    samples = {path: {} for path in PATHS}
    for repeat in range(args.repeats):
        for path in PATHS if repeat % 2 == 0 else PATHS[::-1]:
            for label, ms in time_round(runners, streams[path], device, args).items():
                samples[path].setdefault(label, []).append(ms)
        print(f"  {device.type}: round {repeat + 1}/{args.repeats} done", flush=True)
    return samples


# ---------------------------------------------------------------------------------------------
# The report: one table, then the targets.
# ---------------------------------------------------------------------------------------------
def median_ratio(num: list[float], den: list[float], factor: float = 1.0) -> float:
    """Median over rounds of the per-round ratio: both were timed in the same round."""
    return statistics.median(a / (factor * b) for a, b in zip(num, den, strict=True))


def device_rows(device: torch.device, samples: dict, args) -> list[dict]:
    rows = []
    for label in [m.label for m in METHODS] + ["alpha-search step", "data only"]:
        row = {"device": device.type, "method": label}
        for path in PATHS:
            ms = samples[path][label]
            row[f"{path}_ms"] = statistics.median(ms)
            row[f"{path}_img_s"] = 1e3 * args.batch_size / row[f"{path}_ms"]
            sam = samples[path]["SAM"]
            row[f"{path}_over_sam"] = median_ratio(ms, sam) if label != "data only" else None
        row["speedup"] = median_ratio(samples["torchvision"][label], samples["fast"][label])
        rows.append(row)
    return rows


COLUMNS = [  # (header, key, format)
    ("device", "device", "{}"),
    ("method", "method", "{}"),
    ("torchvision ms/step", "torchvision_ms", "{:.1f}"),
    ("torchvision img/s", "torchvision_img_s", "{:.0f}"),
    ("fast ms/step", "fast_ms", "{:.1f}"),
    ("fast img/s", "fast_img_s", "{:.0f}"),
    ("fast / torchvision img/s", "speedup", "{:.2f}x"),
    ("/ SAM, torchvision", "torchvision_over_sam", "{:.3f}"),
    ("/ SAM, fast", "fast_over_sam", "{:.3f}"),
]


def target_notes(rows: list[dict], samples: dict[str, dict]) -> str:
    """The issue's targets, each marked met or MISSED (fast vs torchvision: GPU only).

    Each ratio: the median over rounds, then the range of the per-round ratios and n.
    """
    lines = ["targets (median over rounds [min, max], n rounds):"]
    for device, by_path in samples.items():
        for path in PATHS:
            ms, where = by_path[path], f"  {device} {path}:"
            checks = [(f"{label} / SAM", ms[label], ms["SAM"], 1.0, 1.02) for label in XSAM_ROWS]
            checks.append(("SAM / (2 x SGD)", ms["SAM"], ms["SGD"], 2.0, 1.05))
            for name, num, den, factor, limit in checks:
                met = _verdict(median_ratio(num, den, factor) <= limit)
                lines.append(f"{where} {name} {_spread(num, den, factor)} <= {limit} ({met})")
    for r in rows:
        if r["device"] == "cuda" and r["method"] != "data only":
            met = _verdict(r["speedup"] >= 2.0)
            lines.append(
                f"  cuda {r['method']}: fast / torchvision {r['speedup']:.2f}x >= 2x ({met})"
            )
    return "\n".join(lines)


def _spread(num: list[float], den: list[float], factor: float) -> str:
    ratios = [a / (factor * b) for a, b in zip(num, den, strict=True)]
    return (
        f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}], n={len(ratios)}"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def describe(device: torch.device, args) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    precision = "bf16 autocast" if args.bf16 else "fp32"
    layout = "channels_last" if args.channels_last else "NCHW"
    return (
        f"{device.type}: {name}; {args.model}, batch {args.batch_size} x 3x32x32, {precision}, "
        f"{layout}; {args.repeats} rounds of {args.steps} timed steps per method and path "
        f"({args.search_steps} alpha-search steps) after {args.warmup} warm-up steps; "
        f"torchvision path with {args.workers} DataLoader workers"
    )


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    p.add_argument("--steps", type=int, help="timed steps per method per round (CPU 1, CUDA 20)")
    p.add_argument("--warmup", type=int, help="untimed steps per method first (CPU 1, CUDA 10)")
    p.add_argument("--search-steps", type=int, help="alpha-search steps per round (CPU 1, CUDA 2)")
    p.add_argument("--batch-size", type=int, help="CPU 16, CUDA 256")
    p.add_argument("--workers", type=int, help="DataLoader workers (CPU 0, CUDA 8)")
    p.add_argument("--repeats", type=int, help="rounds (5)")
    p.add_argument("--n-train", type=int, help="synthetic training images (50,000)")
    p.add_argument("--model", choices=["resnet18", "small_cnn"], default="resnet18")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--quick", action="store_true", help="batch 8, 1 step, 2 rounds, 2,048 images")
    return p.parse_args(argv)


def per_device(args: argparse.Namespace, device: torch.device) -> argparse.Namespace:
    """Fill the options left unset: small on CPU so the run takes minutes."""
    cuda = device.type == "cuda"
    defaults = dict(
        steps=20 if cuda else 1,
        warmup=10 if cuda else 1,
        search_steps=2 if cuda else 1,
        batch_size=256 if cuda else 16,
        workers=min(8, os.cpu_count() or 1) if cuda else 0,
        repeats=5,
    )
    if args.quick:
        defaults.update(steps=1, warmup=1, search_steps=1, batch_size=8, repeats=2)
    chosen = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in defaults.items()}
    return argparse.Namespace(**{**vars(args), **chosen})


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.n_train is None:
        args.n_train = 2048 if args.quick else CIFAR_TRAIN
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    torch.backends.cudnn.benchmark = True
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} CPUs; {load()}",
        flush=True,
    )
    rows, samples = [], {}
    with tempfile.TemporaryDirectory() as root:
        splits = synthetic_cifar(Path(root), args.n_train, n_test=100)  # the test split is unused
        for device in devices:
            settings = per_device(args, device)
            print(describe(device, settings), flush=True)
            samples[device.type] = measure(device, splits, settings)
            rows += device_rows(device, samples[device.type], settings)
    table = markdown_table(rows, COLUMNS)
    print(table)
    print(target_notes(rows, samples))
    print(f"at the end: {load()}")
    return {"rows": rows, "samples": samples, "table": table}


if __name__ == "__main__":
    main()
