"""Any closure drives every method: torch's zero-argument closure, with ``model=`` owning the
BatchNorm policy, follows the BatchClosure trajectory; wrong closures get clear errors."""

import copy
import warnings
from functools import partial

import pytest
import small_nets
import torch
from torch import nn

from xsam.optim import GSAM, WSAM, XSAM, BatchClosure

F64 = torch.float64
SGD = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
METHODS = {  # every configuration of the family, and the two baselines
    "sgd": (XSAM, dict(steps=0, rho=0.0)),
    "sam": (XSAM, dict(rho=0.1)),
    "msam": (XSAM, dict(rho=0.1, steps=3)),
    "sgdplus": (XSAM, dict(rho=0.1, alpha=0.0)),
    "xsam_static": (XSAM, dict(rho=0.1, alpha=0.5)),
    "xsam_dynamic": (XSAM, dict(rho=0.1, steps=2, search_every=2, alpha_delta=0.5)),
    "asam": (XSAM, dict(rho=0.1, adaptive=True)),
    "gsam": (GSAM, dict(rho_max=0.1, rho_min=0.05)),
    "wsam": (WSAM, dict(rho=0.1)),
}


bn_net = partial(small_nets.bn_net, dtype=F64)
batches = partial(small_nets.batches, dtype=F64)


def standard_closure(opt, model, x, y, set_to_none: bool = True):
    """torch's documented closure, as a user (or a framework) writes it."""

    def closure():
        opt.zero_grad(set_to_none=set_to_none)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def run(name: str, closure_kind: str, n_steps: int = 4):
    cls, settings = METHODS[name]
    model = bn_net()
    with_model = {} if closure_kind == "batch" else dict(model=model)
    opt = cls(model.parameters(), base=SGD, **settings, **with_model)
    losses, alphas = [], []
    for x, y in batches(n_steps):
        if closure_kind == "batch":
            closure = BatchClosure(model, nn.functional.cross_entropy, x, y)
        else:
            closure = standard_closure(opt, model, x, y, set_to_none=closure_kind == "standard")
        losses.append(opt.step(closure))
        alphas.append(opt.report.alpha)
    return model, opt, losses, alphas


@pytest.mark.parametrize("closure_kind", ["standard", "standard_zero_fill"])
@pytest.mark.parametrize("name", list(METHODS))
def test_standard_closure_follows_the_batch_closure_trajectory(name, closure_kind):
    """float64: weights, BatchNorm buffers, momentum, the losses at w0 and alpha (the search
    included) agree with BatchClosure's, whether the closure zeroes with None or with 0."""
    ref_model, ref_opt, ref_losses, ref_alphas = run(name, "batch")
    model, opt, losses, alphas = run(name, closure_kind)
    for key, ref in ref_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], ref, rtol=0, atol=1e-12, msg=key)
    for p, q in zip(opt.base.state.values(), ref_opt.base.state.values(), strict=True):
        torch.testing.assert_close(p["momentum_buffer"], q["momentum_buffer"], rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses), rtol=0, atol=1e-12)
    if ref_alphas[0] is not None:
        assert torch.equal(torch.stack(alphas), torch.stack(ref_alphas))
    assert int(model[1].num_batches_tracked) == 4  # one BN update per step


def test_dynamic_search_with_a_standard_closure_runs_its_backward_and_says_so():
    _, opt, _, _ = run("xsam_dynamic", "standard", n_steps=1)
    _, ref_opt, _, _ = run("xsam_dynamic", "batch", n_steps=1)
    assert opt.forward_passes == ref_opt.forward_passes == 3 + 5  # k + 1 passes, 5 grid points
    assert ref_opt.backward_passes == 3
    assert opt.backward_passes == 3 + 5  # the closure cannot skip its backward


def test_without_model_a_standard_closure_updates_bn_on_every_pass():
    """What ``model=`` is for: the optimizer cannot know the model otherwise."""
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, rho=0.1)
    x, y = batches(1)[0]
    opt.step(standard_closure(opt, model, x, y))
    assert int(model[1].num_batches_tracked) == 2


def test_model_must_be_a_module():
    with pytest.raises(ValueError, match="^model must be an nn.Module"):
        XSAM(bn_net().parameters(), base=SGD, model="net")


@pytest.mark.parametrize(
    "returned, said",
    [(None, "NoneType"), (2.5, "float"), (torch.ones(3), r"shape \(3,\)")],
)
def test_a_closure_breaking_the_contract_is_named(returned, said):
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)

    def my_closure():
        model(torch.randn(4, 4, dtype=F64)).sum().backward()
        return returned

    with pytest.raises(ValueError, match=rf"scalar loss tensor, got {said} from .*my_closure"):
        opt.step(my_closure)


def test_a_closure_without_backward_is_told_to_call_it():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    with pytest.raises(ValueError, match=r"must call loss.backward\(\)"):
        opt.step(lambda: model(torch.randn(4, 4, dtype=F64)).sum())


@pytest.mark.parametrize("settings", [dict(), dict(steps=2), dict(alpha=0.5)])
def test_a_gradient_missing_on_a_later_pass_names_the_parameter(settings):
    torch.manual_seed(0)
    model = nn.ModuleDict({"body": nn.Linear(4, 3), "head": nn.Linear(3, 1)}).to(F64)
    opt = XSAM(model.parameters(), base=SGD, model=model, **settings)
    x, calls = torch.randn(8, 4, dtype=F64), []

    def closure():  # uses the head on the first pass only
        calls.append(1)
        out = model["body"](x)
        loss = (model["head"](out) if len(calls) == 1 else out).square().mean()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"parameter 'head.weight' had a gradient on the step's"):
        opt.step(closure)


def test_without_model_the_parameter_is_named_by_its_place():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(3, dtype=F64)), nn.Parameter(torch.randn(2, dtype=F64))
    opt = XSAM([a, b], base=SGD)
    calls = []

    def closure():
        calls.append(1)
        loss = a.square().sum() + (b.square().sum() if len(calls) == 1 else 0)
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\] \(shape \(2,\)\)"):
        opt.step(closure)


def test_gradients_present_before_the_step_warn_once_naming_the_fix():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, model=model)
    data = batches(3)
    x, y = data[0]
    nn.functional.cross_entropy(model(x), y).backward()  # e.g. an accumulation micro-batch
    with pytest.warns(UserWarning, match="MicroBatchClosure"):
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
    nn.functional.cross_entropy(model(x), y).backward()  # in place into the step's own .grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        opt.step(BatchClosure(model, nn.functional.cross_entropy, *data[1]))
    assert opt._ledger.warned


def test_the_warning_points_at_the_callers_line():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, model=model)
    x, y = batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    with pytest.warns(UserWarning, match="MicroBatchClosure") as caught:
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
    assert caught[0].filename == __file__


def test_zeroing_in_place_between_steps_is_not_taken_for_accumulation():
    """opt.zero_grad(set_to_none=False) writes zeros into the step's own gradients."""
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x, y in batches(3):
            opt.zero_grad(set_to_none=False)
            opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))


@pytest.mark.parametrize("name", ["sam", "xsam_dynamic", "wsam", "sgd"])
def test_an_ordinary_loop_never_warns(name):
    """The update gradients a step leaves in .grad are its own, not pending ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(name, "batch", n_steps=3)
        run(name, "standard", n_steps=3)


def test_a_step_without_closure_is_refused_unless_every_lr_is_zero():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    with pytest.raises(ValueError, match="step needs a closure"):
        opt.step()
    before = copy.deepcopy(model.state_dict())
    for group in opt.param_groups:
        group["lr"] = 0.0
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    assert opt.step() is None  # the base's state initialisation (what DCP does)
    assert opt.step_count == 0 and len(opt.state) == len(list(model.parameters()))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_parameter_without_gradient_on_the_first_pass_takes_no_part():
    """Its gradient from a later pass is dropped: the base optimizer does not step it."""
    a, b = nn.Parameter(torch.ones(3, dtype=F64)), nn.Parameter(torch.ones(2, dtype=F64))
    opt = XSAM([a, b], base=partial(torch.optim.SGD, lr=0.1), rho=0.1)
    calls = []

    def closure():
        calls.append(1)
        loss = a.square().sum() + (b.square().sum() if len(calls) > 1 else 0)
        loss.backward()
        return loss

    opt.step(closure)
    assert b.grad is None and torch.equal(b.detach(), torch.ones(2, dtype=F64))
    assert not torch.equal(a.detach(), torch.ones(3, dtype=F64))
