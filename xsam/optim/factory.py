"""timm-style construction: ``create_optimizer_v2`` with the SAM family on top.

timm users build optimizers with ``timm.optim.create_optimizer_v2(model, opt="sgd", lr=...,
weight_decay=...)``, which also makes the param groups (no weight decay on biases and norm
weights, layer decay). :func:`create_optimizer_v2` here takes the same arguments, lets timm
build the base optimizer exactly as it would, and puts the method over it, so a timm script
changes one import and adds the method's settings::

    from xsam.optim.factory import create_optimizer_v2
    opt = create_optimizer_v2(model, "sgd", lr=0.05, weight_decay=1e-3, momentum=0.9,
                              sam_kwargs=dict(rho=0.15, search_every=len(loader)))
"""

from typing import Any

from torch import nn
from torch.optim import Optimizer

from xsam.optim.xsam import XSAM


def create_optimizer_v2(
    model_or_params: nn.Module | Any,
    opt: str = "sgd",
    lr: float | None = None,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    *,
    sam: type[XSAM] = XSAM,
    sam_kwargs: dict[str, Any] | None = None,
    **timm_kwargs: Any,
) -> XSAM:
    """``sam`` (XSAM, GSAM or WSAM) with ``sam_kwargs`` over timm's ``opt`` optimizer, built
    by ``timm.optim.create_optimizer_v2`` from the other arguments. A model given here is
    also the method's ``model=`` (its BatchNorm policy, and parameter names in errors)."""
    from timm.optim import create_optimizer_v2 as timm_create  # timm: the "train" extra

    base = timm_create(
        model_or_params, opt, lr=lr, weight_decay=weight_decay, momentum=momentum, **timm_kwargs
    )
    settings = dict(sam_kwargs or {})
    if isinstance(model_or_params, nn.Module):
        settings.setdefault("model", model_or_params)
        if settings.get("adaptive_scope") == "weight":  # ASAM's scope reads the names
            _name_groups(base.param_groups, model_or_params)
    return sam(base.param_groups, base=_Prebuilt(base), **settings)


def _name_groups(groups: list[dict], model: nn.Module) -> None:
    """``param_names`` in each of timm's groups, from the model, as ``named_parameters()``
    gives them to a hand-built optimizer."""
    names = {p: n for n, p in model.named_parameters()}
    for group in groups:
        group.setdefault("param_names", [names[p] for p in group["params"]])


class _Prebuilt:
    """``base`` for a method whose base optimizer already exists over these param groups."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer

    def __call__(self, param_groups: list[dict]) -> Optimizer:
        mine = [p for g in self.optimizer.param_groups for p in g["params"]]
        given = [p for g in param_groups for p in g["params"]]
        if len(mine) != len(given) or any(a is not b for a, b in zip(mine, given, strict=True)):
            raise ValueError("a prebuilt base optimizer must be over the same param groups")
        return self.optimizer
