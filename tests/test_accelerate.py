"""The SAM family under the real HuggingFace accelerate, following docs/INTEGRATIONS.md's
recipe: the plain loop's trajectory with everything prepared (model, optimizer, data,
schedule), bf16 autocast from the Accelerator, and accelerate's gradient accumulation met by a
warning that names the fix rather than silently dropped."""

import warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from xsam.optim import XSAM, BatchClosure

SETTINGS = dict(rho=0.2, search_every=2, rho_max=0.4, alpha_max=1.0, alpha_delta=0.25)
BATCHES, BATCH = 6, 16


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; each test makes its own Accelerator."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def loader(dtype=torch.float64) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (BATCHES * BATCH,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def network(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def optimizer_for(model: nn.Module) -> XSAM:
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    return XSAM(model.parameters(), base, model=model, **SETTINGS)


def accelerate_run(accelerator: Accelerator, dtype) -> tuple[nn.Module, list[float]]:
    """The recipe: prepare everything; the closure back-propagates through the Accelerator;
    the loss at w0 is the optimizer's report (a prepared optimizer's step returns None)."""
    model = network(dtype)
    opt = optimizer_for(model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=BATCHES)
    model, opt, data, schedule = accelerator.prepare(model, opt, loader(dtype), schedule)
    losses = []
    for x, y in data:

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            accelerator.backward(loss)
            return loss

        opt.step(closure)
        schedule.step()
        losses.append(float(opt.optimizer.report.loss_0))
    return accelerator.unwrap_model(model), losses


def plain_run(dtype, autocast_dtype=None) -> tuple[nn.Module, list[float]]:
    model = network(dtype)
    opt = optimizer_for(model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=BATCHES)
    losses = []
    for x, y in loader(dtype):
        closure = BatchClosure(model, F.cross_entropy, x, y, autocast_dtype=autocast_dtype)
        losses.append(float(opt.step(closure)))
        schedule.step()
    return model, losses


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_prepared_dynamic_xsam_is_the_plain_loop():
    model, losses = accelerate_run(Accelerator(cpu=True), torch.float64)
    reference, reference_losses = plain_run(torch.float64)
    assert_same_state(model, reference)
    assert losses == reference_losses


def test_bf16_from_the_accelerator_is_the_plain_loops_bf16():
    model, losses = accelerate_run(Accelerator(cpu=True, mixed_precision="bf16"), torch.float32)
    reference, reference_losses = plain_run(torch.float32, autocast_dtype=torch.bfloat16)
    assert_same_state(model, reference)
    assert losses == reference_losses


def test_accelerate_gradient_accumulation_warns_naming_the_fix():
    """accelerator.accumulate's pattern back-propagates outside the optimizer's closure; the
    micro-batches' gradients would be discarded by the step's first pass: warned, naming the
    fix (accumulate inside the step)."""
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = network()
    opt = optimizer_for(model)
    model, opt, data = accelerator.prepare(model, opt, loader())
    batches = iter(data)
    x, y = next(batches)
    with accelerator.accumulate(model):  # the first micro-batch: backward, no step
        accelerator.backward(F.cross_entropy(model(x), y))
        opt.step(BatchClosure(model, F.cross_entropy, x, y))  # not a sync step: a no-op
    x, y = next(batches)
    with accelerator.accumulate(model), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step(BatchClosure(model, F.cross_entropy, x, y))
    assert any("accumulat" in str(w.message).lower() for w in caught), [
        str(w.message) for w in caught
    ]


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_the_recipe_reports_the_loss_at_w0(mixed_precision):
    """The loss the recipe reads back is the clean pass's, not the perturbed one."""
    dtype = torch.float64 if mixed_precision == "no" else torch.float32
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
    model = network(dtype)  # the initial weights accelerate_run starts from
    with torch.no_grad(), accelerator.autocast():
        x, y = next(iter(loader(dtype)))
        expected = float(F.cross_entropy(model.train()(x), y))
    _, losses = accelerate_run(accelerator, dtype)
    assert losses[0] == pytest.approx(expected, rel=1e-6)
