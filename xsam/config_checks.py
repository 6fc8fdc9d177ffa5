"""Checks of a composed config: one clear line naming the offending key, before any work.

``check_config`` is the one validation pass: the typed rules below, every number finite, the
run root writable, and the optimizer and schedule built once on a dummy parameter, so that
their own ``ValueError``s come out in the same one-line form (``optimizer.eta must be ...``).
A rule the optimizer or a dataset builder checks itself is not repeated here.
"""

import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A bad config value; the message names the key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool)


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


# what to do with a run directory whose files are damaged (see xsam.rundir)
RESUME_MODES = ("auto", "restart", "from_last_good")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer"),
    "epochs": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "sync_every": _int_at_least(1),
    "device": (lambda v: v in ("auto", "cpu", "cuda"), "one of auto, cpu, cuda"),
    "precision": (lambda v: v in ("fp32", "bf16"), "one of fp32, bf16"),
    "study": (lambda v: isinstance(v, str) and v and "/" not in v, "a name without '/'"),
    **{key: _BOOL for key in ("deterministic", "progress", "compile", "channels_last")},
    **{key: _BOOL for key in ("sync_bn", "no_decay_norm_bias", "diagnostics.sharpness_at_end")},
    **{f"loader.{k}": _BOOL for k in ("device_resident", "pin_memory", "persistent_workers")},
    "loader.num_workers": _int_at_least(0),
    "diagnostics.every": _int_at_least(0),
    "diagnostics.directions_every": _int_at_least(0),
    "diagnostics.sphere_every": _int_at_least(0),
    "time_budget_s": (lambda v: v is None or (_is_number(v) and v > 0), "null or a number > 0"),
    "optimizer.decouple": _BOOL,
    "dataset.splits.label_noise": (
        lambda v: _is_number(v) and 0 <= v < 1,
        "a fraction in [0, 1)",
    ),
    "dataset.splits.train_subset": (lambda v: v is None or (_is_int(v) and v >= 1), "null or >= 1"),
    "dataset.splits.holdout": _int_at_least(0),
    "diagnostics.sharpness_batches": _int_at_least(1),
    "train.limit_batches": (lambda v: v is None or (_is_int(v) and v >= 1), "null or >= 1"),
    "objective": (lambda v: isinstance(v, str) and "/" in v, "a metric key such as test/acc"),
    "resume": (lambda v: v in RESUME_MODES, "one of " + ", ".join(RESUME_MODES)),
    "optimizer.search_every": (
        lambda v: v is None or v == "epoch" or (_is_int(v) and v >= 1),
        "'epoch', null or an integer >= 1",
    ),
    "schedule.T_max": _int_at_least(1),
    "logger.mode": (
        lambda v: v in ("online", "offline", "disabled"),
        "online, offline or disabled",
    ),
}


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first setting that breaks its rule, in the order above."""
    for key, (ok, expected) in _RULES.items():
        value = OmegaConf.select(cfg, key, default="<missing>")
        if value == "<missing>":
            continue
        if not ok(value):
            raise ConfigError(f"{key} must be {expected}, got {value!r}")
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=True)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value}")
    if OmegaConf.select(cfg, "dataset.splits._target_") == "xsam.data.mnist.mnist_splits":
        from xsam.data.mnist import check_split_sizes  # the 60,000 training images

        try:
            check_split_sizes(cfg.dataset.splits.train_subset, cfg.dataset.splits.holdout)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    check_augmentation(cfg.dataset.get("splits", {}))
    probes = [k for k in ("directions_every", "sphere_every") if cfg.diagnostics.get(k)]
    if probes and cfg.optimizer.get("_target_") != "xsam.optim.XSAM":
        raise ConfigError(
            f"diagnostics.{probes[0]} probes the XSAM family's plane (alpha, rho_max); "
            f"{cfg.optimizer.get('_target_')} gives those settings other meanings"
        )
    check_run_root(Path(cfg.run_root))
    check_optimizer_builds(cfg)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), node


def check_augmentation(splits: DictConfig) -> None:
    """The dataset's crop, flip and Cutout keys, checked by the record its builder makes."""
    from xsam.data.augmentation import CONFIG_KEYS, from_config_keys

    if "padding" not in splits:  # no augmentation (digits, ImageNet)
        return
    try:
        from_config_keys(**{k: splits[k] for k in CONFIG_KEYS if k in splits})
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_run_root(root: Path) -> None:
    """run_root must be (or be creatable as) a writable folder; nothing is created here."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"run_root={root}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run_root={root}: {existing} is not writable")


def check_optimizer_builds(cfg: DictConfig) -> None:
    """Build the optimizer and schedule on one dummy parameter and step the schedule once:
    their own checks (XSAM's, torch's SGD momentum, a scheduler's arguments) run here."""
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    dummy = [("weight", torch.nn.Parameter(torch.zeros(1)))]
    every = search_interval(cfg.optimizer.get("search_every"), steps_per_epoch=1)
    try:
        opt = instantiate(cfg.optimizer, search_every=every)(dummy)
    except (ValueError, TypeError, InstantiationException) as err:
        raise ConfigError(_named("optimizer", err, cfg.optimizer)) from None
    try:
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": on purpose
            warnings.simplefilter("ignore")
            instantiate(cfg.schedule)(opt).step()
    except (ValueError, TypeError, ZeroDivisionError, InstantiationException) as err:
        raise ConfigError(_named("schedule", err, cfg.schedule)) from None


def search_interval(setting: int | str | None, steps_per_epoch: int) -> int | None:
    """Steps between alpha searches: ``optimizer.search_every`` with 'epoch' resolved to the
    epoch's length (a search on the first batch of every epoch)."""
    return steps_per_epoch if setting == "epoch" else setting


def _named(group: str, err: Exception, node: DictConfig) -> str:
    """``optimizer.eta must be >= 0, ...`` from XSAM's ``eta must be >= 0, ...``; a message
    that names no key of the group (torch's ``Invalid momentum value``) gets the group."""
    cause = err.__cause__ if err.__cause__ is not None else err
    message = " ".join(str(cause).split())  # one line
    first = message.split(" ", 1)[0]
    if first in node:
        return f"{group}.{message}"
    if group == "optimizer" and "base" in node:
        return f"{group}.base ({node.base._target_}): {message}"
    return f"{group} ({node.get('_target_')}): {message}"
