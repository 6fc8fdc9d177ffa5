"""Checkpoints written atomically, with every RNG state, for bit-exact resumes."""

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The state of every RNG the training process draws from (python, numpy, torch, CUDA),
    as tensors, lists and numbers only, so that checkpoints load with ``weights_only=True``."""
    version, keys, gauss = random.getstate()
    name, mt, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(keys), gauss],
        "numpy": [name, torch.from_numpy(mt.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, mt, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, mt.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old or the new checkpoint, never a torn one.
    """
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded; the message names the file and what to do."""


def load(path: Path) -> dict[str, Any]:
    """The checkpoint, loaded with ``weights_only=True`` (no code runs from the file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torn zip, zero bytes, not a checkpoint, pickled objects
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path} holds Python objects beyond tensors and numbers (written before "
                "xsam stored its RNG states as tensors?), which weights_only loading refuses"
            ) from None
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise CheckpointError(f"{path} is damaged or not a checkpoint ({reason})") from None
