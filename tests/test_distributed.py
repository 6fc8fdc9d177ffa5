"""Data-parallel semantics: 2 gloo ranks with global batch B equal 1 process with batch B."""

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from gloo import free_port, spawn_ranks
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from xsam.optim import XSAM, BatchClosure

REPO = Path(__file__).resolve().parents[1]
STEPS, BATCH = 5, 16
SETTINGS = dict(rho=1.0, steps=2, search_every=2, rho_max=2.0)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [
        (
            torch.randn(BATCH, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 4, (BATCH,), generator=g),
        )
        for _ in range(STEPS)
    ]


def train(model: nn.Module, batches, net: nn.Module | None = None) -> tuple[XSAM, list]:
    opt = XSAM(model.parameters(), base=partial(torch.optim.SGD, lr=0.1, momentum=0.9), **SETTINGS)
    alphas = []
    for x, y in batches:
        opt.step(BatchClosure(net or model, nn.functional.cross_entropy, x, y))
        alphas.append(float(opt.alpha))
    return opt, alphas


def rank_main(rank: int, world: int, out: str) -> None:
    model = mlp()
    shard = [(x[rank::world], y[rank::world]) for x, y in global_batches()]
    opt, alphas = train(model, shard, net=DDP(model))
    if rank == 0:
        torch.save(
            {
                "params": [p.detach() for p in model.parameters()],
                "alphas": alphas,
                "angle": opt.report.angle,
            },
            out,
        )


def test_two_ranks_equal_one_process_including_alpha_search(tmp_path):
    out = tmp_path / "rank0.pt"
    spawn_ranks(rank_main, out)
    two = torch.load(out)
    model = mlp()
    opt, alphas = train(model, global_batches())
    assert alphas == two["alphas"] and len(set(alphas)) > 1  # the same, changing, alpha
    for p, q in zip(model.parameters(), two["params"], strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.report.angle, two["angle"], rtol=0, atol=1e-10)


@pytest.mark.slow
def test_train_py_under_torchrun_with_two_ranks(tmp_path):
    """2 CPU ranks: one run directory written by rank 0, the same run as a single process."""
    args = [
        f"run_root={tmp_path}",
        "epochs=2",
        "progress=false",
        "logger.mode=disabled",
        "model=small_cnn",
        "batch_size=128",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
    ]
    result = subprocess.run(
        [*torchrun, str(REPO / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("*/*/summary.json")]
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    steps = 1437 // 128
    assert records[-1]["step"] == 2 * steps  # each rank took every step of the global batches
