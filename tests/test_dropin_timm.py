"""timm users build the method with timm's create_optimizer_v2 arguments (the real timm)."""

from functools import partial

import pytest
import small_nets
import torch
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn

from xsam.optim import GSAM, XSAM, BatchClosure
from xsam.optim.factory import create_optimizer_v2

F64 = torch.float64


bn_net = partial(small_nets.bn_net, dtype=F64)
batches = partial(small_nets.batches, dtype=F64)


def test_timm_builds_the_base_and_its_param_groups():
    model = bn_net()
    opt = create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=1e-3, sam_kwargs=dict(rho=0.1))
    assert isinstance(opt, XSAM) and isinstance(opt.base, torch.optim.SGD)
    assert opt.param_groups is opt.base.param_groups and opt.model is model
    decay = {g["weight_decay"]: {p.ndim for p in g["params"]} for g in opt.param_groups}
    assert decay == {0.0: {1}, 1e-3: {2}}  # timm's rule: no decay on biases and BN weights
    assert opt.param_groups[0]["nesterov"]  # timm's "sgd" is Nesterov SGD


@pytest.mark.parametrize("cls, settings", [(XSAM, dict(rho=0.1, search_every=2)), (GSAM, {})])
def test_timm_construction_trains_as_the_same_method_built_by_hand(cls, settings):
    models = [bn_net(), bn_net()]
    timm_args = dict(lr=0.1, weight_decay=1e-3, sam=cls, sam_kwargs=settings)
    opts = [
        create_optimizer_v2(models[0], "sgd", **timm_args),
        cls(
            param_groups_weight_decay(models[1], 1e-3),
            base=partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
            **settings,
        ),
    ]  # fmt: skip
    for x, y in batches(4):
        for model, opt in zip(models, opts, strict=True):
            opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
    for (key, a), b in zip(
        models[0].state_dict().items(), models[1].state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=key)


def test_timm_adamw_and_timm_scheduler():
    model = bn_net()
    opt = create_optimizer_v2(
        model, "adamw", lr=1e-2, weight_decay=0.05, sam_kwargs=dict(alpha=0.5)
    )
    schedule = CosineLRScheduler(opt, t_initial=4)
    assert isinstance(opt.base, torch.optim.AdamW)
    lrs = []
    for epoch, (x, y) in enumerate(batches(3)):
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
        schedule.step(epoch + 1)
        lrs.append(opt.param_groups[0]["lr"])
        assert bool(opt.report.finite)
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-2


def test_asams_weight_scope_through_the_factory_takes_the_models_names():
    """adaptive_scope="weight" leaves T = 1 on the tensors not named *weight*: the biases."""
    model = bn_net()
    settings = dict(rho=0.5, adaptive=True, adaptive_scope="weight")
    opt = create_optimizer_v2(model, "sgd", lr=0.1, sam_kwargs=settings)
    biases = {p for n, p in model.named_parameters() if "weight" not in n}
    assert opt.unscaled == biases and len(biases) == 3
    opt.step(BatchClosure(model, nn.functional.cross_entropy, *batches(1)[0]))
