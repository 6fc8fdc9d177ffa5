"""torchvision ImageFolder with one-line errors for missing, partial or corrupt data.

Shared by the Tiny-ImageNet and ImageNet builders: both are ``<split>/<class>/.../<image>``.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from xsam.data.errors import DatasetNotFound


def image_folder(
    root: Path,
    *,
    transform: Callable,
    classes: int | Sequence[str],
    what: str,
    hint: str | None = None,
) -> ImageFolder:
    """``ImageFolder(root)`` after checking its class folders.

    ``classes`` is the number of class folders expected, or the exact list (so a test split
    gets the train split's class indices). ``what`` names the data in error messages.
    Unreadable images are reported when they are read, with their path.
    """
    if not root.is_dir():
        raise DatasetNotFound(root, f"{what}: a folder of class sub-folders", hint=hint)
    found, _ = find_classes(str(root))
    _check_classes(root, found, classes, what, hint)
    try:
        return ImageFolder(str(root), transform=transform, loader=load_rgb)
    except FileNotFoundError as err:  # a class folder without images
        raise DatasetNotFound(
            root, f"{what}: images in every class folder ({err})", problem="partial", hint=hint
        ) from err


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB; a corrupt file raises :class:`DatasetNotFound` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # what PIL raises for broken files
        raise DatasetNotFound(path, f"a readable image ({err})", problem="corrupt") from err


def _check_classes(
    root: Path, found: list[str], classes: int | Sequence[str], what: str, hint: str | None
) -> None:
    if isinstance(classes, int):
        if len(found) != classes:
            raise DatasetNotFound(
                root,
                f"{what}: {classes} class folders, found {len(found)}",
                problem="partial",
                hint=hint,
            )
        return
    if found != list(classes):
        missing = sorted(set(classes) - set(found))[:3]
        extra = sorted(set(found) - set(classes))[:3]
        raise DatasetNotFound(
            root,
            f"{what}: the same {len(classes)} class folders as the training split "
            f"(missing e.g. {missing}, unexpected e.g. {extra})",
            problem="partial",
            hint=hint,
        )
