"""Where datasets live: an explicit root, else ``$XSAM_DATA_ROOT``, else ``data/``.

The configs pass ``root: ${data_root}/<dataset>``, with the top-level config defining
``data_root: ${oc.env:XSAM_DATA_ROOT,data}``; this module gives the same answer to code that
calls a builder without a root (a notebook, a test), so both paths agree.
"""

import os
from pathlib import Path

ENV_VAR = "XSAM_DATA_ROOT"
DEFAULT_ROOT = "data"


def dataset_root(root: str | os.PathLike | None, folder: str) -> Path:
    """``root`` when given, else ``$XSAM_DATA_ROOT/<folder>``, else ``data/<folder>``."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(ENV_VAR, DEFAULT_ROOT)).expanduser() / folder
