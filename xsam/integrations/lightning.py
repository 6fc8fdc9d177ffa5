"""PyTorch Lightning with the SAM family: automatic optimization as Lightning users write it.

    class Net(SharpnessAware, L.LightningModule):       # the mixin first
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train/loss", loss)                 # logged once, at w0
            return loss

        def configure_optimizers(self):
            return XSAM(self.parameters(), partial(SGD, lr=0.05), model=self)

Under automatic optimization Lightning hands ``optimizer.step`` a zero-argument closure that
runs ``training_step``, ``zero_grad`` and ``backward``; the optimizer calls it once per pass of
its step (``model=self`` keeps BatchNorm statistics to the first pass). The mixin makes the
other passes invisible to the rest of Lightning:

* ``self.log`` / ``self.log_dict`` inside ``training_step`` record on the first pass only, at
  the unperturbed weights w0; the ascent and search passes log nothing;
* the step's result that Lightning reads back (its progress-bar loss, ``on_train_batch_end``'s
  ``outputs``) is the first pass's, not the last, perturbed one.

Lightning's ``on_before_optimizer_step`` hooks (and gradient clipping, if configured) run after
every pass, since Lightning wraps each call of the closure. ``accumulate_grad_batches`` > 1 is
met by the optimizer's pre-existing-gradient warning (those gradients are discarded):
accumulate inside the step with ``MicroBatchClosure`` instead (docs/INTEGRATIONS.md). fp16:
:class:`SharpnessAwareMixedPrecision`.
"""

from collections.abc import Callable
from typing import Any

from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from xsam.optim import XSAM


class SharpnessAware:
    """Mix into a ``LightningModule`` (before it in the bases) whose optimizer is of the SAM
    family; see the module docstring."""

    _xsam_later_pass = False

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Callable | None = None
    ) -> None:
        passes = FirstPassResult(self, optimizer_closure)
        try:
            optimizer.step(closure=passes)
        finally:
            passes.hand_back()

    def log(self, *args: Any, **kwargs: Any) -> None:
        if not self._xsam_later_pass:
            super().log(*args, **kwargs)

    def log_dict(self, *args: Any, **kwargs: Any) -> None:
        if not self._xsam_later_pass:
            super().log_dict(*args, **kwargs)


class FirstPassResult:
    """Lightning's training closure, called once per pass: logging is off after the first
    call, and the first call's result is what Lightning reads back at the end of the step.

    Lightning's closure keeps its last call's result in ``_result`` (``Closure.__call__``,
    lightning/pytorch/loops/optimization/automatic.py) and the loop reads it after the step;
    the tests run against the real Lightning to catch a change there.
    """

    def __init__(self, module: SharpnessAware, closure: Callable) -> None:
        self.module, self.closure = module, closure
        self.calls, self.first = 0, None

    def __call__(self) -> Any:
        self.module._xsam_later_pass = self.calls > 0
        loss = self.closure()
        if self.calls == 0:
            self.first = getattr(self.closure, "_result", None)
        self.calls += 1
        return loss

    def hand_back(self) -> None:
        self.module._xsam_later_pass = False
        if self.first is not None:
            self.closure._result = self.first


class SharpnessAwareMixedPrecision(MixedPrecision):
    """Lightning's ``precision="16-mixed"`` for the SAM family.

    Lightning's own plugin runs the closure once and then calls ``scaler.step(optimizer)``,
    which leaves no room for the method's other passes (and ``GradScaler.step`` refuses
    closures). This one gives its scaler to the optimizer (``opt.grad_scaler``), which runs
    every pass under the one scale and unscales each (xsam.optim.amp), hands it the closure,
    then calls ``scaler.update()``: an overflow in any pass skips the step and lowers the scale.

        trainer = L.Trainer(plugins=[SharpnessAwareMixedPrecision("16-mixed", device="cuda")])

    The closure goes to the optimizer as Lightning built it, without Lightning's per-pass
    ``on_before_optimizer_step`` hook and gradient clipping: both would see gradients that are
    still scaled, so gradient clipping is refused. Other optimizers get Lightning's own step.
    """

    def optimizer_step(self, optimizer: Any, model: Any, closure: Callable, **kwargs: Any) -> Any:
        if self.scaler is None or not isinstance(optimizer, XSAM):
            return super().optimizer_step(optimizer, model=model, closure=closure, **kwargs)
        if getattr(model.trainer, "gradient_clip_val", None):
            raise MisconfigurationException(
                "SharpnessAwareMixedPrecision: gradient_clip_val would clip scaled gradients; "
                "the SAM family's steps are not clipped"
            )
        optimizer.grad_scaler = self.scaler
        loss = optimizer.step(closure, **kwargs)
        self.scaler.update()
        return loss
