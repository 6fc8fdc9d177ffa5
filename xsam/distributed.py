"""Data-parallel training with torch.distributed (torchrun, or SLURM tasks through submitit).

Semantics of the SAM family under DDP: gradients are averaged across ranks on every backward
pass, so every rank sees the same g_i, v0, v1 and angle; the optimizer averages the alpha-search
losses across ranks, so every rank picks the same alpha. Ranks therefore never diverge, and a
run on W ranks with global batch B matches one process with batch B (up to float rounding; with
BatchNorm, only with ``sync_bn=true``, since each rank otherwise normalises its own B/W samples).
"""

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistEnv:
    """Join the process group that torchrun (or submitit) described in the environment."""
    export_slurm_tasks()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        atexit.register(leave_process_group)
    return env


def leave_process_group() -> None:
    """Destroy the process group before the interpreter goes: a gloo group torn down with it
    can abort the process ("terminate called without an active exception", exit -6) after
    the run has finished."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(*values: torch.Tensor) -> list[torch.Tensor]:
    """Sum scalars across ranks (one all-reduce); identity in a single process."""
    stacked = torch.stack([v.double() for v in values])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stacked)
    return list(stacked.unbind())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one rank (a collective under DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)


def export_slurm_tasks() -> None:
    """In a submitit SLURM job with several tasks, export what torchrun would: RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or "WORLD_SIZE" in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        # every rank keeps every GPU visible: init_distributed picks cuda:LOCAL_RANK itself
        submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
