"""The sphere-maximum probe and scripts/geometry.py, and the digits' label noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xsam.data.digits import digits_splits, noisy_labels
from xsam.diagnostics.sphere import sphere_diagnostics, sphere_max, unit

REPO = Path(__file__).resolve().parents[1]


def test_on_a_linear_loss_the_sphere_maximum_is_the_gradient_direction():
    torch.manual_seed(0)
    w = [torch.randn(5, dtype=torch.float64, requires_grad=True)]
    g = torch.randn(5, dtype=torch.float64)

    def loss_fn():
        return (g * w[0]).sum()

    start = {"random": [torch.randn(5, dtype=torch.float64)]}
    u, loss, _ = sphere_max(loss_fn, w, rho_max=0.3, starts=start, iters=30, beta=0.5)
    cos = float((u[0] * g).sum() / g.norm())
    assert cos == pytest.approx(1.0, abs=1e-9)
    assert loss == pytest.approx(float((g * w[0].detach()).sum() + 0.3 * g.norm()), abs=1e-9)


def test_the_probe_is_never_below_a_candidate_and_restores_the_weights():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]

    def loss_fn():
        return torch.nn.functional.cross_entropy(model(x), y)

    record = sphere_diagnostics(loss_fn, params, rho=0.1, rho_max=0.2, alpha=1.3)
    assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
    for name in ("g_0", "g_1", "g_2", "xsam"):
        assert record["geo/sphere_max_loss"] >= record[f"geo/loss/{name}"]
        assert 0.0 <= record[f"geo/angle/{name}"] <= 180.0
    assert record["geo/loss/g_1"] > record["geo/loss_0"]  # an ascent direction


def test_unit_vectors_have_norm_one():
    u = unit([torch.tensor([3.0, 4.0]), torch.tensor([12.0])])
    assert float(sum((t * t).sum() for t in u)) == pytest.approx(1.0)


def test_label_noise_moves_exactly_that_fraction_to_other_classes():
    labels = np.arange(1000) % 10
    noisy = noisy_labels(labels, 0.4, num_classes=10, seed=3)
    assert (noisy != labels).sum() == 400 and noisy.min() >= 0 and noisy.max() <= 9
    assert np.array_equal(noisy, noisy_labels(labels, 0.4, num_classes=10, seed=3))
    clean = digits_splits(label_noise=0.0)
    noisy_split = digits_splits(label_noise=0.4)
    assert torch.equal(clean.test.tensors[1], noisy_split.test.tensors[1])  # test stays clean
    changed = (clean.train.tensors[1] != noisy_split.train.tensors[1]).float().mean()
    assert float(changed) == pytest.approx(0.4, abs=1e-3)
    with pytest.raises(ValueError, match="dataset.splits.label_noise"):
        digits_splits(label_noise=1.0)


@pytest.mark.slow
def test_geometry_command_on_the_digits(tmp_path):
    definition = tmp_path / "geo.yaml"
    definition.write_text(
        "description: geometry on the digits\nseeds: [0, 1]\n"
        "fixed: {epochs: 1, diagnostics.sphere_every: 5, optimizer.rho_max: 0.3}\n"
        "axes: {optimizer: [xsam]}\nrows: []\ncolumns: [optimizer]\nmetric: test/acc\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "geometry.py"),
            str(definition),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
            "progress=false",
            f"run_root={tmp_path / 'runs'}",
            "logger.mode=disabled",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "out" / "geo.md").read_text()
    assert "6 probes: steps 0..10 (3 distinct) of 2 runs (seeds 0, 1)" in text
    assert (
        "| d(alpha) (XSAM) |" in text and "angle(d(alpha) (XSAM)) - angle(g_1 (SAM)) | 2 |" in text
    )
    assert (tmp_path / "out" / "geo.png").stat().st_size > 10_000
    rows = (tmp_path / "out" / "geo.csv").read_text().splitlines()
    assert len(rows) == 7 and "geo/angle/xsam" in rows[0]
    records = [
        json.loads(line)
        for p in (tmp_path / "runs" / "geo").glob("*/diagnostics.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert sum("geo/sphere_max_loss" in r for r in records) == 6
