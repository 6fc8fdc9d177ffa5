"""``state_dict`` of the SAM family in torch's layout, so that tools made for torch
optimizers (``torch.distributed.checkpoint.state_dict``, Lightning, accelerate) carry it.

The layout is the base optimizer's: ``state`` (per parameter, the base's momentum or Adam
moments) and ``param_groups``. The family's own scalars (the current alpha, the step and
pass counters, the skipped-step count) sit at the top level under their names, as before
(train.py reads ``step_count`` from a checkpoint), and again in every packed param group
under ``xsam_*`` keys, since torch.distributed.checkpoint keeps a group's extra keys but
drops top-level ones. They are taken out before the base optimizer loads its part, so they
never reach the live param groups. Checkpoints in the earlier layout
(``{"base": ..., "alpha": ...}``) load.
"""

from typing import Any

SCALARS = ("alpha", "step_count", "forward_passes", "backward_passes", "skipped_steps")
PREFIX = "xsam_"


def pack(base_state: dict[str, Any], scalars: dict[str, Any]) -> dict[str, Any]:
    """The base's state dict with the family's scalars added at the top level and to each
    packed group."""
    for group in base_state["param_groups"]:
        for name in SCALARS:
            value = scalars[name]
            group[PREFIX + name] = value.clone() if hasattr(value, "clone") else value
    return {**base_state, **scalars}


def unpack(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the base optimizer's state dict, the family's scalars), from either layout."""
    if "base" in state_dict:  # the layout before torch's (checkpoints written until then)
        return state_dict["base"], {name: state_dict[name] for name in SCALARS}
    groups = state_dict.get("param_groups") or [{}]
    stripped = [{k: v for k, v in g.items() if not k.startswith(PREFIX)} for g in groups]
    base_state = {"state": state_dict.get("state", {}), "param_groups": stripped}
    if all(name in state_dict for name in SCALARS):  # torch.save / torch.load
        scalars = {name: state_dict[name] for name in SCALARS}
        _check_copies_agree(scalars, groups[0])
        return base_state, scalars
    missing = [PREFIX + n for n in SCALARS if PREFIX + n not in groups[0]]
    if missing:  # neither place: not ours
        raise ValueError(
            f"optimizer state dict lacks {', '.join(missing)} in its param groups: it was not "
            "written by this optimizer's state_dict() (a bare base optimizer's, or a flattened "
            "torch.distributed.checkpoint state dict, which keeps no extra group keys)"
        )
    return base_state, {name: groups[0][PREFIX + name] for name in SCALARS}  # through DCP


def _check_copies_agree(top: dict[str, Any], group: dict[str, Any]) -> None:
    """The two copies of each scalar must say the same: a state dict edited in one place
    only would otherwise resume from whichever copy the loader happened to read."""
    for name in SCALARS:
        if PREFIX + name not in group:
            continue
        a, b = top[name], group[PREFIX + name]
        same = bool((a == b).all()) if hasattr(a, "all") else a == b
        if not same:
            raise ValueError(
                f"optimizer state dict: {name} is {a} at the top level but {b} in its param "
                "groups; the two copies must agree"
            )
