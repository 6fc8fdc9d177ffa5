"""GSAM and WSAM against the float64 references in `oracle_baselines.py`, their reductions,
and agreement with pytorch_optimizer's GSAM and WSAM where the definitions coincide.

Every trajectory runs 12 steps from copies of one BatchNorm network with two param groups
(different learning rates and weight decay), SGD with momentum, and a cosine schedule stepped
every step (so GSAM's rho_t moves); after each step every parameter, BatchNorm buffer and
momentum buffer must agree with the reference to 1e-10.
"""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from oracle_baselines import ReferenceGSAM, ReferenceWSAM
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

from xsam.optim import GSAM, WSAM, XSAM, BatchClosure

F64 = torch.float64
TOL = 1e-10
STEPS = 12
SGD = (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-3))
ADAMW = (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.05))
GSAM_SETTINGS = dict(rho_max=0.3, rho_min=0.05, alpha=0.4)
WSAM_SETTINGS = dict(rho=0.2, gamma=0.8)


def bn_net() -> nn.Module:
    """No bias before a BatchNorm: its gradient is rounding noise, which Adam would amplify."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8, bias=False), nn.BatchNorm1d(8),
        nn.Tanh(), nn.Linear(8, 4),
    ).to(F64)  # fmt: skip


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).to(F64)


def batches(n: int, shape=(2, 5, 5), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, *shape, generator=g, dtype=F64), torch.randint(0, 4, (8,), generator=g))
        for _ in range(n)
    ]


def two_groups(model: nn.Module):
    head = list(model[-1].parameters())
    body = [p for p in model.parameters() if all(p is not q for q in head)]
    return [{"params": body}, {"params": head, "lr": 0.03, "weight_decay": 0.0}]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def assert_same_models(model, ref_model, opt_base, ref_base, tol=TOL, skip_counts=False):
    pairs = zip(model.named_parameters(), ref_model.parameters(), strict=True)
    for (name, p), q in pairs:
        assert max_diff(p, q) <= tol, f"parameter {name}"
        for key, value in ref_base.state[q].items():
            assert max_diff(opt_base.state[p][key], value) <= tol, f"{key} of {name}"
    for (name, b), c in zip(model.named_buffers(), ref_model.buffers(), strict=True):
        if not (skip_counts and name.endswith("num_batches_tracked")):
            assert max_diff(b, c) <= tol, f"buffer {name}"


def build(model, cls, settings, base=SGD):
    base_cls, base_kw = base
    return cls(two_groups(model), base=partial(base_cls, **base_kw), **settings)


def reference(model, ref_cls, settings, base=SGD):
    base_cls, base_kw = base
    ref_base = base_cls(two_groups(model), **base_kw)
    if ref_cls is ReferenceGSAM:
        settings = dict(lr_max=base_kw["lr"], lr_min=0.0) | settings
    return ref_cls(model, ref_base, **settings)


def run_pair(cls, ref_cls, settings, base=SGD, steps=STEPS):
    model, ref_model = bn_net(), bn_net()
    opt, ref = build(model, cls, settings, base), reference(ref_model, ref_cls, settings, base)
    schedules = [CosineAnnealingLR(o, T_max=steps) for o in (opt, ref.base)]
    for x, y in batches(steps):
        diag = opt.step_and_report(BatchClosure(model, F.cross_entropy, x, y), angle=True)
        loss = diag.loss_0
        rec = ref.step(lambda x=x, y=y: F.cross_entropy(ref_model(x), y))
        assert_same_models(model, ref_model, opt.base, ref.base)
        assert abs(float(loss) - rec["loss_0"]) <= TOL
        for key in ("loss_0", "loss_k", "grad_norm_0", "grad_norm_k", "angle"):
            assert abs(float(getattr(diag, key)) - rec[key]) <= TOL, key
        if "rho" in rec:
            assert abs(float(diag.rho) - rec["rho"]) <= 1e-15
        for s in schedules:
            s.step()
    return opt, ref


# --- against the references ---------------------------------------------------------------


@pytest.mark.parametrize("base", [SGD, ADAMW], ids=["sgd_momentum_wd", "adamw"])
def test_gsam_matches_oracle(base):
    opt, ref = run_pair(GSAM, ReferenceGSAM, GSAM_SETTINGS, base)
    assert bool(opt.base.state)  # momentum / Adam state was compared


@pytest.mark.parametrize("decouple", [True, False])
@pytest.mark.parametrize("base", [SGD, ADAMW], ids=["sgd_momentum_wd", "adamw"])
def test_wsam_matches_oracle(decouple, base):
    run_pair(WSAM, ReferenceWSAM, WSAM_SETTINGS | dict(decouple=decouple), base)


def test_gsam_rho_follows_the_learning_rate_down_to_rho_min():
    model = bn_net()
    opt = build(model, GSAM, GSAM_SETTINGS)
    schedule = CosineAnnealingLR(opt, T_max=4)
    rhos, lrs = [], []
    for x, y in batches(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
        rhos.append(float(opt.report.rho))
        schedule.step()
    assert rhos[0] == pytest.approx(0.3, abs=1e-15)  # lr_max: rho_max
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)  # the cosine's end
    assert rhos[-1] == pytest.approx(0.05, abs=1e-15)  # lr_min: rho_min
    assert rhos == sorted(rhos, reverse=True) and len(set(rhos)) == 5


def test_gsam_update_is_g_k_minus_alpha_times_the_orthogonal_part_of_g_0():
    """One step on plain SGD, lr 1: w1 = w0 - (g_k - alpha * g_perp), with g_perp _|_ g_k."""
    model, ref_model = mlp(), mlp()
    opt = GSAM(model.parameters(), base=partial(torch.optim.SGD, lr=1.0), **GSAM_SETTINGS)
    ref = ReferenceGSAM(
        ref_model, torch.optim.SGD(ref_model.parameters(), lr=1.0), lr_max=1.0, lr_min=0.0,
        **GSAM_SETTINGS,
    )  # fmt: skip
    w0 = [p.detach().clone() for p in model.parameters()]
    ((x, y),) = batches(1, shape=(6,))
    opt.step(BatchClosure(model, F.cross_entropy, x, y))
    rec = ref.step(lambda: F.cross_entropy(ref_model(x), y))
    perp_dot_gk = sum(float((a * b).sum()) for a, b in zip(rec["g_perp"], rec["g_p"], strict=True))
    assert abs(perp_dot_gk) < 1e-14  # orthogonal to g_k
    for p, w, gk, v in zip(model.parameters(), w0, rec["g_p"], rec["g_perp"], strict=True):
        assert max_diff(p, w - gk + 0.4 * v) <= TOL  # the minus sign of the paper


# --- reductions ---------------------------------------------------------------------------


def sam_trajectory(base, rho, steps=STEPS):
    model = bn_net()
    opt = build(model, XSAM, dict(rho=rho, steps=1, alpha=1.0), base)
    schedule = CosineAnnealingLR(opt, T_max=steps)
    for x, y in batches(steps):
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
        schedule.step()
    return model, opt


def trajectory(cls, settings, base, steps=STEPS):
    model = bn_net()
    opt = build(model, cls, settings, base)
    schedule = CosineAnnealingLR(opt, T_max=steps)
    for x, y in batches(steps):
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
        schedule.step()
    return model, opt


def assert_same_trajectory(a, b, tol):
    (model_a, opt_a), (model_b, opt_b) = a, b
    assert_same_models(model_a, model_b, opt_a.base, opt_b.base, tol=tol)


@pytest.mark.parametrize("base", [SGD, ADAMW], ids=["sgd_momentum_wd", "adamw"])
def test_gsam_alpha_zero_constant_rho_is_sam(base):
    gsam = trajectory(GSAM, dict(rho_max=0.2, rho_min=0.2, alpha=0.0), base)
    assert_same_trajectory(gsam, sam_trajectory(base, rho=0.2), tol=1e-14)
    assert {float(gsam[1].report.rho)} == {0.2}


@pytest.mark.parametrize("base", [SGD, ADAMW], ids=["sgd_momentum_wd", "adamw"])
def test_wsam_gamma_half_coupled_is_sam(base):
    wsam = trajectory(WSAM, dict(rho=0.2, gamma=0.5, decouple=False), base)
    assert_same_trajectory(wsam, sam_trajectory(base, rho=0.2), tol=1e-14)


def test_wsam_gamma_half_decoupled_is_sam_on_plain_sgd():
    plain = (torch.optim.SGD, dict(lr=0.1, weight_decay=1e-3))
    wsam = trajectory(WSAM, dict(rho=0.2, gamma=0.5, decouple=True), plain)
    assert_same_trajectory(wsam, sam_trajectory(plain, rho=0.2), tol=1e-13)


def test_wsam_gamma_half_decoupled_is_not_sam_with_momentum():
    """The decoupled sharpness term bypasses the momentum buffer: a real difference."""
    wsam = trajectory(WSAM, dict(rho=0.2, gamma=0.5, decouple=True), SGD)
    sam = sam_trajectory(SGD, rho=0.2)
    gaps = [max_diff(p, q) for p, q in zip(wsam[0].parameters(), sam[0].parameters(), strict=True)]
    assert max(gaps) > 1e-4


@pytest.mark.parametrize("decouple", [True, False])
def test_wsam_gamma_zero_is_the_base_optimizer(decouple):
    model, bare_model = bn_net(), bn_net()
    opt = build(model, WSAM, dict(rho=0.2, gamma=0.0, decouple=decouple))
    bare = SGD[0](two_groups(bare_model), **SGD[1])
    for x, y in batches(STEPS):
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
        bare.zero_grad(set_to_none=True)
        F.cross_entropy(bare_model(x), y).backward()
        bare.step()
    assert_same_models(model, bare_model, opt.base, bare, tol=1e-14)


# --- pytorch_optimizer, where the definitions coincide --------------------------------------

po = pytest.importorskip("pytorch_optimizer")
# pytorch_optimizer takes the global gradient norm in float32 even for float64 parameters
# (``get_global_gradient_norm``), so the ascent radius differs by ~1e-7 relative; every other
# operation there is float64. A wrong sign or term would show at ~1e-3 per step.
PO_TOL = 1e-6  # over 12 steps, in parameters and momentum buffers


def po_closure(model, opt_base, x, y):
    @torch.enable_grad()  # their GSAM.step runs the closure under no_grad
    def closure():
        opt_base.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return None, loss.detach()

    return closure


def test_gsam_agrees_with_pytorch_optimizer():
    """Their GSAM on the same schedule; BatchNorm there is paused by momentum = 0, which still
    counts batches in the perturbed pass, so num_batches_tracked is not compared."""
    model, po_model = bn_net(), bn_net()
    opt = build(model, GSAM, GSAM_SETTINGS)
    po_base = SGD[0](two_groups(po_model), **SGD[1])
    schedules = [CosineAnnealingLR(opt, T_max=STEPS), CosineAnnealingLR(po_base, T_max=STEPS)]
    rho_schedule = po.ProportionScheduler(
        schedules[1], max_lr=0.1, min_lr=0.0, max_value=0.3, min_value=0.05
    )
    theirs = po.GSAM(
        po_model.parameters(), base_optimizer=po_base, model=po_model,
        rho_scheduler=rho_schedule, alpha=0.4,
    )  # fmt: skip
    for x, y in batches(STEPS):
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
        theirs.step(po_closure(po_model, po_base, x, y))
        assert_same_models(model, po_model, opt.base, po_base, PO_TOL, skip_counts=True)
        for s in schedules:
            s.step()
        theirs.update_rho_t()


@pytest.mark.parametrize("decouple", [True, False])
def test_wsam_agrees_with_pytorch_optimizer(decouple):
    model, po_model = bn_net(), bn_net()
    opt = build(model, WSAM, WSAM_SETTINGS | dict(decouple=decouple))
    theirs = po.WSAM(
        po_model, two_groups(po_model), base_optimizer=SGD[0], rho=0.2, gamma=0.8,
        decouple=decouple, **SGD[1],
    )  # fmt: skip
    schedules = [CosineAnnealingLR(o, T_max=STEPS) for o in (opt, theirs.base_optimizer)]
    for x, y in batches(STEPS):
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
        theirs.zero_grad(set_to_none=True)

        def closure(x=x, y=y):
            loss = F.cross_entropy(po_model(x), y)
            loss.backward()
            return loss

        theirs.step(closure)
        assert_same_models(
            model, po_model, opt.base, theirs.base_optimizer, PO_TOL, skip_counts=True
        )
        for s in schedules:
            s.step()


# --- the family's contract -----------------------------------------------------------------

METHODS = {
    "gsam": (GSAM, GSAM_SETTINGS),
    "wsam_decoupled": (WSAM, WSAM_SETTINGS),
    "wsam_coupled": (WSAM, WSAM_SETTINGS | dict(decouple=False)),
}


@pytest.mark.parametrize("method", METHODS)
def test_two_gradient_passes_per_step_through_the_closure(method):
    cls, settings = METHODS[method]
    model = bn_net()
    opt = build(model, cls, settings)
    calls = []
    for x, y in batches(3):
        closure = BatchClosure(model, F.cross_entropy, x, y)

        def counting(backward=True, closure=closure):
            calls.append((backward, torch.is_grad_enabled()))
            return closure(backward=backward)

        opt.step(counting)
    assert calls == [(True, True)] * 6
    assert opt.forward_passes == opt.backward_passes == 6 and opt.step_count == 3
    counts = [b for n, b in model.named_buffers() if n.endswith("num_batches_tracked")]
    assert [int(c) for c in counts] == [3, 3]  # BN statistics from the first pass only


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_non_finite_step_is_skipped_and_weights_restored_exactly(method, fused):
    cls, settings = METHODS[method]
    model = bn_net()
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, fused=fused)
    opt = cls(model.parameters(), base=base, **settings)
    for x, y in batches(2):
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
    weights = {k: v.clone() for k, v in model.named_parameters()}
    momentum = [s["momentum_buffer"].clone() for s in opt.base.state.values()]
    ((x, y),) = batches(1, seed=5)
    x[0, 0] = float("nan")
    loss = opt.step(BatchClosure(model, F.cross_entropy, x, y))
    assert not torch.isfinite(loss) and not opt.report.finite
    assert int(opt.skipped_steps) == 1
    for k, v in model.named_parameters():
        assert torch.equal(v, weights[k]), k
    for before, state in zip(momentum, opt.base.state.values(), strict=True):
        assert torch.equal(before, state["momentum_buffer"])


@pytest.mark.parametrize("method", METHODS)
def test_save_load_continue_is_bit_identical(method):
    cls, settings = METHODS[method]
    data = batches(8)

    def fresh():
        model = bn_net()
        opt = build(model, cls, settings)
        return model, opt, CosineAnnealingLR(opt, T_max=8)

    def train(model, opt, schedule, part):
        for x, y in part:
            opt.step(BatchClosure(model, F.cross_entropy, x, y))
            schedule.step()

    whole = fresh()
    train(*whole, data)
    first = fresh()
    train(*first, data[:3])
    saved = copy.deepcopy([first[0].state_dict(), first[1].state_dict(), first[2].state_dict()])
    second = fresh()
    for obj, state in zip(second, saved, strict=True):
        obj.load_state_dict(state)
    train(*second, data[3:])
    for k, v in whole[0].state_dict().items():
        assert torch.equal(v, second[0].state_dict()[k]), k
    assert second[1].step_count == whole[1].step_count == 8
    assert torch.equal(second[1].report.rho, whole[1].report.rho)


@pytest.mark.parametrize(
    "cls, settings, name",
    [
        (GSAM, dict(rho_max=0.0), "rho_max"),
        (GSAM, dict(rho_max=0.1, rho_min=0.2), "rho_min"),
        (GSAM, dict(alpha=-0.1), "alpha"),
        (GSAM, dict(steps=2), "steps"),
        (GSAM, dict(search_every=5), "search_every"),
        (GSAM, dict(lr_max=0.01, lr_min=0.02), "lr_max"),
        (WSAM, dict(gamma=1.0), "gamma"),
        (WSAM, dict(rho=0.0), "rho"),
        (WSAM, dict(steps=3), "steps"),
    ],
)
def test_bad_settings_raise_naming_the_setting(cls, settings, name):
    with pytest.raises(ValueError, match=name):
        cls(mlp().parameters(), base=partial(torch.optim.SGD, lr=0.1), **settings)
