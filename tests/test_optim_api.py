"""XSAM's contract beyond the maths: bad settings, non-finite steps, exact resume, BN."""

import copy
import inspect
from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from small_nets import batches, bn_net
from torch import nn

from xsam.optim import GSAM, WSAM, XSAM, BatchClosure, frozen_bn_stats

REPO = Path(__file__).resolve().parents[1]

SGD = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)


def train(model, opt, data) -> None:
    for x, y in data:
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))


@pytest.mark.parametrize(
    "settings, name",
    [
        (dict(rho=-0.1), "rho"),
        (dict(steps=0), "steps"),
        (dict(steps=-1, rho=0.0), "steps"),
        (dict(steps=1.5), "steps"),
        (dict(alpha_delta=0.0), "alpha_delta"),
        (dict(alpha_max=-1.0), "alpha_max"),
        (dict(rho_max=0.0), "rho_max"),
        (dict(search_every=0), "search_every"),
        (dict(eta=-1.0), "eta"),
        (dict(rho="0.1"), "rho"),
        (dict(alpha=None), "alpha"),
        (dict(adaptive="yes"), "adaptive"),
    ],
)
def test_bad_settings_raise_naming_the_setting(settings, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        XSAM(bn_net().parameters(), base=SGD, **settings)


def test_closure_returning_a_non_scalar_is_refused():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    x, y = batches(1)[0]

    def closure(backward=True):
        loss = nn.functional.cross_entropy(model(x), y, reduction="none")
        return loss

    with pytest.raises(ValueError, match="scalar loss"):
        opt.step(closure)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    "settings", [dict(steps=0, rho=0.0), dict(), dict(steps=2, search_every=1)]
)
def test_non_finite_step_is_skipped_and_weights_restored_exactly(fused, settings):
    model = bn_net()
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, fused=fused)
    opt = XSAM(model.parameters(), base=base, **settings)
    train(model, opt, batches(2))
    weights = copy.deepcopy(model.state_dict())
    momentum = [s["momentum_buffer"].clone() for s in opt.base.state.values()]
    x, y = batches(1)[0]
    x[0, 0] = float("nan")
    loss = opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
    assert not torch.isfinite(loss)
    assert not opt.report.finite
    assert int(opt.skipped_steps) == 1
    params = {
        k: v for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    for k, v in params.items():
        assert torch.equal(v, weights[k]), k
    for before, state in zip(momentum, opt.base.state.values(), strict=True):
        assert torch.equal(before, state["momentum_buffer"])


@pytest.mark.parametrize("settings", [dict(), dict(steps=3, search_every=3), dict(adaptive=True)])
def test_save_load_continue_is_bit_identical(settings):
    data = batches(10)
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, **settings)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for batch in data:
        train(model, opt, [batch])
        schedule.step()

    model_a = bn_net()
    opt_a = XSAM(model_a.parameters(), base=SGD, **settings)
    schedule_a = torch.optim.lr_scheduler.CosineAnnealingLR(opt_a, T_max=10)
    for batch in data[:4]:
        train(model_a, opt_a, [batch])
        schedule_a.step()
    saved = copy.deepcopy((model_a.state_dict(), opt_a.state_dict(), schedule_a.state_dict()))
    model_b = bn_net()
    opt_b = XSAM(model_b.parameters(), base=SGD, **settings)
    schedule_b = torch.optim.lr_scheduler.CosineAnnealingLR(opt_b, T_max=10)
    model_b.load_state_dict(saved[0])
    opt_b.load_state_dict(saved[1])
    schedule_b.load_state_dict(saved[2])
    for batch in data[4:]:
        train(model_b, opt_b, [batch])
        schedule_b.step()
    assert opt_b.base.param_groups[0]["lr"] == opt.base.param_groups[0]["lr"]

    for k, v in model.state_dict().items():
        assert torch.equal(v, model_b.state_dict()[k]), k
    assert opt_b.step_count == opt.step_count == 10
    assert torch.equal(opt_b.alpha, opt.alpha)
    assert opt_b.forward_passes == opt.forward_passes


@pytest.mark.parametrize("settings", [dict(), dict(steps=3), dict(adaptive=True)])
def test_sam_update_does_not_depend_on_when_the_angle_is_computed(settings):
    """alpha fixed at 1 updates with g_k whether or not the step forms the plane for the
    angle diagnostic; the angle appears on the steps that ask for it only."""
    data, weights, angle_steps = batches(7), {}, {}
    for every in (1, 3, None):
        model = bn_net()
        opt = XSAM(model.parameters(), base=SGD, **settings)
        angle_steps[every] = []
        for x, y in data:
            asked = every is not None and (opt.step_count + 1) % every == 0
            closure = BatchClosure(model, nn.functional.cross_entropy, x, y)
            if opt.step_and_report(closure, angle=asked).angle is not None:
                angle_steps[every].append(opt.step_count)
        weights[every] = model.state_dict()
    assert angle_steps == {1: [1, 2, 3, 4, 5, 6, 7], 3: [3, 6], None: []}
    for k, v in weights[1].items():
        assert torch.equal(v, weights[3][k]) and torch.equal(v, weights[None][k]), k


def test_configurations_that_need_the_plane_report_the_angle_every_step():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, alpha=0.5)
    for x, y in batches(3):
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
        assert 0.0 <= float(opt.report.angle) <= torch.pi


def test_lr_scheduler_attaches_to_the_optimizer():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train(model, opt, batches(1))
    schedule.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups is opt.base.param_groups


def test_bn_running_stats_update_on_the_first_pass_only():
    model = bn_net()
    x, y = batches(1)[0]
    reference = copy.deepcopy(model)
    reference.train()
    with torch.no_grad():
        reference(x)  # one clean pass: what the running stats must become
    opt = XSAM(model.parameters(), base=SGD, steps=3, search_every=1)
    closure = BatchClosure(model, nn.functional.cross_entropy, x, y)
    opt.step(closure)
    assert closure.calls == 3 + 1 + len(opt.alpha_grid)
    bn, ref_bn = model[1], reference[1]
    assert torch.equal(bn.running_mean, ref_bn.running_mean)
    assert torch.equal(bn.running_var, ref_bn.running_var)
    assert int(bn.num_batches_tracked) == 1


def test_frozen_bn_stats_restores_tracking_and_leaves_eval_alone():
    model = bn_net()
    with frozen_bn_stats(model):
        model(torch.randn(8, 4))
        assert not model[1].track_running_stats
    assert model[1].track_running_stats and int(model[1].num_batches_tracked) == 0


@pytest.mark.parametrize("name, cls", [("xsam", XSAM), ("gsam", GSAM), ("wsam", WSAM)])
def test_keyword_defaults_are_the_settings_the_yaml_states(name, cls):
    """The optimizer group's YAML and the class's keyword defaults state the same values (the
    YAML is what a run records; the defaults are what a drop-in user gets)."""
    stated = OmegaConf.load(REPO / "configs" / "optimizer" / f"{name}.yaml")
    defaults = {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    compared = [  # not search_every ('epoch' is the loop's) nor an interpolation (${lr})
        k
        for k in stated
        if k in defaults and k != "search_every" and not OmegaConf.is_interpolation(stated, k)
    ]
    assert len(compared) >= 4, compared
    for key in compared:
        value, default = stated[key], defaults[key]
        if type(default) in (int, float):  # YAML may spell 1e-12 as a string
            value = type(default)(float(value))
        assert value == default, f"{name}.yaml {key}={stated[key]!r}, class default {default!r}"
