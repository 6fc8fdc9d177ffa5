"""Diagnostics: Hessian eigenvalue and trace on quadratics of known spectrum, the worst-case
ascent, the XSAM plane (against the optimizer), the landscape grid, the circle maximum, exact
weight restores, the figures, and the scripts end to end on a tiny run directory."""

import copy
import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from xsam import optim
from xsam.diagnostics import (
    batch_loss,
    circle_max,
    direction_diagnostics,
    evaluate_sharpness,
    fixed_batches,
    hessian_trace,
    landscape,
    search_alpha,
    top_eigenvalue,
    worst_case_increase,
    xsam_direction,
    xsam_plane,
)
from xsam.diagnostics.landscape import plane_axes
from xsam.diagnostics.plots import plot_alpha, plot_angles, plot_landscape

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SPECTRUM = [5.0, 3.0, 1.0, 0.5, 0.1, -0.2]  # lambda_max = 5 dominates |lambda| too


# --- quadratics 0.5 x^T A x with a known spectrum ---------------------------------------------


def quadratic(rotated: bool, seed: int = 0):
    """A = Q diag(SPECTRUM) Q^T (Q random orthogonal, or I); x split over two tensors."""
    g = torch.Generator().manual_seed(seed)
    n = len(SPECTRUM)
    q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    q = q if rotated else torch.eye(n, dtype=torch.float64)
    a = q @ torch.diag(torch.tensor(SPECTRUM, dtype=torch.float64)) @ q.T
    x = torch.randn(n, generator=g, dtype=torch.float64)
    params = [x[:2].clone().requires_grad_(), x[2:].clone().requires_grad_()]

    def loss_fn():
        v = torch.cat(params)
        return 0.5 * v @ a @ v

    return loss_fn, params, a, q


@pytest.mark.parametrize("rotated", [False, True])
def test_top_eigenvalue_of_a_quadratic(rotated):
    loss_fn, params, _, q = quadratic(rotated)
    eig = top_eigenvalue(
        loss_fn, params, iters=500, tol=1e-10, generator=torch.Generator().manual_seed(1)
    )
    assert eig.converged
    assert eig.eigenvalue == pytest.approx(max(SPECTRUM), rel=1e-6)
    v = torch.cat(eig.eigenvector)
    assert abs(v @ q[:, 0]) == pytest.approx(1.0, abs=1e-4)  # the top eigenvector, up to sign


def test_hessian_trace_of_a_diagonal_quadratic_is_exact():
    # z^T A z = sum_i A_ii z_i^2 = tr(A) for every Rademacher z when A is diagonal
    loss_fn, params, _, _ = quadratic(rotated=False)
    tr = hessian_trace(loss_fn, params, samples=5, generator=torch.Generator().manual_seed(0))
    assert tr.trace == pytest.approx(sum(SPECTRUM), abs=1e-12)
    assert tr.stderr == pytest.approx(0.0, abs=1e-12)


def test_hessian_trace_of_a_rotated_quadratic_within_its_error():
    loss_fn, params, a, _ = quadratic(rotated=True)
    tr = hessian_trace(loss_fn, params, samples=1000, generator=torch.Generator().manual_seed(0))
    assert tr.stderr > 0
    assert abs(tr.trace - sum(SPECTRUM)) < 4 * tr.stderr
    # the estimator's variance is 2 sum_{i != j} A_ij^2
    off = (a**2).sum() - (torch.diagonal(a) ** 2).sum()
    assert tr.stderr == pytest.approx(math.sqrt(2 * off.item() / 1000), rel=0.2)


def test_worst_case_increase_along_the_top_eigenvector_is_exact():
    loss_fn, params, _, q = quadratic(rotated=True)
    c, rho = 0.7, 0.3  # from x0 = c q1 the worst point of the ball is (c + rho) q1
    with torch.no_grad():
        torch._foreach_copy_(params, [(c * q[:, 0])[:2], (c * q[:, 0])[2:]])
    worst = worst_case_increase(loss_fn, params, rho=rho, steps=10)
    assert worst.increase == pytest.approx(0.5 * 5.0 * ((c + rho) ** 2 - c**2), rel=1e-9)
    assert worst.delta_norm == pytest.approx(rho, rel=1e-9)


def test_worst_case_increase_is_between_one_step_and_the_taylor_bound():
    loss_fn, params, a, _ = quadratic(rotated=True, seed=3)
    rho = 0.5
    x0 = torch.cat(params).detach()
    g = a @ x0
    one_step = loss_fn_at(a, x0 + rho * g / g.norm()) - loss_fn_at(a, x0)  # SAM's first step
    bound = g.norm().item() * rho + 0.5 * max(SPECTRUM) * rho**2  # exact for a quadratic
    worst = worst_case_increase(loss_fn, params, rho=rho, steps=30)
    assert one_step - 1e-12 <= worst.increase <= bound
    assert worst.delta_norm <= rho * (1 + 1e-12)


def loss_fn_at(a, x):
    return (0.5 * x @ a @ x).item()


# --- a small network with BatchNorm --------------------------------------------------------


@pytest.fixture
def net():
    """A trained-a-little MLP with BatchNorm, one batch, and the closure on it."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 10)
    )
    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 10, (48,))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, [(x, y)]


def flat_loss(model, batch, flat, bn_train=True):
    """An independent evaluation: a copy of the model with the flat weights loaded."""
    other = copy.deepcopy(model)
    nn.utils.vector_to_parameters(flat, other.parameters())
    other.train(bn_train)  # no dropout here, so train mode is "BN on batch statistics"
    with torch.no_grad():
        return nn.functional.cross_entropy(other(batch[0][0]), batch[0][1]).item()


def flat(vs):
    return torch.cat([v.reshape(-1) for v in vs]).double()


@pytest.mark.parametrize("steps", [1, 3])
def test_plane_geometry(net, steps):
    model, batch = net
    params = list(model.parameters())
    plane = xsam_plane(
        batch_loss(model, nn.functional.cross_entropy, batch, bn="batch"),
        params,
        rho=0.2,
        steps=steps,
    )
    v0, v1 = flat(plane.v0), flat(plane.v1)
    assert v0.norm().item() == pytest.approx(1, abs=1e-6)
    assert plane.t == pytest.approx(math.acos((v0 @ v1).item()), abs=1e-6)
    if steps == 1:  # v0 = g_0 / ||g_0|| and theta_1 is rho away
        assert torch.allclose(v0, flat(plane.g_0), atol=1e-6)
        assert plane.ascent_norm == pytest.approx(0.2, rel=1e-5)
    for alpha, end in [(0.0, v0), (1.0, v1)]:
        assert torch.allclose(flat(xsam_direction(plane, alpha)), end, atol=1e-6)
    for alpha in [0.3, 1.0, 1.7]:  # the arc stays on the unit sphere
        assert flat(xsam_direction(plane, alpha)).norm().item() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_plane_matches_the_optimizer(net, steps):
    """An independent recomputation of what XSAM measures on one step."""
    model, batch = net
    (x, y), params = batch[0], list(model.parameters())
    closure_fn = batch_loss(model, nn.functional.cross_entropy, batch, bn="batch")
    plane = xsam_plane(closure_fn, params, rho=0.2, steps=steps)
    alpha, _, losses = search_alpha(closure_fn, params, plane, rho_max=0.4)
    opt = optim.XSAM(
        params,
        base=lambda p: torch.optim.SGD(p, lr=0.0),
        rho=0.2,
        steps=steps,
        search_every=1,
        rho_max=0.4,
    )
    d = opt.step_and_report(optim.BatchClosure(model, nn.functional.cross_entropy, x, y))
    assert d.angle.item() == pytest.approx(plane.t, abs=1e-5)
    assert d.grad_norm_0.item() == pytest.approx(plane.grad_norm_0, rel=1e-5)
    assert d.grad_norm_k.item() == pytest.approx(plane.grad_norm_k, rel=1e-5)
    assert d.loss_k.item() == pytest.approx(plane.loss_k, rel=1e-5)
    np.testing.assert_allclose(d.search_losses.cpu().numpy(), losses, rtol=1e-5)


def test_landscape_grid_equals_direct_loss_evaluations(net):
    model, batch = net
    params = list(model.parameters())
    loss_fn = batch_loss(model, nn.functional.cross_entropy, batch, bn="batch")
    plane = xsam_plane(loss_fn, params, rho=0.2, steps=2)
    xs, ys = np.array([-0.3, 0.0, 0.25]), np.array([-0.2, 0.0, 0.3, 0.5])  # not square
    land = landscape(loss_fn, params, plane, alpha=0.5, rho_max=0.4, xs=xs, ys=ys, n_angles=36)
    assert land.loss.shape == (len(ys), len(xs))
    w0, v0, v1 = flat(params), flat(plane.v0), flat(plane.v1)
    e0 = v0 / v0.norm()  # Gram-Schmidt, written out again
    e1 = v1 - (v1 @ e0) * e0
    e1 = e1 / e1.norm()
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            direct = flat_loss(model, batch, (w0 + x * e0 + y * e1).float())
            assert land.loss[j, i] == pytest.approx(direct, rel=1e-5, abs=1e-6)
    assert land.loss[1, 1] == pytest.approx(plane.loss_0, rel=1e-6)  # (0, 0) is w0


@pytest.mark.parametrize("steps", [1, 2])
def test_circle_maximum_beats_every_candidate(net, steps):
    model, batch = net
    params = list(model.parameters())
    loss_fn = batch_loss(model, nn.functional.cross_entropy, batch, bn="batch")
    rho_max = 0.5
    plane = xsam_plane(loss_fn, params, rho=0.2, steps=steps)
    circ = circle_max(
        loss_fn, params, plane, plane_axes(plane), alpha=1.4, rho_max=rho_max, n_angles=90
    )
    w0, v0, v1 = flat(params), flat(plane.v0), flat(plane.v1)
    t = plane.t
    on_plane = {
        "v0": v0,
        "g_k": v1,
        "xsam": (math.sin(-0.4 * t) * v0 + math.sin(1.4 * t) * v1) / math.sin(t),
    }
    if steps == 1:
        on_plane["g_0"] = flat(plane.g_0)
    for name, d in on_plane.items():
        direct = flat_loss(model, batch, (w0 + rho_max * d).float())
        assert circ.candidate_loss[name] == pytest.approx(direct, rel=1e-5)
        assert circ.loss >= direct - 1e-6, name
    assert circ.loss == pytest.approx(circ.losses.max())
    assert set(circ.angle_to_max) == {"g_0", "v0", "g_k", "xsam"}
    assert all(0 <= a <= math.pi for a in circ.angle_to_max.values())


# --- exact restores ----------------------------------------------------------------------


def run_plane(loss_fn, params):
    return xsam_plane(loss_fn, params, rho=0.2, steps=2)


DIAGNOSTICS = {
    "top_eigenvalue": lambda f, p: top_eigenvalue(f, p, iters=5, tol=0.0),
    "hessian_trace": lambda f, p: hessian_trace(f, p, samples=3),
    "worst_case_increase": lambda f, p: worst_case_increase(f, p, rho=0.3, steps=4),
    "xsam_plane": run_plane,
    "search_alpha": lambda f, p: search_alpha(f, p, run_plane(f, p), rho_max=0.4),
    "landscape": lambda f, p: landscape(
        f,
        p,
        run_plane(f, p),
        alpha=1.2,
        rho_max=0.4,
        xs=np.linspace(-1, 1, 3),
        ys=np.zeros(2),
        n_angles=8,
    ),
    "direction_diagnostics": lambda f, p: direction_diagnostics(
        f, p, rho=0.2, steps=2, rho_max=0.4, alpha=1.0, n_angles=8
    ),
}


@pytest.mark.parametrize("bn", ["eval", "batch"])
@pytest.mark.parametrize("name", sorted(DIAGNOSTICS))
def test_diagnostics_leave_the_model_bit_exactly_as_it_was(net, name, bn):
    model, batch = net
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}  # weights and BN buffers
    DIAGNOSTICS[name](
        batch_loss(model, nn.functional.cross_entropy, batch, bn=bn), list(model.parameters())
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_evaluate_sharpness(net):
    model, batch = net
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = evaluate_sharpness(
        model, batch, nn.CrossEntropyLoss(), rho=0.1, ascent_steps=5, eig_iters=20, trace_samples=10
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
    assert r["sharpness/top_eigenvalue"] > 0 and r["sharpness/trace"] > 0
    assert 0 < r["sharpness/worst_case_increase"] and r["sharpness/delta_norm"] <= 0.1 + 1e-6
    assert r["sharpness/loss"] == pytest.approx(
        flat_loss(model, batch, flat(model.parameters()).float(), bn_train=False), rel=1e-5
    )


# --- figures ---------------------------------------------------------------------------


def assert_png(path: Path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def records(n=12, scale=1.0):
    return [
        {
            "step": 10 * i,
            "xsam/alpha": 0.1 * (i // 3),
            "xsam/angle": 0.3 + 0.01 * i,
            "diag/alpha_star": 0.1 * (i // 3) + 0.05,
            "diag/angle/g_0": 0.5 * scale,
            "diag/angle/v0": 0.4,
            "diag/angle/g_k": 0.2,
            "diag/angle/xsam": 0.1,
        }
        for i in range(n)
    ]


def test_landscape_figure_renders(net, tmp_path):
    model, batch = net
    params = list(model.parameters())
    loss_fn = batch_loss(model, nn.functional.cross_entropy, batch, bn="batch")
    plane = xsam_plane(loss_fn, params, rho=0.2, steps=2)
    land = landscape(
        loss_fn,
        params,
        plane,
        alpha=1.2,
        rho_max=0.4,
        xs=np.linspace(-0.6, 0.6, 7),
        ys=np.linspace(-0.6, 0.6, 7),
        n_angles=24,
    )
    fig = plot_landscape(land, tmp_path / "figures" / "landscape.png")
    assert fig.axes
    assert_png(tmp_path / "figures" / "landscape.png")


@pytest.mark.parametrize("plot", [plot_alpha, plot_angles])
@pytest.mark.parametrize("runs", ["several", "empty"])
def test_training_figures_render(plot, runs, tmp_path):
    data = {
        "several": {"a": records(), "b": records(5, 2.0)},
        "empty": [{"step": 0, "train/loss": 1.0}],
    }[runs]
    plot(data, tmp_path / f"{runs}.png")
    assert_png(tmp_path / f"{runs}.png")


def drawn_value(line, x: float) -> float:
    """The y a (step) line shows at x: the horizontal segment over x."""
    from matplotlib.cbook import STEP_LOOKUP_MAP

    xs, ys = STEP_LOOKUP_MAP[line.get_drawstyle()](*line.get_data())
    (i,) = [i for i in range(len(xs) - 1) if xs[i] < x < xs[i + 1] and ys[i] == ys[i + 1]]
    return float(ys[i])


def test_alpha_figure_draws_each_epochs_alpha_over_that_epoch(tmp_path):
    """metrics.jsonl: the line of epoch e has the step count at its end and the alpha its
    steps used, so alpha 0.5 covers steps (0, 10] and 1.5 covers (10, 20]."""
    epochs = [{"step": 10, "xsam/alpha": 0.5}, {"step": 20, "xsam/alpha": 1.5}]
    (line,) = plot_alpha(epochs, tmp_path / "alpha.png").axes[0].lines
    assert [drawn_value(line, x) for x in (5, 15)] == [0.5, 1.5]


def test_angle_figure_title_says_what_it_shows(tmp_path):
    only_t = [{"step": 10, "xsam/angle": 0.3}]
    fig = plot_angles(only_t, tmp_path / "t.png")
    assert fig.axes[0].get_title() == "t = angle(v0, v1)"
    probed = [{"step": 10, "diag/t": 0.3, "diag/angle/xsam": 0.1}]
    assert "true maximum" in plot_angles(probed, tmp_path / "a.png").axes[0].get_title()


@pytest.mark.parametrize("scope", ["all", "weight"])
@pytest.mark.parametrize("steps", [1, 3])
def test_plane_matches_the_optimizer_with_the_asam_ascent(net, steps, scope):
    """asam / xsam_asam runs: the probe measures the optimizer's adaptive plane."""
    model, batch = net
    (x, y), params = batch[0], list(model.parameters())
    closure_fn = batch_loss(model, nn.functional.cross_entropy, batch, bn="batch")
    opt = optim.XSAM(
        model.named_parameters(),
        base=lambda p: torch.optim.SGD(p, lr=0.0),
        rho=0.5,
        steps=steps,
        adaptive=True,
        eta=0.01,
        adaptive_scope=scope,
    )
    ascent = dict(adaptive=True, eta=0.01, unscaled=opt.unscaled)
    assert bool(opt.unscaled) == (scope == "weight")  # the biases
    plane = xsam_plane(closure_fn, params, rho=0.5, steps=steps, **ascent)
    euclidean = xsam_plane(closure_fn, params, rho=0.5, steps=steps)
    closure = optim.BatchClosure(model, nn.functional.cross_entropy, x, y)
    d = opt.step_and_report(closure, angle=True)  # SAM's update: the angle only when asked
    assert d.angle.item() == pytest.approx(plane.t, abs=1e-5)
    assert d.loss_k.item() == pytest.approx(plane.loss_k, rel=1e-5)
    assert d.grad_norm_k.item() == pytest.approx(plane.grad_norm_k, rel=1e-5)
    assert abs(euclidean.t - plane.t) > 1e-3  # the Euclidean plane is another one


# --- the scripts, end to end on a tiny run directory ---------------------------------------

TINY_CONFIG = """\
seed: 0
batch_size: 64
device: cpu
dataset:
  name: digits
  num_classes: 10
  image_size: 8
  in_channels: 1
  splits:
    _target_: xsam.data.digits.digits_splits
model:
  _target_: torch.nn.Sequential
  _args_:
    - {_target_: torch.nn.Flatten}
    - {_target_: torch.nn.Linear, in_features: 64, out_features: 16}
    - {_target_: torch.nn.BatchNorm1d, num_features: 16}
    - {_target_: torch.nn.ReLU}
    - {_target_: torch.nn.Linear, in_features: 16, out_features: 10}
optimizer:
  rho: 0.15
  steps: 2
  alpha: 1.0
  search_every: epoch
  rho_max: 0.3
  alpha_max: 2.0
  alpha_delta: 0.1
logger:
  project: xsam-test
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """config.yaml, checkpoint.pt (a briefly trained model), metrics.jsonl, meta.json."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run = tmp_path_factory.mktemp("runs") / "digits-tiny-xsam-s0-00000000"
    run.mkdir()
    (run / "config.yaml").write_text(TINY_CONFIG)
    cfg = OmegaConf.load(run / "config.yaml")
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    batches = fixed_batches(instantiate(cfg.dataset.splits).train, batches=4, batch_size=64)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for x, y in batches * 2:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save({"model": model.state_dict(), "epoch": 1}, run / "checkpoint.pt")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    (run / "meta.json").write_text(json.dumps({"run_id": "tiny0000"}))
    return run


@pytest.fixture
def script(monkeypatch):
    """Import a script from scripts/ as a module (they import each other by plain name)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module


def test_eval_checkpoint_end_to_end(run_dir, script, capsys):
    result = script("eval_checkpoint").main(
        [
            str(run_dir),
            "--batches",
            "2",
            "--eig-iters",
            "20",
            "--trace-samples",
            "8",
            "--ascent-steps",
            "5",
            "--rho",
            "0.1",
        ]
    )
    saved = json.loads((run_dir / "sharpness.json").read_text())
    assert saved == result  # JSON round-trips floats exactly
    for key in ["sharpness/top_eigenvalue", "sharpness/trace", "sharpness/worst_case_increase"]:
        assert math.isfinite(saved[key]) and saved[key] > 0
    assert saved["sharpness/examples"] == 128 and saved["sharpness/rho"] == 0.1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "lambda_max=" in out[0]


def test_plot_landscape_end_to_end(run_dir, script):
    land = script("plot_landscape").main([str(run_dir), "--grid", "5", "--angles", "24"])
    assert land.steps == 2 and land.rho == 0.15 and land.rho_max == 0.3  # the run's own
    assert_png(run_dir / "figures" / "landscape.png")
    saved = np.load(run_dir / "figures" / "landscape.npz")
    np.testing.assert_array_equal(saved["loss"], land.loss)
    assert json.loads(str(saved["meta"]))["alpha"] == land.alpha


def test_plot_alpha_end_to_end(run_dir, script):
    pngs = script("plot_alpha").main([str(run_dir)])
    for path in pngs.values():
        assert path.parent == run_dir / "figures"
        assert_png(path)
    other = run_dir.parent / "other-run"  # several runs: figures/ in their common parent
    other.mkdir(exist_ok=True)
    (other / "diagnostics.jsonl").write_text(json.dumps(records(3)[1]) + "\n{torn")
    pngs = script("plot_alpha").main([str(run_dir), str(other)])
    assert all(p.parent == run_dir.parent / "figures" for p in pngs.values())


def test_figures_go_to_the_runs_wandb_run(run_dir, script, monkeypatch):
    """A real offline W&B run, read back with wandb's own CLI: same id, the images logged."""
    monkeypatch.delenv("WANDB_MODE", raising=False)  # unset: offline, never online by accident
    pngs = script("plot_alpha").main([str(run_dir), "--wandb"])
    (offline,) = (run_dir / "wandb").glob("offline-run-*-tiny0000")
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(offline)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x)["history"]["item"] for x in out.stdout.splitlines() if '"history"' in x]
    logged = {k.split(".")[0] for row in rows for k in row if not k.startswith("_")}
    assert logged == set(pngs)
    assert all(row[f"{key}._type"] == "image-file" for row in rows for key in pngs)
