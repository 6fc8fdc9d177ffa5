"""scripts/bench_train.py --quick on tiny sizes: every row and cell, both data paths, real loop.

No timing is asserted: timings depend on the machine and its load.
"""

import math

import pytest
from script_loader import load_script


def load_bench():
    return load_script("bench_train")


@pytest.mark.slow
def test_quick_run_fills_every_row_for_both_data_paths(capsys):
    bench = load_bench()
    argv = ["--quick", "--device", "cpu", "--model", "small_cnn", "--batch-size", "4"]
    result = bench.main([*argv, "--n-train", "64", "--repeats", "1"])
    out = capsys.readouterr().out

    labels = [m.label for m in bench.METHODS] + ["alpha-search step", "data only"]
    assert [r["method"] for r in result["rows"]] == labels
    for row in result["rows"]:
        assert f"| cpu | {row['method']} |" in out
        for key in ("torchvision_ms", "fast_ms", "torchvision_img_s", "fast_img_s", "speedup"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["method"], key)
    # dynamic XSAM: static steps plus one search step per epoch of 50,000 images (batch 4)
    rows = {r["method"]: r for r in result["rows"]}
    for path in bench.PATHS:
        static, search = rows["XSAM static"][f"{path}_ms"], rows["alpha-search step"][f"{path}_ms"]
        expected = static + (search - static) / (50_000 // 4)
        assert math.isclose(rows["XSAM dynamic"][f"{path}_ms"], expected, rel_tol=1e-9)
    for target in ("XSAM static / SAM", "XSAM dynamic / SAM", "SAM / (2 x SGD)"):
        assert f"cpu fast: {target}" in out and f"cpu torchvision: {target}" in out
