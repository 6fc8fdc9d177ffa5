"""Put Tiny-ImageNet's validation images into class folders, as ImageFolder expects.

    python scripts/tinyimagenet_val_to_folders.py data/tiny-imagenet-200

moves ``val/images/<file>`` to ``val/<wnid>/<file>`` using ``val/val_annotations.txt``
(``<file> <wnid> <x0> <y0> <x1> <y1>``, tab-separated) and removes the emptied
``val/images/``. Idempotent: images already in place are skipped, so a second run (or a run
after an interrupted one) finishes the job and otherwise changes nothing.
"""

import argparse
import sys
from pathlib import Path


def val_to_class_folders(root: Path) -> int:
    """Move every annotated val image into its class folder; return how many moved."""
    val = root / "val"
    annotations = val / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(
            f"missing: {annotations}; expected Tiny-ImageNet's val annotations "
            "(<file>\\t<wnid>\\t<box>) in the unzipped tiny-imagenet-200 folder"
        )
    moved = 0
    for file_name, wnid in _read_annotations(annotations):
        source, target = val / "images" / file_name, val / wnid / file_name
        if target.exists():
            continue
        if not source.is_file():
            raise FileNotFoundError(f"missing: {source}; expected the image {annotations} lists")
        target.parent.mkdir(exist_ok=True)
        source.rename(target)
        moved += 1
    images = val / "images"
    if images.is_dir() and not any(images.iterdir()):
        images.rmdir()
    return moved


def _read_annotations(path: Path) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(row[0], row[1]) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the tiny-imagenet-200 folder")
    args = parser.parse_args(argv)
    try:
        moved = val_to_class_folders(args.root)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"moved {moved} validation images into class folders under {args.root / 'val'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
