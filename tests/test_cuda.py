"""What only a GPU can show: the CUDA paths of the optimizer, the data path and the loop.

Run by ``pytest -m cuda`` (and by ``scripts/gpu_check.sh``); every test skips on a machine
without CUDA. Each compares the CUDA result with an independent one: the per-tensor CPU
kernels and float64 maths, the float64 reference optimizer of ``oracle.py``, the same model
in fp32 / contiguous layout / eager mode, the uninterrupted epoch, one process with the
global batch. Host synchronisation is caught by ``torch.cuda.set_sync_debug_mode("error")``,
which turns every synchronising CUDA call into an error.
"""

import copy
import io
import os
import socket
from contextlib import contextmanager
from functools import partial

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from formats import accept_cifar_checksums, configured_splits, write_cifar
from oracle import ReferenceXSAM, dot, norm, suite_settings
from test_device_cifar import (
    CHI2_DF8,
    CHI2_DF31,
    N_TEST,
    N_TRAIN,
    chi2_uniform,
    collect,
    plans,
    recover,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from xsam import engine
from xsam.data.cifar import channel_stats
from xsam.data.device_cifar import device_cifar_loaders
from xsam.models import SmallCNN
from xsam.optim import XSAM, BatchClosure, kernels

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]
DEVICE = torch.device("cuda")
CL = torch.channels_last
F32_TOL = dict(rtol=1e-5, atol=1e-5)  # float32 of unit size: reduction order, FMA or not


@contextmanager
def no_host_sync():
    """Any CUDA call that waits for the device raises inside this block."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.fixture
def strict_fp32():
    """No TF32 in convolutions and matmuls, so an fp32 reference is fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ---------------------------------------------------------------- kernels: CUDA vs CPU vs float64


def tensor_list(seed: int) -> list[torch.Tensor]:
    """float32 CPU tensors: a channels_last conv weight, a bias, a 0-d, one long enough to
    span several foreach chunks."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 3, 3, 3), (16, 8, 3, 3), (7,), (), (70_000,), (1, 1)]
    out = [torch.randn(s, generator=g, dtype=torch.float64).float() for s in shapes]
    out[1] = out[1].contiguous(memory_format=CL)
    return out


def on_cuda(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.to(DEVICE, copy=True) for t in tensors]  # keeps each tensor's memory format


def f64(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().cpu().double() for t in tensors]


def assert_lists_close(a: list[torch.Tensor], b: list[torch.Tensor], **tol) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.detach().cpu().double(), y.detach().cpu().double(), **tol)


def device_scalar(value: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(value), torch.tensor(value, device=DEVICE)


def test_cuda_tensors_take_the_foreach_path():
    assert not kernels._on_cpu(on_cuda(tensor_list(0)))
    assert kernels.scratch_for(on_cuda(tensor_list(0))) is not None
    assert kernels.scratch_for(tensor_list(0)) is None


def test_global_norm_and_dot():
    a, b = tensor_list(0), tensor_list(1)
    a_cuda, b_cuda = on_cuda(a), on_cuda(b)
    with no_host_sync():
        n_cuda, d_cuda = kernels.global_norm(a_cuda), kernels.global_dot(a_cuda, b_cuda)
    assert n_cuda.device.type == d_cuda.device.type == "cuda" and n_cuda.ndim == 0
    bound = norm(f64(a)) * norm(f64(b))  # |<a, b>| <= ||a|| ||b||: the scale of the dot
    for value, cpu, exact in (
        (n_cuda, kernels.global_norm(a), norm(f64(a))),
        (d_cuda, kernels.global_dot(a, b), dot(f64(a), f64(b))),
    ):
        scale = bound if value is d_cuda else exact
        assert abs(float(value) - exact) <= 1e-5 * scale
        assert abs(float(value) - float(cpu)) <= 1e-5 * scale


def test_channels_last_tensors_are_flattened_as_views_on_cuda():
    a, b = on_cuda(tensor_list(0))[1], on_cuda(tensor_list(1))[1]
    fa, fb = kernels.flat_views(a, b)
    assert fa.data_ptr() == a.data_ptr() and fb.data_ptr() == b.data_ptr()
    assert float(fa @ fb) == pytest.approx(float((a.double() * b.double()).sum()), rel=1e-5)


def test_add_scaled():
    dst, src = tensor_list(0), tensor_list(1)
    expected = [d + 0.37 * s for d, s in zip(f64(dst), f64(src), strict=True)]
    dst_cuda, src_cuda = on_cuda(dst), on_cuda(src)
    scale, scale_cuda = device_scalar(0.37)
    with no_host_sync():
        kernels.add_scaled_(dst_cuda, src_cuda, scale_cuda)
    kernels.add_scaled_(dst, src, scale)
    assert_lists_close(dst_cuda, expected, **F32_TOL)
    assert_lists_close(dst_cuda, dst, **F32_TOL)


def test_backup_and_ascend():
    params, g = tensor_list(0), tensor_list(1)
    expected = [p + 0.25 * x for p, x in zip(f64(params), f64(g), strict=True)]
    p_cuda, g_cuda = on_cuda(params), on_cuda(g)
    before = [p.clone() for p in p_cuda]
    w0 = [torch.empty_like(p) for p in p_cuda]  # preserve_format: w0 is channels_last too
    scale, scale_cuda = device_scalar(0.25)
    with no_host_sync():
        kernels.backup_and_ascend_(p_cuda, w0, g_cuda, scale_cuda)
    assert all(torch.equal(w, b) for w, b in zip(w0, before, strict=True))  # an exact copy
    assert w0[1].is_contiguous(memory_format=CL)
    kernels.backup_and_ascend_(params, [torch.empty_like(p) for p in params], g, scale)
    assert_lists_close(p_cuda, expected, **F32_TOL)
    assert_lists_close(p_cuda, params, **F32_TOL)


def test_subtract_and_measure():
    params, w0, g = tensor_list(0), tensor_list(1), tensor_list(2)
    delta = [p - w for p, w in zip(f64(params), f64(w0), strict=True)]
    p_cuda, w0_cuda, g_cuda = on_cuda(params), on_cuda(w0), on_cuda(g)
    with no_host_sync():
        measured = kernels.subtract_and_measure_(p_cuda, w0_cuda, g_cuda)
    on_cpu = kernels.subtract_and_measure_(params, w0, g)
    # one float32 subtraction, rounded once on either device: bit-identical
    assert all(torch.equal(a.cpu(), b) for a, b in zip(p_cuda, params, strict=True))
    exact = (norm(delta), norm(f64(g)), dot(delta, f64(g)))
    scales = (exact[0], exact[1], exact[0] * exact[1])
    for value, cpu, want, scale in zip(measured, on_cpu, exact, scales, strict=True):
        assert value.device.type == "cuda"
        assert abs(float(value) - want) <= 1e-5 * scale
        assert abs(float(value) - float(cpu)) <= 1e-5 * scale


def test_combine_and_restore():
    g, delta, w0 = tensor_list(0), tensor_list(1), tensor_list(2)
    expected = [0.6 * x - 2.5 * d for x, d in zip(f64(g), f64(delta), strict=True)]
    g_cuda, d_cuda, w0_cuda = on_cuda(g), on_cuda(delta), on_cuda(w0)
    (a, a_cuda), (b, b_cuda) = device_scalar(0.6), device_scalar(-2.5)
    with no_host_sync():
        kernels.combine_and_restore_(g_cuda, a_cuda, d_cuda, b_cuda, w0_cuda)
    kernels.combine_and_restore_(g, a, delta, b, w0)
    assert all(torch.equal(p, w) for p, w in zip(d_cuda, w0_cuda, strict=True))  # exact restore
    assert_lists_close(g_cuda, expected, **F32_TOL)
    assert_lists_close(g_cuda, g, **F32_TOL)


def test_combine():
    base, x, y = tensor_list(0), tensor_list(1), tensor_list(2)
    expected = [c + 0.3 * u - 1.7 * v for c, u, v in zip(f64(base), f64(x), f64(y), strict=True)]
    inputs = [on_cuda(t) for t in (base, x, y)]
    kept = [[t.clone() for t in ts] for ts in inputs]
    out = [torch.empty_like(t) for t in inputs[0]]
    scratch = kernels.scratch_for(inputs[0])
    (a, a_cuda), (b, b_cuda) = device_scalar(0.3), device_scalar(-1.7)
    with no_host_sync():
        kernels.combine_(out, inputs[0], inputs[1], a_cuda, inputs[2], b_cuda, scratch)
    out_cpu = [torch.empty_like(t) for t in base]
    kernels.combine_(out_cpu, base, x, a, y, b, kernels.scratch_for(base))
    assert_lists_close(out, expected, **F32_TOL)
    assert_lists_close(out, out_cpu, **F32_TOL)
    for before, after in zip(kept, inputs, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(before, after, strict=True))  # inputs kept


def test_all_finite_on_the_device():
    one = torch.ones((), device=DEVICE)
    nan, inf = torch.full_like(one, float("nan")), torch.full_like(one, float("-inf"))
    with no_host_sync():
        flags = [
            kernels.all_finite(one, one),
            kernels.all_finite(one, nan),
            kernels.all_finite(inf),
        ]
    assert all(f.device.type == "cuda" and f.dtype == torch.bool for f in flags)
    assert [bool(f) for f in flags] == [True, False, False]


# ---------------------------------------------------------------- the optimizer against the oracle


METHODS = {
    "sam": dict(rho=0.1, steps=1, alpha=1.0),
    "msam_k3": dict(rho=0.1, steps=3, alpha=1.0),
    "xsam_alpha_1.5": dict(rho=0.1, steps=1, alpha=1.5),
    "xsam_dynamic": dict(rho=1.0, steps=1, search_every=2, rho_max=3.0),
    "xsam_asam_dynamic": dict(rho=0.5, steps=2, adaptive=True, search_every=2, rho_max=2.0),
}


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4),
    ).double()  # fmt: skip


@pytest.mark.parametrize("fused", [False, True], ids=["foreach_sgd", "fused_sgd"])
@pytest.mark.parametrize("method", METHODS)
def test_xsam_on_cuda_follows_the_float64_reference(method, fused):
    """float64 on the GPU (foreach kernels) against the per-parameter CPU reference."""
    model, ref_model = bn_net().to(DEVICE), bn_net()
    sgd = dict(lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt = XSAM(model.parameters(), partial(torch.optim.SGD, **sgd, fused=fused), **METHODS[method])
    ref = ReferenceXSAM(
        ref_model,
        torch.optim.SGD(ref_model.parameters(), **sgd),
        **suite_settings(**METHODS[method]),
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 2, 5, 5, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (8,), generator=g)
        loss = opt.step(BatchClosure(model, F.cross_entropy, x.to(DEVICE), y.to(DEVICE)))
        rec = ref.step(lambda x=x, y=y: F.cross_entropy(ref_model(x), y))
        assert abs(float(loss) - rec["loss_0"]) <= 1e-10
        assert abs(float(opt.report.alpha) - rec["alpha"]) <= 1e-12
        for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
            torch.testing.assert_close(p.detach().cpu(), q.detach(), rtol=0, atol=1e-10)
            buf = opt.base.state[p]["momentum_buffer"].cpu()
            torch.testing.assert_close(
                buf, ref.base.state[q]["momentum_buffer"], rtol=0, atol=1e-10
            )
        for b, c in zip(model.buffers(), ref_model.buffers(), strict=True):
            torch.testing.assert_close(b.cpu().double(), c.double(), rtol=0, atol=1e-10)


# ---------------------------------------------------------------- the non-finite skip, fused SGD


def plain_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def snapshot(model: nn.Module, opt: XSAM) -> list[torch.Tensor]:
    params = list(model.parameters())
    return [p.detach().clone() for p in params] + [
        opt.base.state[p]["momentum_buffer"].clone() for p in params
    ]


@pytest.mark.parametrize("method", ["sam", "xsam_alpha_1.5"])
def test_fused_sgd_skips_a_non_finite_step_on_the_device_with_no_host_sync(method):
    model = plain_net().to(DEVICE)
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3, fused=True)
    opt = XSAM(model.parameters(), base, **METHODS[method])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g).to(DEVICE), torch.randint(0, 10, (16,)).to(DEVICE)
    bad = x.clone()
    bad[3, 1, 2, 2] = float("nan")
    for _ in range(2):  # the momentum buffers, alpha and the skip counter now live on the device
        opt.step_and_report(BatchClosure(model, F.cross_entropy, x, y), angle=True)
    before = snapshot(model, opt)
    with no_host_sync():
        opt.step_and_report(BatchClosure(model, F.cross_entropy, bad, y), angle=True)
    assert not bool(opt.report.finite) and int(opt.skipped_steps) == 1
    after = snapshot(model, opt)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # nothing moved
    with no_host_sync():
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
    assert bool(opt.report.finite) and int(opt.skipped_steps) == 1
    assert not torch.equal(snapshot(model, opt)[0], after[0])  # a finite step steps


def test_a_non_fused_base_reads_the_flag_from_the_device():
    """The control: the sync detector does see the one host read of a non-fused base."""
    model = plain_net().to(DEVICE)
    opt = XSAM(model.parameters(), partial(torch.optim.SGD, lr=0.1, foreach=True), rho=0.1)
    x, y = torch.randn(4, 3, 8, 8, device=DEVICE), torch.zeros(4, dtype=torch.long, device=DEVICE)
    opt.step(BatchClosure(model, F.cross_entropy, x, y))
    with pytest.raises(RuntimeError, match="synchroniz"), no_host_sync():
        opt.step(BatchClosure(model, F.cross_entropy, x, y))


# ---------------------------------------------------------------- precision and layout


def cnn(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(num_classes=num_classes, in_channels=3).to(DEVICE)


def cifar_batches(n: int, batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    batches = [
        (torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]
    return [(x.to(DEVICE), y.to(DEVICE)) for x, y in batches]


def xsam_for(model: nn.Module, **settings) -> XSAM:
    base = partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=1e-3, fused=True)
    return XSAM(model.parameters(), base, **{"rho": 0.15, "alpha": 0.5, **settings})


def moved(model: nn.Module, start: nn.Module) -> torch.Tensor:
    """The global displacement of the weights since ``start``, in float64."""
    pairs = zip(model.parameters(), start.parameters(), strict=True)
    return torch.cat([(p.double() - q.double()).flatten() for p, q in pairs]).detach()


def relative_gap(a: nn.Module, b: nn.Module, start: nn.Module) -> float:
    """||moved(a) - moved(b)|| / ||moved(b)||: how far two runs from one start drift apart."""
    da, db = moved(a, start), moved(b, start)
    return float((da - db).norm() / db.norm())


def test_bf16_autocast_follows_fp32_over_a_few_steps(strict_fp32):
    start = cnn()
    models = {"fp32": copy.deepcopy(start), "bf16": copy.deepcopy(start)}
    opts = {name: xsam_for(m) for name, m in models.items()}
    autocast = {"fp32": None, "bf16": torch.bfloat16}
    for x, y in cifar_batches(6):
        losses = {}
        for name, model in models.items():
            closure = BatchClosure(model, F.cross_entropy, x, y, autocast_dtype=autocast[name])
            losses[name] = float(opts[name].step(closure))
            want = torch.bfloat16 if name == "bf16" else torch.float32
            assert closure.logits.dtype == want  # autocast ran (or did not)
        assert abs(losses["bf16"] - losses["fp32"]) <= 0.03 * losses["fp32"]
    assert all(p.dtype == torch.float32 for p in models["bf16"].parameters())  # fp32 weights
    assert relative_gap(models["bf16"], models["fp32"], start) < 0.1


def test_channels_last_steps_like_the_contiguous_layout(strict_fp32):
    start = cnn()
    flat, cl = copy.deepcopy(start), copy.deepcopy(start).to(memory_format=CL)
    opts = {"flat": xsam_for(flat), "cl": xsam_for(cl)}
    for x, y in cifar_batches(4):
        opts["flat"].step(BatchClosure(flat, F.cross_entropy, x, y))
        opts["cl"].step(BatchClosure(cl, F.cross_entropy, x.contiguous(memory_format=CL), y))
    conv = [p for p in cl.parameters() if p.ndim == 4]
    assert conv and all(p.is_contiguous(memory_format=CL) for p in conv)  # the layout survived
    assert all(p.grad.is_contiguous(memory_format=CL) for p in conv)
    assert relative_gap(cl, flat, start) < 1e-3


# ---------------------------------------------------------------- the device-resident CIFAR loader


@pytest.fixture
def splits(tmp_path, monkeypatch):
    """Small CIFAR-10 pickles in the real format; train labels are the sample indices (as in
    tests/test_device_cifar.py, so every output names its source image)."""
    write_cifar(tmp_path, num_classes=10, n_train=N_TRAIN, n_test=N_TEST)
    accept_cifar_checksums(monkeypatch, tmp_path, num_classes=10)
    splits = configured_splits("cifar10", tmp_path)
    splits.train.targets = list(range(N_TRAIN))
    return splits


def test_cuda_loader_yields_the_cpu_loader_batches_bit_for_bit(splits):
    cuda_train, cuda_test = device_cifar_loaders(splits, batch_size=8, seed=0, device=DEVICE)
    cpu_train, cpu_test = device_cifar_loaders(splits, batch_size=8, seed=0, device="cpu")
    for fast, reference in ((cuda_train, cpu_train), (cuda_test, cpu_test)):
        x, y = collect(fast, [0, 1])
        assert x.device.type == "cuda"
        x_ref, y_ref = collect(reference, [0, 1])
        assert torch.equal(x.cpu(), x_ref) and torch.equal(y.cpu(), y_ref)


def test_cuda_augmentation_is_its_plan_with_the_torchvision_distribution(splits):
    """As tests/test_device_cifar.py, on CUDA: every output is exactly its drawn crop, flip
    and Cutout, and those are distributed as the torchvision path's."""
    epochs = range(50)
    loader, _ = device_cifar_loaders(splits, batch_size=N_TRAIN, seed=11, device=DEVICE)
    mean, std = channel_stats(splits.train.data)
    x, source = collect(loader, epochs)
    found = recover(x.cpu(), source.cpu(), splits.train.data, mean, std)
    plan = plans(loader, epochs).cpu()
    for key, drawn in zip(("top", "left", "flip", "cut"), plan[1:5], strict=True):
        assert torch.equal(found[key], drawn), key
    assert torch.equal(found["row"], plan[5][found["cut"]])
    assert torch.equal(found["col"], plan[6][found["cut"]])
    assert abs(found["flip"].float().mean() - 0.5) < 0.05  # 4 sigma at n = 1600
    assert abs(found["cut"].float().mean() - 0.5) < 0.05
    assert chi2_uniform(found["top"], 9) < CHI2_DF8 and chi2_uniform(found["left"], 9) < CHI2_DF8
    assert chi2_uniform(found["row"], 32) < CHI2_DF31 and chi2_uniform(found["col"], 32) < CHI2_DF31


def test_resumed_cuda_epoch_yields_exactly_the_remaining_batches(splits):
    train, _ = device_cifar_loaders(splits, batch_size=8, seed=0, device=DEVICE)
    train.set_epoch(4)
    full = list(train)
    for k in (1, 3):
        train.set_epoch(4, start=k * 8)
        rest = list(train)
        assert len(rest) == len(full) - k
        for (x, y), (x_full, y_full) in zip(rest, full[k:], strict=True):
            assert torch.equal(x, x_full) and torch.equal(y, y_full)


@pytest.fixture
def deterministic():
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def train_batches(model, opt, loader) -> None:
    for batch in loader:
        inputs, targets = engine.to_device(batch, DEVICE, channels_last=False)
        opt.step(BatchClosure(model, nn.CrossEntropyLoss(), inputs, targets))


def test_training_resumed_mid_epoch_on_cuda_is_bit_exact(splits, deterministic):
    """An epoch split at batch 2, with model and optimizer saved and loaded in between,
    ends on the weights of the uninterrupted epoch, bit for bit (the labels are the sample
    indices: one class per sample)."""
    loader, _ = device_cifar_loaders(splits, batch_size=8, seed=0, device=DEVICE)
    whole = cnn(N_TRAIN)
    opt = xsam_for(whole, search_every=3)
    loader.set_epoch(1)
    train_batches(whole, opt, loader)

    first = cnn(N_TRAIN)
    opt = xsam_for(first, search_every=3)
    loader.set_epoch(1)
    train_batches(first, opt, [batch for _, batch in zip(range(2), loader, strict=False)])
    saved = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved, map_location=DEVICE)
    resumed = cnn(N_TRAIN)
    resumed.load_state_dict(state["model"])
    opt = xsam_for(resumed, search_every=3)
    opt.load_state_dict(state["opt"])
    loader.set_epoch(1, start=2 * 8)
    train_batches(resumed, opt, loader)
    assert opt.step_count == N_TRAIN // 8
    for p, q in zip(resumed.state_dict().values(), whole.state_dict().values(), strict=True):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- DDP over NCCL, two GPUs


DDP_STEPS, DDP_BATCH = 4, 16
DDP_SETTINGS = dict(rho=1.0, steps=2, search_every=2, rho_max=2.0)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()


def ddp_batches(device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [
        (torch.randn(DDP_BATCH, 6, generator=g, dtype=torch.float64).to(device),
         torch.randint(0, 4, (DDP_BATCH,), generator=g).to(device))
        for _ in range(DDP_STEPS)
    ]  # fmt: skip


def ddp_train(model: nn.Module, batches, net: nn.Module | None = None) -> list[float]:
    opt = XSAM(model.parameters(), partial(torch.optim.SGD, lr=0.1, momentum=0.9), **DDP_SETTINGS)
    alphas = []
    for x, y in batches:
        opt.step(BatchClosure(net or model, F.cross_entropy, x, y))
        alphas.append(float(opt.alpha))
    return alphas


def nccl_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    device = torch.device("cuda", rank)
    model = mlp().to(device)
    shard = [(x[rank::world], y[rank::world]) for x, y in ddp_batches(device)]
    alphas = ddp_train(model, shard, net=DDP(model, device_ids=[rank]))
    if rank == 0:
        torch.save(
            {"params": [p.detach().cpu() for p in model.parameters()], "alphas": alphas}, out
        )
    dist.destroy_process_group()


@pytest.mark.skipif(CUDA and torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_two_nccl_ranks_equal_one_process_with_the_global_batch(tmp_path):
    out = tmp_path / "rank0.pt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(nccl_rank, args=(2, port, str(out)), nprocs=2, start_method="spawn")
    two = torch.load(out)
    model = mlp().to(DEVICE)
    alphas = ddp_train(model, ddp_batches(DEVICE))
    assert alphas == two["alphas"] and len(set(alphas)) > 1  # the same, changing, alpha
    for p, q in zip(model.parameters(), two["params"], strict=True):
        torch.testing.assert_close(p.detach().cpu(), q, rtol=0, atol=1e-12)


# ------------------------------------------- torch.compile (last: compiling takes the longest)


def test_torch_compile_of_a_model_under_xsam(strict_fp32):
    """The compiled network through every kind of pass: clean, frozen-BN ascent, no-grad search."""
    start = cnn()
    eager, compiled_model = copy.deepcopy(start), copy.deepcopy(start)
    compiled = torch.compile(compiled_model)
    opts = {"eager": xsam_for(eager), "compiled": xsam_for(compiled_model)}
    for x, y in cifar_batches(3):
        opts["eager"].step(BatchClosure(eager, F.cross_entropy, x, y))
        opts["compiled"].step(BatchClosure(compiled, F.cross_entropy, x, y))
    assert relative_gap(compiled_model, eager, start) < 1e-3
    for b, c in zip(compiled_model.buffers(), eager.buffers(), strict=True):
        torch.testing.assert_close(b.double(), c.double(), rtol=1e-3, atol=1e-4)
    opts["compiled"].search_every = 1  # the 21 no-grad search passes through the compiled net
    x, y = cifar_batches(1)[0]
    opts["compiled"].step(BatchClosure(compiled, F.cross_entropy, x, y))
    losses = opts["compiled"].report.search_losses
    assert losses.shape == (21,) and bool(torch.isfinite(losses).all())
