"""Shared test setup: CPU only, one intra-op thread, W&B never touches the network."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")  # before anything imports wandb
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _one_thread_and_default_dtype():
    """The tests share small machines; restore the default dtype a test may change."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
