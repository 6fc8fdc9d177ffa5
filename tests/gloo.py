"""Two (or more) gloo ranks on this machine for the DDP tests: each rank is set up, runs the
test's ``body(rank, world, out)``, meets the others and is torn down."""

import os
import socket
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

Body = Callable[[int, int, str], None]


def spawn_ranks(body: Body, out: Path, world: int = 2) -> None:
    """Run ``body`` (a module-level function: it is pickled by name) on ``world`` ranks."""
    args = (world, free_port(), body, str(out))
    mp.start_processes(_rank, args=args, nprocs=world, start_method="spawn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, body: Body, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    body(rank, world, out)
    dist.barrier()  # every rank done before teardown (gloo may abort a rank torn down early)
    dist.destroy_process_group()
