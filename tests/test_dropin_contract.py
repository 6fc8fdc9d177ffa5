"""torch.optim's contract: defaults and state are the base's, so torch's cyclic schedulers and
torch.distributed.checkpoint work; state_dict() resumes exactly, in torch's layout and the
earlier one."""

import copy
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from small_nets import batches, bn_net
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from xsam.optim import GSAM, WSAM, XSAM, BatchClosure

GOLDEN = Path(__file__).resolve().parent / "golden"

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one process

SGD = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
METHODS = {
    "xsam_dynamic": (XSAM, dict(rho=0.1, steps=2, search_every=3, alpha_delta=0.25)),
    "asam": (XSAM, dict(adaptive=True)),
    "gsam": (GSAM, dict()),
    "wsam": (WSAM, dict()),
}


def train(model, opt, data, schedule=None) -> None:
    for x, y in data:
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
        if schedule is not None:
            schedule.step()


def test_defaults_and_state_are_the_base_optimizers():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    assert opt.defaults is opt.base.defaults and opt.defaults["momentum"] == 0.9
    assert opt.state is opt.base.state and opt.param_groups is opt.base.param_groups
    train(model, opt, batches(1))
    assert set(opt.state) == set(model.parameters())  # momentum buffers, for tools to walk
    opt.load_state_dict(opt.state_dict())
    assert opt.state is opt.base.state and opt.param_groups is opt.base.param_groups


@pytest.mark.parametrize(
    "make",
    [
        partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.2, total_steps=6),
        partial(torch.optim.lr_scheduler.CyclicLR, base_lr=0.01, max_lr=0.2, step_size_up=2),
    ],
    ids=["OneCycleLR", "CyclicLR"],
)
def test_cyclic_schedulers_drive_lr_and_momentum_as_on_the_base(make):
    """The schedulers that cycle momentum (they read ``defaults``) set the same lr and
    momentum on XSAM's groups as on a bare SGD's."""
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    plain = SGD(bn_net().parameters())
    schedule, plain_schedule = make(opt), make(plain)
    for x, y in batches(5):
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
        schedule.step()
        plain.step()
        plain_schedule.step()
        for key in ("lr", "momentum"):
            assert opt.param_groups[0][key] == plain.param_groups[0][key], key
    assert opt.param_groups[0]["momentum"] != 0.9  # the momentum did cycle


def trajectories(cls, settings, resume):
    """Model weights after 8 steps straight, and after 4 + ``resume`` + 4."""
    data, out = batches(8), []
    for interrupted in (False, True):
        model = bn_net()
        opt = cls(model.parameters(), base=SGD, **settings)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8)
        train(model, opt, data[:4], schedule)
        if interrupted:
            saved = copy.deepcopy((model.state_dict(), schedule.state_dict()))
            model_b = bn_net()
            opt_b = cls(model_b.parameters(), base=SGD, **settings)
            model_b.load_state_dict(saved[0])
            resume(model, opt, model_b, opt_b)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt_b, T_max=8)
            schedule.load_state_dict(saved[1])
            model, opt = model_b, opt_b
        train(model, opt, data[4:], schedule)
        out.append((model.state_dict(), opt))
    return out


def assert_same(out) -> None:
    (a, opt_a), (b, opt_b) = out
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    assert torch.equal(opt_a.alpha, opt_b.alpha)
    assert (opt_a.step_count, opt_a.forward_passes) == (opt_b.step_count, opt_b.forward_passes)


def dcp_resume(model, opt, model_b, opt_b, path) -> None:
    """Through torch.distributed.checkpoint: get, save to disk, load into the template a
    fresh optimizer gives (which DCP initialises with a closure-free lr-0 step), set."""
    dcp.save({"optim": get_optimizer_state_dict(model, opt)}, checkpoint_id=path)
    template = {"optim": get_optimizer_state_dict(model_b, opt_b)}
    dcp.load(template, checkpoint_id=path)
    set_optimizer_state_dict(model_b, opt_b, template["optim"])


@pytest.mark.parametrize("name", list(METHODS))
def test_dcp_round_trip_resumes_exactly(name, tmp_path):
    cls, settings = METHODS[name]
    resume = partial(dcp_resume, path=tmp_path / "ckpt")
    assert_same(trajectories(cls, settings, resume))


def test_dcp_state_dict_is_keyed_by_parameter_name():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, search_every=2, alpha_delta=0.5)
    train(model, opt, batches(2))
    osd = get_optimizer_state_dict(model, opt)
    assert set(osd["state"]) == {name for name, _ in model.named_parameters()}
    assert osd["param_groups"][0]["xsam_step_count"] == 2
    assert torch.equal(osd["param_groups"][0]["xsam_alpha"], opt.alpha.cpu())


def earlier_layout(opt) -> dict:
    """``XSAM.state_dict()`` as the code wrote it before torch's layout (checkpoints on disk)."""
    return {
        "base": opt.base.state_dict(),
        "alpha": opt.alpha.detach().cpu(),
        "step_count": opt.step_count,
        "forward_passes": opt.forward_passes,
        "backward_passes": opt.backward_passes,
        "skipped_steps": opt.skipped_steps.cpu(),
    }


@pytest.mark.parametrize("layout", ["torch", "earlier"])
@pytest.mark.parametrize("name", list(METHODS))
def test_state_dict_through_torch_save_resumes_exactly(name, layout, tmp_path):
    cls, settings = METHODS[name]

    def resume(model, opt, model_b, opt_b):
        saved = opt.state_dict() if layout == "torch" else earlier_layout(opt)
        torch.save(saved, tmp_path / "opt.pt")
        opt_b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))

    assert_same(trajectories(cls, settings, resume))


def test_loaded_state_keeps_the_family_keys_out_of_the_live_groups():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    train(model, opt, batches(1))
    opt.load_state_dict(opt.state_dict())
    assert not [k for g in opt.param_groups for k in g if k.startswith("xsam_")]


def test_a_bare_base_state_dict_is_refused_naming_what_is_missing():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    with pytest.raises(ValueError, match="lacks xsam_alpha"):
        opt.load_state_dict(SGD(model.parameters()).state_dict())


def test_state_dict_keeps_the_top_level_scalars_checkpoint_readers_use():
    """train.py reads ``step_count`` from a checkpoint's optimizer entry; the scalars stay at
    the top level, next to torch's ``state`` and ``param_groups``."""
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD, search_every=2, alpha_delta=0.5)
    train(model, opt, batches(3))
    saved = opt.state_dict()
    assert saved["step_count"] == 3 and torch.equal(saved["alpha"], opt.alpha.cpu())
    assert set(saved) >= {"state", "param_groups", "forward_passes", "skipped_steps"}


def test_a_checkpoint_written_by_the_earlier_code_resumes_exactly():
    """tests/golden/xsam_optimizer_6597aa2.pt was written by the code at commit 6597aa2 (the
    optimizer's earlier ``{"base": ..., "alpha": ...}`` layout): dynamic XSAM over momentum SGD
    with BatchNorm, 3 steps saved, then the weights after 2 more steps of that code. Loaded
    here, the same 2 steps reach those weights bit for bit."""
    saved = torch.load(GOLDEN / "xsam_optimizer_6597aa2.pt", weights_only=True)
    assert "base" in saved["optimizer"]  # the earlier layout
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as when the file was written: the same summation order
    try:
        resume_earlier_checkpoint(saved)
    finally:
        torch.set_num_threads(threads)


def resume_earlier_checkpoint(saved: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    settings = dict(rho=0.2, search_every=2, rho_max=0.4, alpha_max=1.0, alpha_delta=0.25)
    opt = XSAM(model.parameters(), base, **settings)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    g = torch.Generator().manual_seed(1)
    data = [
        (
            torch.randn(16, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (16,), generator=g),
        )
        for _ in range(5)
    ]
    for x, y in data[3:]:
        opt.step(BatchClosure(model, nn.functional.cross_entropy, x, y))
    assert opt.step_count == 5
    for key, value in saved["model_after_5"].items():
        assert torch.equal(model.state_dict()[key], value), key


def test_the_two_copies_of_the_scalars_must_agree():
    model = bn_net()
    opt = XSAM(model.parameters(), base=SGD)
    train(model, opt, batches(2))
    saved = opt.state_dict()
    saved["step_count"] += 1  # edited in one place only
    with pytest.raises(ValueError, match="step_count is 3 at the top level but 2"):
        XSAM(bn_net().parameters(), base=SGD).load_state_dict(saved)
