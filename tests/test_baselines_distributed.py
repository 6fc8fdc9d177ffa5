"""GSAM and WSAM under DDP: 2 gloo ranks with global batch B equal 1 process with batch B."""

from functools import partial

import torch
from gloo import spawn_ranks
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.lr_scheduler import CosineAnnealingLR

from xsam.optim import GSAM, WSAM, BatchClosure

STEPS, BATCH = 5, 16
METHODS = {
    "gsam": (GSAM, dict(rho_max=0.5, rho_min=0.1, alpha=0.5)),
    "wsam": (WSAM, dict(rho=0.5, gamma=0.8, decouple=True)),
}


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()


def global_batches():
    g = torch.Generator().manual_seed(3)
    return [
        (
            torch.randn(BATCH, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 4, (BATCH,), generator=g),
        )
        for _ in range(STEPS)
    ]


def train(method: str, model: nn.Module, batches, net: nn.Module | None = None):
    cls, settings = METHODS[method]
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt = cls(model.parameters(), base=base, **settings)
    schedule = CosineAnnealingLR(opt, T_max=STEPS)  # GSAM's rho_t moves with it
    for x, y in batches:
        opt.step(BatchClosure(net or model, nn.functional.cross_entropy, x, y))
        schedule.step()
    return [p.detach().clone() for p in model.parameters()]


def rank_main(rank: int, world: int, out: str) -> None:
    shard = [(x[rank::world], y[rank::world]) for x, y in global_batches()]
    result = {}
    for method in METHODS:
        model = mlp()
        result[method] = train(method, model, shard, net=DDP(model))
    if rank == 0:
        torch.save(result, out)


def test_two_ranks_equal_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    spawn_ranks(rank_main, out)
    two = torch.load(out)
    for method in METHODS:
        one = train(method, mlp(), global_batches())
        start = [p.detach() for p in mlp().parameters()]
        assert any(not torch.equal(p, q) for p, q in zip(one, start, strict=True))  # it moved
        for p, q in zip(one, two[method], strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=method)
