"""scripts/bench_optim.py --quick: every row in the table, and the per-tensor baseline agrees.

No timing is asserted: timings depend on the machine and its load.
"""

import math

import pytest
from script_loader import load_script


def load_bench():
    return load_script("bench_optim")


@pytest.mark.slow
def test_quick_run_prints_every_row_and_the_baseline_check_passes(capsys):
    bench = load_bench()
    result = bench.main(["--quick", "--device", "cpu"])
    out = capsys.readouterr().out

    assert result["check_passed"] and result["check_max_diff"] <= 1e-5
    assert "baseline check" in out and "(OK," in out
    labels = [m.label for m in bench.METHODS]
    assert [r["method"] for r in result["rows"]] == labels
    for label in labels:
        assert f"| cpu | {label} |" in out
    for row in result["rows"]:  # every timing and ratio cell was filled
        for key in ("ours_ms", "per_tensor_ms", "floor_ms", "fused_ms", "full_ms"):
            assert math.isfinite(row[key])


def test_memory_held_beyond_the_base_optimizer():
    """The per-tensor baseline keeps data_0, v0, v1; ours keeps w0 alone (plus tiny scalars)."""
    bench = load_bench()
    template = [p.detach() for p in bench.tiny_cnn().parameters()]
    for impl, expected in (("ours", 1.0), ("per-tensor", 3.0)):
        params = bench.fresh_params(template)
        opt = bench.build(bench.METHODS[3], params, impl)
        opt.step(bench.preset_closure(params, seed=0))
        assert bench.held_copies(opt, params) == pytest.approx(expected, abs=0.2)
