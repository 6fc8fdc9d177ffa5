"""A non-finite *first* step over a fused base leaves no state behind (torch allocates the
fused SGD momentum buffers uninitialised before it skips)."""

import copy
from functools import partial

import pytest
import torch
from torch import nn

from xsam.optim import XSAM, BatchClosure

FUSED_SGD = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3, fused=True)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def batch(poison: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    if poison:
        x[0, 0] = float("nan")
    return x, y


def step(model, opt, poison: bool = False) -> None:
    opt.step(BatchClosure(model, nn.functional.cross_entropy, *batch(poison)))


@pytest.mark.parametrize("settings", [dict(steps=0, rho=0.0), dict(), dict(search_every=1)])
def test_non_finite_first_step_over_fused_sgd_leaves_momentum_untouched(settings):
    model, fresh = net(), net()
    opt = XSAM(model.parameters(), base=FUSED_SGD, **settings)
    reference = XSAM(fresh.parameters(), base=FUSED_SGD, **settings)
    weights = copy.deepcopy(model.state_dict())
    step(model, opt, poison=True)
    assert not opt.report.finite and int(opt.skipped_steps) == 1
    assert not opt.base.state  # no momentum buffer was created, garbage or not
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key])
    for _ in range(3):  # the next good steps equal a fresh optimizer's first steps
        step(model, opt)
        step(fresh, reference)
        for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
            assert torch.equal(a, b)
    buffers = [s["momentum_buffer"] for s in opt.base.state.values()]
    assert buffers and all(torch.isfinite(b).all() for b in buffers)
