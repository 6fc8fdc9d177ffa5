"""ASAM's scope, against a float64 oracle written from the ASAM authors' ascent step
(SamsungLabs/ASAM, asam.py): T = |w| + eta only on tensors whose name contains "weight"."""

from functools import partial

import pytest
import torch
from torch import nn

from xsam.optim import XSAM, BatchClosure

RHO, ETA, LR = 0.5, 0.01, 0.1


def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return model.double()


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=g).double(), torch.randint(0, 3, (16,), generator=g)


def loss_at(model, values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(batch()[0]), batch()[1])
    loss.backward()
    return loss, {n: p.grad.clone() for n, p in params.items()}


def oracle_step(model, weight_only: bool) -> dict[str, torch.Tensor]:
    """One ASAM step with plain SGD (no momentum, no decay), tensor by tensor, by name."""
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    _, g = loss_at(model, w0)
    scaled = {n: ("weight" in n or not weight_only) for n in w0}
    t_w = {n: w0[n].abs() + ETA if scaled[n] else torch.ones_like(w0[n]) for n in w0}
    norm = torch.sqrt(sum(((t_w[n] * g[n]) ** 2).sum() for n in w0))
    e_w = {n: t_w[n] ** 2 * g[n] * (RHO / (norm + 1e-12)) for n in w0}
    _, g_adv = loss_at(model, {n: w0[n] + e_w[n] for n in w0})
    return {n: w0[n] - LR * g_adv[n] for n in w0}


@pytest.mark.parametrize("scope", ["weight", "all"])
def test_asam_scope_matches_the_oracle(scope):
    expected = oracle_step(net(), weight_only=scope == "weight")
    model = net()
    opt = XSAM(
        model.named_parameters(),
        base=partial(torch.optim.SGD, lr=LR),
        rho=RHO,
        alpha=1.0,
        search_every=None,
        adaptive=True,
        eta=ETA,
        adaptive_scope=scope,
    )
    opt.step(BatchClosure(model, nn.functional.cross_entropy, *batch()))
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-10, atol=1e-12)
    other = oracle_step(net(), weight_only=scope != "weight")  # the scope matters here
    assert any(not torch.allclose(other[n], expected[n]) for n in expected)


def test_weight_scope_needs_names():
    with pytest.raises(ValueError, match="^adaptive_scope='weight' needs parameter names"):
        XSAM(net().parameters(), base=torch.optim.SGD, adaptive=True, adaptive_scope="weight")
    with pytest.raises(ValueError, match="^adaptive_scope must be"):
        XSAM(net().parameters(), base=torch.optim.SGD, adaptive=True, adaptive_scope="bias")
