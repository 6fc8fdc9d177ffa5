"""fp16 with torch.amp.GradScaler (CPU): one scale per step, every pass unscaled, an overflow
in any pass skips the whole step and lowers the scale, no host sync of our own."""

import copy
from functools import partial

import pytest
import small_nets
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from xsam.optim import GSAM, WSAM, XSAM, BatchClosure

SETTINGS = {
    "sam": (XSAM, dict(rho=0.1)),
    "msam": (XSAM, dict(rho=0.1, steps=3)),
    "xsam_static": (XSAM, dict(rho=0.1, alpha=0.5)),
    "xsam_dynamic": (XSAM, dict(rho=0.1, search_every=2, alpha_delta=0.5)),
    "gsam": (GSAM, dict(rho_max=0.1, rho_min=0.05)),
    "wsam": (WSAM, dict(rho=0.1)),
}


bn_net = partial(small_nets.bn_net, width=16)
batches = partial(small_nets.batches, size=32)


def scaler(scale: float = 2.0**12) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", init_scale=scale, growth_interval=10**6)


def sgd(fused: bool = False):
    return partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3, fused=fused)


def scaled_closure(opt, model, x, y, grad_scaler, autocast: bool = False, spoil=None):
    """The closure a user writes for fp16; ``spoil(pass_index)`` may overflow a gradient."""
    calls = []

    def closure():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            loss = nn.functional.cross_entropy(model(x), y)
        grad_scaler.scale(loss).backward()
        if spoil is not None and spoil == len(calls):
            next(model.parameters()).grad[0, 0] = float("inf")  # an fp16 overflow
        calls.append(1)
        return loss

    return closure


@pytest.mark.parametrize("name", list(SETTINGS))
def test_a_power_of_two_scale_gives_the_unscaled_trajectory_exactly(name):
    """Scaling by 2^12 and unscaling every pass is exact in float32, so the trajectory is
    bit-identical to the one without a scaler: norms, plane and search saw true gradients."""
    cls, settings = SETTINGS[name]
    weights = []
    for use_scaler in (False, True):
        model = bn_net()
        grad_scaler = scaler() if use_scaler else None
        opt = cls(model.parameters(), base=sgd(), model=model, grad_scaler=grad_scaler, **settings)
        for x, y in batches(4):
            if use_scaler:
                opt.step(scaled_closure(opt, model, x, y, grad_scaler))
                grad_scaler.update()
            else:
                opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
        weights.append(model.state_dict())
        assert int(opt.skipped_steps) == 0
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    "name, spoiled_pass", [("sam", 0), ("sam", 1), ("msam", 2), ("xsam_dynamic", 1), ("wsam", 1)]
)
def test_an_overflow_in_any_pass_skips_the_step_and_lowers_the_scale(name, spoiled_pass, fused):
    cls, settings = SETTINGS[name]
    model, grad_scaler = bn_net(), scaler()
    opt = cls(model.parameters(), base=sgd(fused), model=model, grad_scaler=grad_scaler, **settings)
    data = batches(3)
    for x, y in data[:2]:
        opt.step(scaled_closure(opt, model, x, y, grad_scaler))
        grad_scaler.update()
    weights = copy.deepcopy({k: v for k, v in model.state_dict().items() if "running" not in k})
    momentum = [s["momentum_buffer"].clone() for s in opt.base.state.values()]
    loss = opt.step(scaled_closure(opt, model, *data[2], grad_scaler, spoil=spoiled_pass))
    grad_scaler.update()
    assert torch.isfinite(loss) and not bool(opt.report.finite)
    assert int(opt.skipped_steps) == 1
    assert grad_scaler.get_scale() == 2.0**11  # backed off once, by the scaler's update()
    for key, value in weights.items():
        if "num_batches" not in key:
            assert torch.equal(model.state_dict()[key], value), key  # w0, exactly
    for before, state in zip(momentum, opt.base.state.values(), strict=True):
        assert torch.equal(before, state["momentum_buffer"])  # the base did not step
    opt.step(scaled_closure(opt, model, *data[0], grad_scaler))  # training goes on
    grad_scaler.update()
    assert bool(opt.report.finite) and grad_scaler.get_scale() == 2.0**11


def test_fp16_autocast_trains_and_the_scale_grows_back():
    model = bn_net()
    grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=2)
    opt = XSAM(model.parameters(), base=sgd(), model=model, grad_scaler=grad_scaler,
               **SETTINGS["xsam_dynamic"][1])  # fmt: skip
    losses = []
    for x, y in batches(4):
        losses.append(opt.step(scaled_closure(opt, model, x, y, grad_scaler, autocast=True)))
        grad_scaler.update()
        assert bool(opt.report.finite)
        assert opt.report.search_losses is None or bool(opt.report.search_losses.isfinite().all())
    assert grad_scaler.get_scale() == 2.0**10  # grew twice: no pass overflowed
    assert int(model[1].num_batches_tracked) == 4


def test_batch_closure_scales_for_the_scaler():
    model, grad_scaler = bn_net(), scaler()
    opt = XSAM(model.parameters(), base=sgd(), grad_scaler=grad_scaler, alpha=0.5)
    ref_model = bn_net()
    ref = XSAM(ref_model.parameters(), base=sgd(), alpha=0.5)
    for x, y in batches(3):
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y, grad_scaler=grad_scaler))
        grad_scaler.update()
        ref.step(BatchClosure(ref_model, nn.functional.cross_entropy, x, y))
    for key, value in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_forgetting_update_is_named():
    model, grad_scaler = bn_net(), scaler()
    opt = XSAM(model.parameters(), base=sgd(), grad_scaler=grad_scaler)
    x, y = batches(1)[0]
    opt.step(scaled_closure(opt, model, x, y, grad_scaler))
    with pytest.raises(RuntimeError, match=r"call scaler.update\(\) after every opt.step"):
        opt.step(scaled_closure(opt, model, x, y, grad_scaler))


def test_grad_scaler_must_be_a_grad_scaler():
    with pytest.raises(ValueError, match="^grad_scaler must be a torch.amp.GradScaler"):
        XSAM(bn_net().parameters(), base=sgd(), grad_scaler=object())


class HostSyncs(TorchFunctionMode):
    """Counts the tensor calls that read a value to the host."""

    READS = {"item", "__bool__", "__float__", "__int__", "tolist", "__index__"}

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.READS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["sam", "msam", "xsam_static"])
def test_the_fp16_step_reads_nothing_to_the_host(name):
    """Over a fused base (which skips on the device), a step with a scaler reads no value
    to the host: no per-pass sync (GradScaler's unscale_ syncs nothing either)."""
    cls, settings = SETTINGS[name]
    model, grad_scaler = bn_net(), scaler()
    opt = cls(model.parameters(), base=sgd(fused=True), grad_scaler=grad_scaler, **settings)
    data = batches(2)
    opt.step(scaled_closure(opt, model, *data[0], grad_scaler))  # the base creates its state
    grad_scaler.update()
    closure = scaled_closure(opt, model, *data[1], grad_scaler)
    with HostSyncs() as syncs:
        opt.step(closure)
    assert syncs.reads == []


def test_the_host_sync_check_sees_a_read():
    """The foreach base cannot skip on the device: its step reads the finite flag once."""
    model, grad_scaler = bn_net(), scaler()
    opt = XSAM(model.parameters(), base=sgd(fused=False), grad_scaler=grad_scaler)
    x, y = batches(1)[0]
    with HostSyncs() as syncs:
        opt.step(scaled_closure(opt, model, x, y, grad_scaler))
    assert syncs.reads == ["__bool__"]
