"""XSAM against the float64 reference in `oracle.py`, step by step.

Every trajectory starts from copies of one model and sees the same batches; after each step
every parameter, BatchNorm buffer and base-optimizer state tensor must agree with the
reference to 1e-10. The reductions of the family (alpha = 1 is SAM, steps = 0 is the base
optimizer, k = 1 puts v0 on g_0) are checked against hand computations.
"""

import copy
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from oracle import (
    ReferenceXSAM,
    alpha_grid,
    angle,
    direction,
    dot,
    norm,
    suite_settings,
    textbook_sam_step,
    unit,
)
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

from xsam.optim import XSAM, BatchClosure

F64 = torch.float64
TOL = 1e-10
STEPS = 10

SGD_MOMENTUM = (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-3))
BASES = {
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum_wd": SGD_MOMENTUM,
    "sgd_nesterov_wd": (
        torch.optim.SGD,
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-3),
    ),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.05)),
}
DYNAMIC = dict(rho=0.2, steps=2, search_every=3, rho_max=0.5)
METHODS = {
    "sam": dict(rho=0.1, steps=1, alpha=1.0),
    "msam_k3": dict(rho=0.1, steps=3, alpha=1.0),
    "sgdplus": dict(rho=0.1, steps=1, alpha=0.0),
    "xsam_alpha_0.5": dict(rho=0.1, steps=1, alpha=0.5),
    "xsam_alpha_1.5": dict(rho=0.1, steps=1, alpha=1.5),
    "xsam_k2_alpha_1.5": dict(rho=0.2, steps=2, alpha=1.5),
    "xsam_dynamic": dict(rho=1.0, steps=1, search_every=4, rho_max=3.0),
    "asam": dict(rho=0.5, steps=1, alpha=1.0, adaptive=True),
    "asam_k2": dict(rho=0.5, steps=2, alpha=1.0, adaptive=True, eta=0.05),
    "xsam_asam_dynamic": dict(rho=0.5, steps=2, adaptive=True, search_every=4, rho_max=2.0),
}


def mlp(dtype: torch.dtype = F64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).to(dtype)


def bn_net(dtype: torch.dtype = F64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8),
        nn.Tanh(), nn.Linear(8, 4),
    ).to(dtype)  # fmt: skip


def batches(n: int, shape: tuple[int, ...] = (6,), dtype: torch.dtype = F64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, *shape, generator=g, dtype=dtype), torch.randint(0, 4, (8,), generator=g))
        for _ in range(n)
    ]


def all_params(model: nn.Module):
    return model.parameters()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def batch_loss(model, x, y) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def grads_at(model, x, y) -> list[torch.Tensor]:
    return list(torch.autograd.grad(batch_loss(model, x, y), list(model.parameters())))


class CountingClosure:
    """Records (backward, grad enabled) for every call, then calls the wrapped closure."""

    def __init__(self, closure):
        self.closure, self.calls = closure, []

    def __call__(self, backward: bool = True):
        self.calls.append((backward, torch.is_grad_enabled()))
        return self.closure(backward=backward)


class Pair:
    """XSAM and the reference, each on its own copy of `model`, stepped on the same batches."""

    def __init__(self, model, settings, base=SGD_MOMENTUM, groups=all_params, loss_fn=None):
        self.model, self.ref_model = copy.deepcopy(model), copy.deepcopy(model)
        base_cls, base_kw = base
        settings = suite_settings(**settings)  # both given every setting explicitly
        self.opt = XSAM(groups(self.model), base=partial(base_cls, **base_kw), **settings)
        ref_base = base_cls(groups(self.ref_model), **base_kw)
        self.ref = ReferenceXSAM(self.ref_model, ref_base, **settings)
        self.loss_fn = loss_fn or F.cross_entropy

    def step(self, x, y):
        """One step of both; asserts equal states; returns (loss, diagnostics, record)."""
        report = self.opt.step_and_report(BatchClosure(self.model, self.loss_fn, x, y), angle=True)
        rec = self.ref.step(lambda: self.loss_fn(self.ref_model(x), y))
        self.assert_same_state()
        diag = {k: v.clone() for k, v in vars(report).items() if v is not None}
        return report.loss_0, diag, rec

    def assert_same_state(self):
        pairs = zip(self.model.named_parameters(), self.ref_model.parameters(), strict=True)
        for (name, p), q in pairs:
            assert max_diff(p, q) <= TOL, f"parameter {name}"
            for key, ref_value in self.ref.base.state[q].items():
                assert max_diff(self.opt.base.state[p][key], ref_value) <= TOL, f"{key} of {name}"
        pairs = zip(self.model.named_buffers(), self.ref_model.buffers(), strict=True)
        for (name, b), c in pairs:
            assert max_diff(b, c) <= TOL, f"buffer {name}"


def assert_diagnostics_match(loss, diag, rec, angle_tol=TOL):
    """angle_tol: near t = 0, one rounding of <v0, v1> moves arccos by ~1e-8."""
    assert abs(float(loss) - rec["loss_0"]) <= TOL
    for key in ("loss_0", "loss_k", "grad_norm_0", "grad_norm_k", "alpha"):
        assert abs(float(diag[key]) - rec[key]) <= TOL, key
    assert abs(float(diag["angle"]) - rec["angle"]) <= angle_tol
    assert ("search_losses" in diag) == rec["searched"]
    if rec["searched"]:
        assert diag["search_alphas"].tolist() == pytest.approx(rec["search_alphas"], abs=1e-12)
        assert diag["search_losses"].tolist() == pytest.approx(rec["search_losses"], abs=TOL)


# --- the family against the reference ---------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_method_matches_oracle(method):
    pair = Pair(mlp(), METHODS[method])
    for x, y in batches(STEPS):
        assert_diagnostics_match(*pair.step(x, y))


@pytest.mark.parametrize("method", ["xsam_dynamic", "xsam_asam_dynamic"])
def test_dynamic_alpha_is_searched_every_n_steps(method):
    pair = Pair(mlp(), METHODS[method])  # search_every=4
    searched, alphas = [], []
    for step, (x, y) in enumerate(batches(12)):
        loss, diag, rec = pair.step(x, y)
        assert_diagnostics_match(loss, diag, rec)
        assert float(diag["alpha"]) == pytest.approx(rec["alpha"], abs=1e-12)
        if "search_losses" in diag:
            searched.append(step)
            assert diag["search_losses"].shape == (21,)
        alphas.append(rec["alpha"])
    assert searched == [0, 4, 8]
    assert alphas == [alphas[0]] * 4 + [alphas[4]] * 4 + [alphas[8]] * 4  # kept in between
    assert len(set(alphas)) > 1  # these settings pick different alphas: a stale one would show


@pytest.mark.parametrize("base", BASES)
def test_base_optimizer_matches_oracle(base):
    pair = Pair(mlp(), DYNAMIC, base=BASES[base])
    for x, y in batches(STEPS):
        assert_diagnostics_match(*pair.step(x, y))
    assert bool(pair.opt.base.state) == (base != "sgd")  # momentum / Adam state was compared


def test_param_groups_with_different_lr():
    def groups(model):
        return [
            {"params": model[0].parameters(), "lr": 0.3},
            {"params": model[2].parameters(), "lr": 0.01, "weight_decay": 0.0},
        ]

    pair = Pair(mlp(), DYNAMIC, groups=groups)
    for x, y in batches(STEPS):
        assert_diagnostics_match(*pair.step(x, y))


def freeze_first_bias(model: nn.Module) -> nn.Parameter:
    model[0].bias.requires_grad_(False)
    return model[0].bias


def add_unused_parameter(model: nn.Module) -> nn.Parameter:
    model.register_parameter("unused", nn.Parameter(torch.randn(3, dtype=F64)))
    return model.unused


@pytest.mark.parametrize("exclude", [freeze_first_bias, add_unused_parameter])
def test_params_without_grad_are_left_out(exclude):
    """Frozen and unused parameters: not in the norms, no update (weight decay would move them)."""
    model = mlp()
    excluded = exclude(model).detach().clone()
    decaying = (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1))
    pair = Pair(model, DYNAMIC, base=decaying)
    for x, y in batches(STEPS):
        assert_diagnostics_match(*pair.step(x, y))
    name = "0.bias" if exclude is freeze_first_bias else "unused"
    assert torch.equal(dict(pair.model.named_parameters())[name], excluded)


@pytest.mark.parametrize("method", ["sam", "xsam_asam_dynamic"])
def test_batchnorm_stats_come_from_the_first_pass(method):
    pair = Pair(bn_net(), METHODS[method])
    for step, (x, y) in enumerate(batches(STEPS, shape=(2, 5, 5))):
        assert_diagnostics_match(*pair.step(x, y))  # running_mean, running_var compared there
        counts = [b for n, b in pair.model.named_buffers() if n.endswith("num_batches_tracked")]
        assert [int(c) for c in counts] == [step + 1, step + 1]


def test_lr_scheduler_on_xsam_drives_the_base_lr():
    pair = Pair(mlp(), METHODS["xsam_dynamic"])
    schedule = CosineAnnealingLR(pair.opt, T_max=STEPS)
    ref_schedule = CosineAnnealingLR(pair.ref.base, T_max=STEPS)
    lrs = []
    for x, y in batches(STEPS):
        assert_diagnostics_match(*pair.step(x, y))
        schedule.step()
        ref_schedule.step()
        lrs.append(pair.opt.base.param_groups[0]["lr"])
        assert lrs[-1] == pair.ref.base.param_groups[0]["lr"]
    assert len(set(lrs)) == STEPS  # the schedule really moved the lr


# --- reductions ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", [mlp, bn_net])
@pytest.mark.parametrize("base", ["sgd_nesterov_wd", "adamw"])
def test_no_ascent_is_the_base_optimizer_exactly(model, base):
    shape = (6,) if model is mlp else (2, 5, 5)
    net, bare_net = model(), model()
    base_cls, base_kw = BASES[base]
    opt = XSAM(net.parameters(), base=partial(base_cls, **base_kw), rho=0.0, steps=0)
    bare = base_cls(bare_net.parameters(), **base_kw)
    for x, y in batches(STEPS, shape=shape):
        closure = CountingClosure(BatchClosure(net, F.cross_entropy, x, y))
        loss = opt.step(closure)
        bare.zero_grad(set_to_none=True)
        bare_loss = F.cross_entropy(bare_net(x), y)
        bare_loss.backward()
        bare.step()
        assert torch.equal(loss, bare_loss.detach()) and len(closure.calls) == 1
        for (name, a), b in zip(
            net.state_dict().items(), bare_net.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
        for key, value in bare.state[next(bare_net.parameters())].items():
            assert torch.equal(opt.base.state[next(net.parameters())][key], value), key


@pytest.mark.parametrize("k", [1, 3])
def test_xsam_alpha_one_is_sam(k):
    """alpha = 1 against (multi-step) SAM written without the arc: update gradient g_k."""
    net, sam_net = mlp(), mlp()
    base_cls, base_kw = SGD_MOMENTUM
    opt = XSAM(net.parameters(), base=partial(base_cls, **base_kw), rho=0.2, steps=k, alpha=1.0)
    sam_params = list(sam_net.parameters())
    sam_base = base_cls(sam_params, **base_kw)
    for x, y in batches(5):
        loss = opt.step(BatchClosure(net, F.cross_entropy, x, y))
        sam_loss = textbook_sam_step(
            sam_params, sam_base, partial(batch_loss, sam_net, x, y), rho=0.2, steps=k
        )
        assert float(loss) == pytest.approx(sam_loss, abs=TOL)
        for p, q in zip(net.parameters(), sam_params, strict=True):
            assert max_diff(p, q) <= TOL


def test_k1_v0_is_normalized_g0_and_sgdplus_update():
    """SGD+ by hand: one step of plain SGD(lr=1) moves theta0 by -||g_1|| * g_0 / ||g_0||."""
    rho = 0.3
    hand, net, ref_net = mlp(), mlp(), mlp()
    x, y = batches(1)[0]
    theta0 = [p.detach().clone() for p in hand.parameters()]
    g_0 = grads_at(hand, x, y)
    with torch.no_grad():
        for p, g in zip(hand.parameters(), g_0, strict=True):
            p.add_(rho * g / norm(g_0))
    g_1 = grads_at(hand, x, y)
    expected = [w - norm(g_1) * g / norm(g_0) for w, g in zip(theta0, g_0, strict=True)]

    opt = XSAM(net.parameters(), base=partial(torch.optim.SGD, lr=1.0), rho=rho, alpha=0.0)
    opt.step(BatchClosure(net, F.cross_entropy, x, y))
    for p, e in zip(net.parameters(), expected, strict=True):
        assert max_diff(p, e) <= TOL
    t = math.acos(
        sum(float((a * b).sum()) for a, b in zip(g_0, g_1, strict=True)) / norm(g_0) / norm(g_1)
    )
    assert float(opt.report.angle) == pytest.approx(t, abs=TOL)

    ref_base = torch.optim.SGD(ref_net.parameters(), lr=1.0)
    ref = ReferenceXSAM(ref_net, ref_base, **suite_settings(rho=rho, alpha=0))
    v0 = ref.step(partial(batch_loss, ref_net, x, y))["v0"]
    for a, g in zip(v0, g_0, strict=True):
        assert max_diff(a, g / norm(g_0)) <= 1e-12


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 1.7, 2.0])
def test_direction_is_the_unit_vector_at_angle_alpha_t(alpha):
    """The reference's d(alpha) = cos(alpha t) v0 + sin(alpha t) w, (v0, w) a basis of the plane."""
    g = torch.Generator().manual_seed(0)

    def random_unit():
        return unit(
            [torch.randn(5, 3, generator=g, dtype=F64), torch.randn(4, generator=g, dtype=F64)], 0.0
        )

    v0, v1 = random_unit(), random_unit()
    t = angle(v0, v1)
    # w: the part of v1 normal to v0, so (v0, w) is an orthonormal basis of the plane
    w = unit([b - dot(v0, v1) * a for a, b in zip(v0, v1, strict=True)], 0.0)
    d = direction(v0, v1, alpha, t)
    assert norm(d) == pytest.approx(1.0, abs=1e-12)
    assert dot(d, v0) == pytest.approx(math.cos(alpha * t), abs=1e-12)
    assert dot(d, w) == pytest.approx(math.sin(alpha * t), abs=1e-12)
    fallback = direction(v0, v0, alpha, 0.0)  # sin t = 0: the midpoint (v0 + v0) / 2
    assert all(torch.equal(a, b) for a, b in zip(fallback, v0, strict=True))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.5])
def test_update_has_length_grad_norm_k_at_angle_alpha_t_from_v0(alpha):
    """With SGD(lr=1) the step is -||g_k|| d(alpha); check its length and angle directly."""
    settings = dict(rho=0.3, steps=2, alpha=alpha, eps=0.0)  # eps = 0: v0, v1 exactly unit
    pair = Pair(mlp(), settings, base=(torch.optim.SGD, dict(lr=1.0)))
    theta0 = [p.detach().clone() for p in pair.model.parameters()]
    _, diag, rec = pair.step(*batches(1)[0])
    update = [w - p.detach() for w, p in zip(theta0, pair.model.parameters(), strict=True)]
    assert norm(update) == pytest.approx(float(diag["grad_norm_k"]), rel=1e-10)
    assert rec["angle"] > 0.05  # a real arc, so a wrong alpha would show
    cos = dot(unit(update, 0.0), rec["v0"])
    assert cos == pytest.approx(math.cos(alpha * float(diag["angle"])), abs=1e-12)


def linear_model() -> nn.Module:
    """loss = <w, c> with w = 0, c = 1/2: g_k = g_0, so v0 and v1 are exactly parallel."""
    model = nn.Linear(4, 1, bias=False).to(F64)
    nn.init.zeros_(model.weight)
    return model


def linear_batch():
    return torch.full((1, 4), 0.5, dtype=F64), torch.zeros(1)


@pytest.mark.parametrize(
    "settings",
    [
        dict(rho=0.5, steps=1, search_every=1, rho_max=0.5, eps=0.0),  # t = 0 exactly
        dict(rho=0.5, steps=2, alpha=0.5),  # t ~ 1e-6 from eps
    ],
)
def test_parallel_v0_v1_falls_back_to_the_midpoint(settings):
    pair = Pair(linear_model(), settings, base=(torch.optim.SGD, dict(lr=0.1)),
                loss_fn=lambda out, y: out.sum())  # fmt: skip
    loss, diag, rec = pair.step(*linear_batch())
    assert_diagnostics_match(loss, diag, rec, angle_tol=1e-7)
    assert torch.isfinite(pair.model.weight).all()
    assert max_diff(pair.model.weight, torch.full((1, 4), -0.05, dtype=F64)) <= 1e-12
    if settings.get("eps") == 0.0:
        assert rec["fallback"] and float(diag["angle"]) == 0.0
        assert float(diag["alpha"]) == 0.0  # every search loss ties: the first alpha wins
        assert len(set(diag["search_losses"].tolist())) == 1
    for _ in range(3):
        assert_diagnostics_match(*pair.step(*linear_batch()), angle_tol=1e-7)


def test_cosine_rounding_past_one_is_clamped():
    """Linear losses: <v0, v1> = 1 up to rounding, which lands past 1 for some of these."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        model = nn.Linear(7, 1, bias=False).to(F64)
        c = torch.randn(1, 7, generator=g, dtype=F64)
        settings = dict(rho=0.3, steps=1, alpha=0.5, eps=0.0)
        pair = Pair(model, settings, base=(torch.optim.SGD, dict(lr=0.1)),
                    loss_fn=lambda out, y: out.sum())  # fmt: skip
        assert_diagnostics_match(*pair.step(c, torch.zeros(1)), angle_tol=1e-7)
        assert torch.isfinite(pair.model.weight).all()


# --- passes, precision ----------------------------------------------------------------


@pytest.mark.parametrize(
    "k, alpha_max, alpha_delta, grid_size",
    [(1, 2.0, 0.1, 21), (3, 2.0, 0.25, 9), (2, 0.3, 0.1, 4)],
)
def test_forward_passes_per_step(k, alpha_max, alpha_delta, grid_size):
    assert len(alpha_grid(alpha_max, alpha_delta)) == grid_size
    net = mlp()
    opt = XSAM(net.parameters(), base=partial(torch.optim.SGD, lr=0.1), rho=0.1, steps=k,
               search_every=2, alpha_max=alpha_max, alpha_delta=alpha_delta)  # fmt: skip
    for step, (x, y) in enumerate(batches(4)):
        closure = CountingClosure(BatchClosure(net, F.cross_entropy, x, y))
        forward, backward = opt.forward_passes, opt.backward_passes
        opt.step(closure)
        searches = grid_size if step % 2 == 0 else 0
        assert len(closure.calls) == k + 1 + searches
        assert closure.calls.count((True, True)) == k + 1  # gradient passes
        assert closure.calls.count((False, False)) == searches  # search passes, no_grad
        assert opt.forward_passes - forward == k + 1 + searches
        assert opt.backward_passes - backward == k + 1
        assert len(opt.report.search_alphas if opt.report.searched else []) == searches


def train(model, settings, data, make_closure=BatchClosure):
    opt = XSAM(model.parameters(), base=partial(torch.optim.SGD, lr=0.1, momentum=0.9), **settings)
    for x, y in data:
        opt.step(make_closure(model, F.cross_entropy, x, y))
    return model


def autocast_bf16_closure(model, loss_fn, x, y):
    def closure(backward: bool = True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        if backward:
            loss.backward()
        return loss

    return closure


SETTINGS_32 = dict(rho=0.2, steps=2, alpha=0.5)


def test_float32_agrees_with_float64():
    data = batches(3)
    net64 = train(mlp(F64), SETTINGS_32, data)
    net32 = train(mlp(torch.float32), SETTINGS_32, [(x.float(), y) for x, y in data])
    for p32, p64 in zip(net32.parameters(), net64.parameters(), strict=True):
        torch.testing.assert_close(p32.double(), p64, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_stays_close_to_float32():
    data = [(x.float(), y) for x, y in batches(3)]
    init = mlp(torch.float32)
    net32 = train(copy.deepcopy(init), SETTINGS_32, data)
    net16 = train(copy.deepcopy(init), SETTINGS_32, data, make_closure=autocast_bf16_closure)
    moved = [b - a for a, b in zip(init.parameters(), net32.parameters(), strict=True)]
    error = [b - a for a, b in zip(net32.parameters(), net16.parameters(), strict=True)]
    assert all(torch.isfinite(p).all() for p in net16.parameters())
    assert norm(error) < 0.02 * norm(moved)  # bf16 has 8 mantissa bits: ~0.3% here
