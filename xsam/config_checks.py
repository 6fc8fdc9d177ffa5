"""Checks of a composed config: one clear line naming the offending key, before any work."""

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A bad config value; the message names the key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "sync_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "device": (lambda v: v in ("auto", "cpu", "cuda"), "one of auto, cpu, cuda"),
    "precision": (lambda v: v in ("fp32", "bf16"), "one of fp32, bf16"),
    "loader.num_workers": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "optimizer.rho": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "optimizer.steps": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "optimizer.alpha": (_is_number, "a number"),
    "optimizer.rho_max": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "optimizer.alpha_max": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "optimizer.alpha_delta": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "optimizer.search_every": (
        lambda v: v is None or v == "epoch" or (_is_int(v) and v >= 1),
        "'epoch', null or an integer >= 1",
    ),
    "logger.mode": (
        lambda v: v in ("online", "offline", "disabled"),
        "online, offline or disabled",
    ),
}


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key whose value breaks its rule."""
    for key, (ok, expected) in _RULES.items():
        value = OmegaConf.select(cfg, key, default="<missing>")
        if value == "<missing>":
            continue
        if not ok(value):
            raise ConfigError(f"{key} must be {expected}, got {value!r}")
    if cfg.optimizer.steps == 0 and cfg.optimizer.rho != 0:
        raise ConfigError("optimizer.steps=0 is the base optimizer alone: it needs optimizer.rho=0")
