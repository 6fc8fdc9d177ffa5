"""The list-of-tensor kernels against the same maths on one concatenated vector.

Each phase kernel has a per-tensor CPU implementation and a ``torch._foreach_*`` one (the
CUDA one); ``both_paths`` runs a test through each, on CPU tensors."""

import pytest
import torch

from xsam.optim import kernels
from xsam.optim.kernels import (
    add_scaled_,
    all_finite,
    backup_and_ascend_,
    combine_,
    combine_and_restore_,
    flat_views,
    global_dot,
    global_norm,
    subtract_and_measure_,
)


def tensor_list(dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 5, 2, 2), (7,), (), (40000,), (1, 1)]  # one large enough to be split
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in tensors])


def clones(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.clone() for t in tensors]


@pytest.fixture(params=["per-tensor", "foreach"])
def both_paths(request, monkeypatch):
    if request.param == "foreach":  # what CUDA tensors take
        monkeypatch.setattr(kernels, "_on_cpu", lambda tensors: False)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_global_norm_and_dot_are_those_of_the_concatenation(dtype):
    a, b = tensor_list(dtype, 0), tensor_list(dtype, 1)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    assert float(global_norm(a)) == pytest.approx(float(flat(a).norm()), rel=tol)
    dot, bound = float(flat(a) @ flat(b)), float(flat(a).norm() * flat(b).norm())  # |dot| <= bound
    assert float(global_dot(a, b)) == pytest.approx(dot, abs=tol * bound)


@pytest.mark.parametrize("layouts", [("cl", "cl"), ("cl", "contiguous"), ("contiguous", "cl")])
def test_channels_last_tensors_are_read_in_place(layouts):
    """A channels_last model's weights, gradients and w0 copies: no copy to flatten them."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) for _ in range(2))
    a, b = (
        t.to(memory_format=torch.channels_last) if lay == "cl" else t
        for t, lay in zip((a, b), layouts, strict=True)
    )
    fa, fb = flat_views(a, b)
    assert float(fa @ fb) == pytest.approx(float((a * b).sum()), rel=1e-12)
    assert float(global_dot([a], [b])) == pytest.approx(float((a * b).sum()), rel=1e-12)
    if layouts[0] == layouts[1]:
        assert fa.data_ptr() == a.data_ptr() and fb.data_ptr() == b.data_ptr()


def test_add_scaled_is_axpy_with_a_device_scalar():
    a, b = tensor_list(torch.float64, 0), tensor_list(torch.float64, 1)
    expected = flat(a) + 0.37 * flat(b)
    add_scaled_(a, b, torch.tensor(0.37, dtype=torch.float64))
    torch.testing.assert_close(flat(a), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("with_scratch", [False, True])  # True: the path taken off the CPU
def test_combine_is_base_plus_two_scaled_terms(with_scratch):
    base, x, y = (tensor_list(torch.float64, seed) for seed in (0, 1, 2))
    inputs = [[t.clone() for t in ts] for ts in (base, x, y)]
    a, b = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-1.7, dtype=torch.float64)
    out = [torch.empty_like(t) for t in base]
    scratch = [torch.empty_like(t) for t in base] if with_scratch else None
    combine_(out, base, x, a, y, b, scratch)
    expected = flat(base) + 0.3 * flat(x) - 1.7 * flat(y)
    torch.testing.assert_close(flat(out), expected, rtol=0, atol=1e-14)
    for before, after in zip(inputs, (base, x, y), strict=True):
        assert all(torch.equal(u, v) for u, v in zip(before, after, strict=True))  # inputs kept


def test_backup_and_ascend(both_paths):
    params, g = tensor_list(torch.float64, 0), tensor_list(torch.float64, 1)
    before, w0 = clones(params), [torch.empty_like(t) for t in params]
    expected = flat(params) + 0.25 * flat(g)  # g may be overwritten: it is scratch
    backup_and_ascend_(params, w0, g, torch.tensor(0.25, dtype=torch.float64))
    assert all(torch.equal(w, b) for w, b in zip(w0, before, strict=True))  # an exact copy
    torch.testing.assert_close(flat(params), expected, rtol=0, atol=1e-15)


def test_subtract_and_measure(both_paths):
    params, w0, g = (tensor_list(torch.float64, seed) for seed in (0, 1, 2))
    delta = flat(params) - flat(w0)
    norm_delta, norm_g, dot = subtract_and_measure_(params, w0, g)
    assert torch.equal(flat(params), delta)  # params now hold theta - w0
    assert float(norm_delta) == pytest.approx(float(delta.norm()), rel=1e-12)
    assert float(norm_g) == pytest.approx(float(flat(g).norm()), rel=1e-12)
    assert float(dot) == pytest.approx(float(delta @ flat(g)), rel=1e-12)


def test_combine_and_restore(both_paths):
    g, delta, w0 = (tensor_list(torch.float64, seed) for seed in (0, 1, 2))
    expected = 0.6 * flat(g) - 2.5 * flat(delta)
    a, b = torch.tensor(0.6, dtype=torch.float64), torch.tensor(-2.5, dtype=torch.float64)
    combine_and_restore_(g, a, delta, b, w0)
    torch.testing.assert_close(flat(g), expected, rtol=0, atol=1e-14)
    assert all(torch.equal(p, w) for p, w in zip(delta, w0, strict=True))  # restored exactly


def test_all_finite_sees_nan_and_inf():
    one = torch.tensor(1.0)
    assert bool(all_finite(one, one))
    assert not bool(all_finite(one, torch.tensor(float("nan"))))
    assert not bool(all_finite(torch.tensor(float("-inf")), one))
