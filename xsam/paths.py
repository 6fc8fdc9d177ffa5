"""The one base folder of the scripts' relative paths: the repository root, or ``$XSAM_BASE``.

Every script (``scripts/sweep.py``, ``aggregate.py``, ``plot_curves.py``, ``geometry.py``,
``plot_alpha.py``, ``eval_checkpoint.py``) reads a relative path it is given (a definition
file, ``--runs-dir``, ``--out``, a run directory) under this folder, whatever directory it is
called from, and ``sweep.py`` runs ``train.py`` there, so that ``run_root=runs`` is the same
folder for the sweep and for the table built from it. Absolute paths are taken as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_ENV = "XSAM_BASE"  # another base folder, e.g. a scratch copy of the runs and results


def base_dir() -> Path:
    """``$XSAM_BASE`` when set, else the repository root."""
    return Path(os.environ.get(BASE_ENV) or REPO).expanduser().resolve()


def resolve(path: str | os.PathLike) -> Path:
    """``path`` itself when absolute, else the same path under :func:`base_dir`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else base_dir() / path


def shown(path: Path) -> str:
    """``path`` relative to the base folder when it lies inside it (how files name it)."""
    path = Path(path).resolve()
    base = base_dir()
    return (path.relative_to(base) if path.is_relative_to(base) else path).as_posix()
