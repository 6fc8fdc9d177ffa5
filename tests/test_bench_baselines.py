"""The GSAM and WSAM rows of scripts/bench_optim.py: memory held and the baseline reproductions.

No timing is asserted: timings depend on the machine and its load.
"""

import pytest
from script_loader import load_script

HELD = {  # row -> parameter copies held between steps: (ours, per-tensor)
    "GSAM (alpha=0.6)": (1.0, 2.0),  # w0 | old_g, e_w
    "WSAM (gamma=0.9, decoupled)": (1.0, 3.0),  # w0 | e_w, grad, sharpness
    "WSAM (gamma=0.9, coupled)": (1.0, 2.0),  # w0 | e_w, grad
}


@pytest.mark.parametrize("label", HELD)
def test_memory_held_beyond_the_base_optimizer(label):
    bench = load_script("bench_optim")
    (method,) = [m for m in bench.METHODS if m.label == label]
    template = [p.detach() for p in bench.tiny_cnn().parameters()]
    for impl, expected in zip(("ours", "per-tensor"), HELD[label], strict=True):
        params = bench.fresh_params(template)
        opt = bench.build(method, params, impl)
        opt.step(bench.preset_closure(params, seed=0))
        assert bench.held_copies(opt, params) == pytest.approx(expected, abs=0.2), impl


def test_per_tensor_reproductions_agree_with_ours():
    bench = load_script("bench_optim")
    template = [p.detach() for p in bench.tiny_cnn().parameters()]
    rows = [m for m in bench.METHODS if m.label in HELD]
    assert len(rows) == 3
    for method in rows:
        weights = {}
        for impl in ("ours", "per-tensor"):
            params = weights[impl] = bench.fresh_params(template)
            opt, closure = bench.build(method, params, impl), bench.QuadraticClosure(params)
            for _ in range(3):
                opt.step(closure)
        pairs = zip(weights["ours"], template, strict=True)
        moved = max((a - b).abs().max().item() for a, b in pairs)
        gap = max(
            (a - b).abs().max().item()
            for a, b in zip(weights["ours"], weights["per-tensor"], strict=True)
        )
        assert moved > 1e-4 and gap <= 1e-6, method.label
