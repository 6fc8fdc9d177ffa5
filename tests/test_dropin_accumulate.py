"""Micro-batch accumulation is the whole batch's step; m-sharpness is a per-micro-batch step
with averaged update gradients (float64, against one big batch and a plain oracle)."""

import math
from functools import partial

import pytest
import torch
from torch import nn
from torch.func import functional_call

from xsam.optim import GSAM, WSAM, XSAM, BatchClosure, MicroBatchClosure

F64 = torch.float64
LR, MOMENTUM, WD = 0.1, 0.9, 1e-3
SGD = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM, weight_decay=WD)
SIZES = [5, 7, 4]  # unequal micro-batches: the weights n_j / N matter
METHODS = {
    "sgd": (XSAM, dict(steps=0, rho=0.0)),
    "sam": (XSAM, dict(rho=0.2)),
    "msam": (XSAM, dict(rho=0.2, steps=3)),
    "xsam_static": (XSAM, dict(rho=0.2, alpha=0.5)),
    "xsam_dynamic": (XSAM, dict(rho=0.2, search_every=2, alpha_delta=0.25)),
    "asam": (XSAM, dict(rho=0.2, adaptive=True)),
    "gsam": (GSAM, dict(rho_max=0.2, rho_min=0.1)),
    "wsam": (WSAM, dict(rho=0.2)),
}
loss_fn = nn.functional.cross_entropy


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(F64)


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    size = sum(SIZES)
    return [
        (torch.randn(size, 4, generator=g, dtype=F64), torch.randint(0, 3, (size,), generator=g))
        for _ in range(n)
    ]


def split(x, y) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(x.split(SIZES), y.split(SIZES), strict=True))


@pytest.mark.parametrize("name", list(METHODS))
def test_accumulation_is_the_whole_batch_step(name):
    cls, settings = METHODS[name]
    models = {}
    for kind in ("whole", "micro"):
        model = models[kind] = mlp()
        opt = cls(model.parameters(), base=SGD, **settings)
        for x, y in batches(3):
            if kind == "whole":
                closure = BatchClosure(model, loss_fn, x, y)
            else:
                closure = MicroBatchClosure(model, loss_fn, split(x, y))
            loss = opt.step(closure)
            torch.testing.assert_close(loss, loss_fn(closure.logits, y), rtol=0, atol=1e-12)
    for (key, a), b in zip(
        models["whole"].state_dict().items(), models["micro"].parameters(), strict=True
    ):
        torch.testing.assert_close(b.detach(), a, rtol=0, atol=1e-12, msg=key)


def oracle_update(model, micro, *, rho, alpha, steps, eps=1e-12) -> list[torch.Tensor]:
    """sum_j w_j u_j, u_j = ||g_k^j|| d_j(alpha) from micro-batch j's own ascent and plane
    (ALGORITHM.md, steps 1-4 and 6, on L_j), written with plain tensors and autograd."""
    names = [n for n, _ in model.named_parameters()]
    w0 = [p.detach().clone() for p in model.parameters()]

    def grad(theta, x, y):
        theta = [t.clone().requires_grad_() for t in theta]
        loss = loss_fn(functional_call(model, dict(zip(names, theta, strict=True)), (x,)), y)
        return list(torch.autograd.grad(loss, theta))

    def norm(v):
        return math.sqrt(sum(float((t * t).sum()) for t in v))

    n_total, update = sum(len(y) for _, y in micro), [torch.zeros_like(w) for w in w0]
    for x, y in micro:
        theta = list(w0)
        for _ in range(steps):
            g = grad(theta, x, y)
            theta = [
                t + (rho / steps) * gi / (norm(g) + eps) for t, gi in zip(theta, g, strict=True)
            ]
        g_k = grad(theta, x, y)
        delta = [t - w for t, w in zip(theta, w0, strict=True)]
        v0 = [d / (norm(delta) + eps) for d in delta]
        v1 = [g / (norm(g_k) + eps) for g in g_k]
        t = math.acos(
            max(-1.0, min(1.0, sum(float((a * b).sum()) for a, b in zip(v0, v1, strict=True))))
        )
        c0, c1 = math.sin((1 - alpha) * t) / math.sin(t), math.sin(alpha * t) / math.sin(t)
        for u, a, b in zip(update, v0, v1, strict=True):
            u += len(y) / n_total * norm(g_k) * (c0 * a + c1 * b)
    return update


@pytest.mark.parametrize("settings", [dict(alpha=1.0), dict(alpha=0.5), dict(steps=2, alpha=0.0)])
def test_m_sharpness_against_the_oracle(settings):
    settings = dict(rho=0.2, steps=1) | settings
    model, ref_model = mlp(), mlp()
    opt = XSAM(model.parameters(), base=SGD, **settings)
    ref_base = SGD(ref_model.parameters())
    for x, y in batches(3):
        for p, q in zip(ref_model.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-12)
        update = oracle_update(ref_model, split(x, y), **settings)
        for p, u in zip(ref_model.parameters(), update, strict=True):
            p.grad = u
        ref_base.step()
        with torch.no_grad():
            loss_at_w0 = loss_fn(model(x), y)
        loss = opt.step(MicroBatchClosure(model, loss_fn, split(x, y), m_sharpness=True))
        torch.testing.assert_close(loss, loss_at_w0, rtol=0, atol=1e-12)
    for p, q in zip(ref_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "sam", "msam", "xsam_static", "asam"])
def test_m_sharpness_with_one_micro_batch_is_the_plain_step(name):
    cls, settings = METHODS[name]
    models = []
    for m_sharpness in (False, True):
        model = mlp()
        opt = cls(model.parameters(), base=SGD, **settings)
        for x, y in batches(3):
            if m_sharpness:
                opt.step(MicroBatchClosure(model, loss_fn, [(x, y)], m_sharpness=True))
            else:
                opt.step(BatchClosure(model, loss_fn, x, y))
        models.append(model)
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        assert torch.equal(p, q)


def test_m_sharpness_differs_from_accumulation():
    """The point of the option: per-micro-batch ascents are not the whole batch's ascent."""
    out = []
    for m_sharpness in (False, True):
        model = mlp()
        opt = XSAM(model.parameters(), base=SGD, rho=0.2)
        x, y = batches(1)[0]
        opt.step(MicroBatchClosure(model, loss_fn, split(x, y), m_sharpness=m_sharpness))
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert (out[0] - out[1]).abs().max() > 1e-6


@pytest.mark.parametrize(
    "cls, settings", [(XSAM, dict(search_every=1)), (GSAM, dict()), (WSAM, dict())]
)
def test_m_sharpness_refuses_what_needs_one_batch(cls, settings):
    model = mlp()
    opt = cls(model.parameters(), base=SGD, **settings)
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match="^m_sharpness needs one alpha"):
        opt.step(MicroBatchClosure(model, loss_fn, split(x, y), m_sharpness=True))


@pytest.mark.parametrize("m_sharpness", [False, True])
def test_bn_running_stats_update_once_per_micro_batch_per_step(m_sharpness):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    opt = XSAM(model.parameters(), base=SGD, rho=0.2, steps=2)
    for x, y in batches(2):
        micro = split(x.float(), y)
        opt.step(MicroBatchClosure(model, loss_fn, micro, m_sharpness=m_sharpness))
    assert int(model[1].num_batches_tracked) == 2 * len(SIZES)


def test_no_micro_batches_is_refused():
    with pytest.raises(ValueError, match="^micro_batches must hold"):
        MicroBatchClosure(mlp(), loss_fn, [])
