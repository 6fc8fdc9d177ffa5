"""Training-step benchmark: the SAM family on ResNet-18 / CIFAR, torchvision vs fast data path.

    python scripts/bench_train.py              # CPU, and CUDA when present: docs/BENCHMARKS.md
    python scripts/bench_train.py --device cuda --batch-size 256 --steps 100 --workers 8
    python scripts/bench_train.py --quick      # CPU in a few minutes

Every number comes from the real code: a synthetic CIFAR-10 (random pixels, 50,000 + 10,000
images) written in the real pickle format and loaded by ``cifar_splits``, a CIFAR ResNet-18
from ``xsam.models``, ``xsam.optim.XSAM`` in each configuration, and the real training loop
``xsam.engine.train_one_epoch`` (``BatchClosure``, ``opt.step``). Two data paths:

* torchvision: ``xsam.data.loader.build_loader`` (a DataLoader, per-sample v2 transforms in
  ``--workers`` processes, batches copied to the device);
* fast: ``xsam.data.device_cifar.device_cifar_loaders`` (uint8 images on the device,
  augmentation in batches there).

Per device, per path, per method: ms per training step (data included) and images/s, medians
over ``--repeats`` interleaved repeats (methods and paths alternate, so machine load drifts
into every cell alike); ratios are medians of per-repeat ratios. XSAM dynamic is the per-epoch
cost: its steps between searches are XSAM static's, plus one alpha-search step per epoch of
50,000 images (measured on the same optimizer), spread over the epoch's steps. The "data
only" row times the loader alone (batches moved to the device, no model).
"""

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
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
from xsam.data.cifar import cifar_splits
from xsam.data.device_cifar import device_cifar_loaders
from xsam.data.loader import build_loader
from xsam.models import SmallCNN, cifar_resnet
from xsam.optim import XSAM

REPO = Path(__file__).resolve().parents[1]
LR, MOMENTUM, WEIGHT_DECAY, RHO = 0.05, 0.9, 1e-3, 0.15  # the paper's CIFAR settings
CIFAR_TRAIN = 50_000  # images per epoch, for the per-epoch cost of the alpha search
PATHS = ("torchvision", "fast")


@dataclass(frozen=True)
class Method:
    label: str
    settings: dict = field(default_factory=dict)  # XSAM keyword arguments


METHODS = (
    Method("SGD", dict(rho=0.0, steps=0)),
    Method("SAM", dict(steps=1, alpha=1.0)),
    Method("XSAM static", dict(steps=1, alpha=0.5)),
    Method("XSAM dynamic", dict(steps=1, alpha=0.5)),  # timed with XSAM static, see above
    Method("MSAM k=2", dict(steps=2, alpha=1.0)),
    Method("MSAM k=3", dict(steps=3, alpha=1.0)),
)
TIMED = [m for m in METHODS if m.label != "XSAM dynamic"]


# ---------------------------------------------------------------------------------------------
# Data: synthetic CIFAR-10 files, the two loaders, an endless stream of batches.
# ---------------------------------------------------------------------------------------------
def synthetic_cifar(root: Path, n_train: int, n_test: int):
    """CIFAR-10 pickles with random pixels under ``root``, loaded by ``cifar_splits``.

    The writer is the tests' (tests/formats.py); torchvision's md5 check is pointed at the
    written files for as long as the datasets load.
    """
    spec = importlib.util.spec_from_file_location("formats", REPO / "tests" / "formats.py")
    formats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(formats)
    formats.write_cifar(root, num_classes=10, n_train=n_train, n_test=n_test)
    with pytest.MonkeyPatch.context() as patch:
        formats.accept_cifar_checksums(patch, root, num_classes=10)
        return cifar_splits(num_classes=10, root=root)


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
    """Seconds per step over ``steps`` steps of the real loop (synchronized at both ends)."""
    sync(device)
    start = time.perf_counter()
    engine.train_one_epoch(
        model,
        islice(batches, steps),
        opt,
        nn.CrossEntropyLoss(),
        device=device,
        autocast_dtype=torch.bfloat16 if args.bf16 else None,
        channels_last=args.channels_last,
    )  # ends with a host read of the skipped-step counter
    sync(device)
    return (time.perf_counter() - start) / steps


def time_method(method: Method, batches: Iterator, device, args) -> dict[str, float]:
    """ms per step; for XSAM static also the alpha-search step, on the same warm optimizer."""
    model = build_model(args, device)
    base = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    opt = XSAM(model.parameters(), base, **{"rho": RHO, **method.settings})
    train_steps(model, opt, batches, args.warmup, device, args)
    times = {method.label: 1e3 * train_steps(model, opt, batches, args.steps, device, args)}
    if method.label == "XSAM static":
        opt.search_every = 1  # every step searches alpha from here on
        search = 1e3 * train_steps(model, opt, batches, args.search_steps, device, args)
        steps_per_epoch = CIFAR_TRAIN // args.batch_size
        static = times[method.label]
        times["XSAM dynamic"] = static + (search - static) / steps_per_epoch
        times["alpha-search step"] = search
    return times


def time_data(batches: Iterator, device, args) -> float:
    """ms per batch of the data path alone: next batch, moved to the device."""
    for batch in islice(batches, args.warmup):
        engine.to_device(batch, device, args.channels_last)
    sync(device)
    start = time.perf_counter()
    for batch in islice(batches, args.steps):
        engine.to_device(batch, device, args.channels_last)
    sync(device)
    return 1e3 * (time.perf_counter() - start) / args.steps


def measure(device: torch.device, splits, args) -> dict[str, dict[str, list[float]]]:
    """``{path: {label: [ms per step, one per repeat]}}``, methods and paths interleaved."""
    streams = {path: endless(train_loader(path, splits, device, args)) for path in PATHS}
    samples = {path: {} for path in PATHS}
    for repeat in range(args.repeats):
        for path in PATHS:
            for method in TIMED:
                for label, ms in time_method(method, streams[path], device, args).items():
                    samples[path].setdefault(label, []).append(ms)
            samples[path].setdefault("data only", []).append(time_data(streams[path], device, args))
            print(f"  {device.type} repeat {repeat + 1}/{args.repeats}: {path} done", flush=True)
    return samples


# ---------------------------------------------------------------------------------------------
# The report: one table, then the targets.
# ---------------------------------------------------------------------------------------------
def median_ratio(num: list[float], den: list[float], factor: float = 1.0) -> float:
    """Median over repeats of the per-repeat ratio: both were timed in the same repeat."""
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


def format_table(rows: list[dict]) -> str:
    def cell(row, key, fmt):
        return "—" if row.get(key) is None else fmt.format(row[key])

    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |"]
    lines.append("|" + "|".join(" --- " for _ in COLUMNS) + "|")
    lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def target_notes(rows: list[dict], samples: dict[str, dict]) -> str:
    """The issue's targets, each marked met or MISSED (fast path vs torchvision: GPU only)."""
    lines = ["targets:"]
    for device, by_path in samples.items():
        for path in PATHS:
            ms = by_path[path]
            where = f"  {device} {path}:"
            for label in ("XSAM static", "XSAM dynamic"):
                r = median_ratio(ms[label], ms["SAM"])
                lines.append(f"{where} {label} / SAM {r:.3f} <= 1.02 ({_verdict(r <= 1.02)})")
            r = median_ratio(ms["SAM"], ms["SGD"], factor=2.0)
            lines.append(f"{where} SAM / (2 x SGD) {r:.3f} <= 1.05 ({_verdict(r <= 1.05)})")
    for r in rows:
        if r["device"] == "cuda" and r["method"] != "data only":
            met = _verdict(r["speedup"] >= 2.0)
            lines.append(
                f"  cuda {r['method']}: fast / torchvision {r['speedup']:.2f}x >= 2x ({met})"
            )
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
        if names:
            return names[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def describe(device: torch.device, args) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    precision = "bf16 autocast" if args.bf16 else "fp32"
    layout = "channels_last" if args.channels_last else "NCHW"
    return (
        f"{device.type}: {name}; {args.model}, batch {args.batch_size} x 3x32x32, {precision}, "
        f"{layout}; {args.steps} timed steps after {args.warmup} warm-up steps per cell "
        f"({args.search_steps} alpha-search steps), {args.repeats} repeats; torchvision path "
        f"with {args.workers} DataLoader workers"
    )


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    p.add_argument("--steps", type=int, help="timed steps per cell (CPU 3, CUDA 50)")
    p.add_argument("--warmup", type=int, help="untimed steps first (CPU 1, CUDA 10)")
    p.add_argument("--search-steps", type=int, help="timed alpha-search steps (CPU 1, CUDA 5)")
    p.add_argument("--batch-size", type=int, help="CPU 16, CUDA 256")
    p.add_argument("--workers", type=int, help="DataLoader workers (CPU 0, CUDA 8)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-train", type=int, default=CIFAR_TRAIN, help="synthetic train images")
    p.add_argument("--model", choices=["resnet18", "small_cnn"], default="resnet18")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--quick", action="store_true", help="batch 8, 2 steps, 1 repeat, 2,048 images")
    return p.parse_args(argv)


def per_device(args: argparse.Namespace, device: torch.device) -> argparse.Namespace:
    """Fill the options left unset: small on CPU so the run takes minutes."""
    cuda = device.type == "cuda"
    defaults = dict(
        steps=50 if cuda else 3,
        warmup=10 if cuda else 1,
        search_steps=5 if cuda else 1,
        batch_size=256 if cuda else 16,
        workers=min(8, os.cpu_count() or 1) if cuda else 0,
    )
    if args.quick:
        defaults.update(steps=2, warmup=1, search_steps=1, batch_size=8)
    chosen = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in defaults.items()}
    return argparse.Namespace(**{**vars(args), **chosen})


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.repeats, args.n_train = 1, min(args.n_train, 2048)
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
    table = format_table(rows)
    print(table)
    print(target_notes(rows, samples))
    print(f"at the end: {load()}")
    return {"rows": rows, "samples": samples, "table": table}


if __name__ == "__main__":
    main()
