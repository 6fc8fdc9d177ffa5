"""The SAM family under the real PyTorch Lightning: automatic and manual optimization give the
plain loop's trajectory, BatchNorm statistics update once per step, the logged training loss
is the one at w0, and a checkpointed run resumes exactly."""

import csv
from functools import partial

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from xsam.integrations.lightning import SharpnessAware, SharpnessAwareMixedPrecision
from xsam.optim import GSAM, WSAM, XSAM, BatchClosure

METHODS = {
    "sgd": dict(rho=0.0, steps=0),
    "sam": dict(rho=0.1),
    "sgd_plus": dict(rho=0.1, alpha=0.0),
    "xsam_static": dict(rho=0.1, alpha=0.5),
    "msam_k2": dict(rho=0.1, steps=2),
    "xsam_dynamic": dict(rho=0.2, search_every=2, rho_max=0.4, alpha_max=1.0, alpha_delta=0.25),
    "asam": dict(rho=0.5, adaptive=True),
}
BATCHES, BATCH = 6, 16


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (BATCHES * BATCH,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def network() -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


def build_optimizer(module: nn.Module, settings: dict):
    if settings.get("method") == "gsam":
        return GSAM(module.parameters(), partial(torch.optim.SGD, lr=0.1), model=module)
    if settings.get("method") == "wsam":
        return WSAM(module.parameters(), partial(torch.optim.SGD, lr=0.1), model=module)
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    return XSAM(module.named_parameters(), base, model=module, **settings)


class Automatic(SharpnessAware, L.LightningModule):
    def __init__(self, settings: dict, schedule: bool = False) -> None:
        super().__init__()
        self.net, self.settings, self.schedule = network(), settings, schedule
        self.outputs: list[float] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.outputs.append(float(outputs["loss"]))

    def configure_optimizers(self):
        opt = build_optimizer(self.net, self.settings)
        if not self.schedule:
            return opt
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2 * BATCHES)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


class Manual(L.LightningModule):
    def __init__(self, settings: dict) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net, self.settings = network(), settings
        self.outputs: list[float] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt = self.optimizers()

        def closure():  # the standard torch closure, Lightning's backward
            opt.zero_grad()
            loss = F.cross_entropy(self(x), y)
            self.manual_backward(loss)
            return loss

        loss = opt.step(closure=closure)  # the loss at w0
        self.outputs.append(float(loss))
        self.log("train_loss", loss, on_step=True, on_epoch=False)

    def configure_optimizers(self):
        return build_optimizer(self.net, self.settings)


def trainer(tmp_path, epochs: int = 1, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="logs"),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def plain_loop(settings: dict, epochs: int = 1) -> tuple[nn.Module, list[float]]:
    """The reference: the suite's own loop step, BatchClosure and opt.step."""
    net = network()
    opt, losses = build_optimizer(net, settings), []
    for _ in range(epochs):
        for x, y in loader():
            losses.append(float(opt.step(BatchClosure(net, F.cross_entropy, x, y))))
    return net, losses


def logged_losses(tmp_path) -> list[float]:
    (metrics,) = tmp_path.glob("logs/version_*/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    return [float(r["train_loss"]) for r in rows if r.get("train_loss")]


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Weights and BatchNorm buffers (running statistics, batch count) alike, bit for bit."""
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", [Automatic, Manual])
def test_lightning_step_is_the_plain_loops_step(tmp_path, method, mode):
    """Every method, automatic and manual optimization: the same weights and BN statistics
    as the plain loop, and the logged loss (and the step's output) the one at w0."""
    module = mode(METHODS[method])
    trainer(tmp_path).fit(module, loader())
    reference, losses = plain_loop(METHODS[method])
    assert_same_state(module.net, reference)
    assert module.outputs == losses
    assert logged_losses(tmp_path) == pytest.approx(losses, rel=1e-6)  # (the CSV rounds)
    assert int(module.net[1].num_batches_tracked) == BATCHES  # once per step
    assert module.trainer.optimizers[0].step_count == BATCHES


@pytest.mark.parametrize("method", ["gsam", "wsam"])
def test_the_baselines_under_lightning(tmp_path, method):
    module = Automatic({"method": method})
    trainer(tmp_path).fit(module, loader())
    reference, losses = plain_loop({"method": method})
    assert_same_state(module.net, reference)
    assert module.outputs == losses


def test_checkpointed_run_with_a_step_schedule_resumes_exactly(tmp_path):
    """One epoch, a Lightning checkpoint, a second epoch from it: the weights, BN statistics,
    optimizer state and learning rate of two uninterrupted epochs."""
    settings = METHODS["xsam_dynamic"]
    whole = Automatic(settings, schedule=True)
    trainer(tmp_path / "whole", epochs=2).fit(whole, loader())

    first = Automatic(settings, schedule=True)
    first_half = trainer(tmp_path / "first", epochs=1)
    first_half.fit(first, loader())
    first_half.save_checkpoint(tmp_path / "epoch1.ckpt")
    second = Automatic(settings, schedule=True)
    second_half = trainer(tmp_path / "second", epochs=2)
    second_half.fit(second, loader(), ckpt_path=tmp_path / "epoch1.ckpt")

    assert_same_state(second.net, whole.net)
    assert first.outputs + second.outputs == whole.outputs
    resumed, uninterrupted = second_half.optimizers[0], whole.trainer.optimizers[0]
    assert resumed.param_groups[0]["lr"] == uninterrupted.param_groups[0]["lr"]
    assert resumed.step_count == uninterrupted.step_count == 2 * BATCHES
    assert torch.equal(resumed.alpha, uninterrupted.alpha)


class Fp16(Automatic):
    def configure_optimizers(self):  # no scaler here: the plugin gives the optimizer its own
        base = partial(torch.optim.SGD, lr=0.1, momentum=0.9)
        return XSAM(self.parameters(), base, model=self, **self.settings)


INIT_SCALE = 2.0**19  # the scaled fp16 gradients overflow until the scaler has backed off


def fp16_plain_loop(settings: dict, batches) -> tuple[nn.Module, torch.amp.GradScaler, XSAM]:
    net, scaler = network().float(), torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    opt = XSAM(net.parameters(), base, model=net, grad_scaler=scaler, **settings)
    for x, y in batches:
        closure = BatchClosure(
            net, F.cross_entropy, x, y, autocast_dtype=torch.float16, grad_scaler=scaler
        )
        opt.step(closure)
        scaler.update()
    return net, scaler, opt


@pytest.mark.parametrize("method", ["sam", "xsam_dynamic"])
def test_fp16_with_the_plugin_is_the_plain_gradscaler_loop(tmp_path, method):
    """precision 16-mixed through SharpnessAwareMixedPrecision: the plain GradScaler loop's
    weights, BN statistics, skipped steps and scale; the steps whose scaled gradients
    overflow are skipped and lower the scale, the others train."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, 6, generator=g)
    y = torch.randint(0, 3, (BATCHES * BATCH,), generator=g)
    data = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)

    module = Fp16(METHODS[method])
    module.net = module.net.float()
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    plugin = SharpnessAwareMixedPrecision("16-mixed", device="cpu", scaler=scaler)
    trainer(tmp_path, plugins=[plugin]).fit(module, data)

    reference, plain_scaler, plain_opt = fp16_plain_loop(METHODS[method], data)
    assert_same_state(module.net, reference)
    skipped = int(module.trainer.optimizers[0].skipped_steps)
    assert skipped == int(plain_opt.skipped_steps)
    assert 1 <= skipped < BATCHES  # some steps overflowed, and the rest trained
    assert scaler.get_scale() == plain_scaler.get_scale() == INIT_SCALE * 0.5**skipped


def test_the_plugin_refuses_gradient_clipping(tmp_path):
    module = Fp16(METHODS["sam"])
    module.net = module.net.float()
    plugin = SharpnessAwareMixedPrecision("16-mixed", device="cpu")
    data = DataLoader(TensorDataset(torch.randn(32, 6), torch.randint(0, 3, (32,))), batch_size=16)
    with pytest.raises(Exception, match="gradient_clip_val would clip scaled gradients"):
        trainer(tmp_path, plugins=[plugin], gradient_clip_val=1.0).fit(module, data)
