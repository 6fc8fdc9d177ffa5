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
refused by the optimizer's pre-existing-gradient check: accumulate inside the step instead
(docs/INTEGRATIONS.md). fp16: :class:`SharpnessAwareMixedPrecision`.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.exceptions import MisconfigurationException


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
    closures). This one hands the closure to the optimizer, which runs every pass under the
    one scale and unscales each (``XSAM(..., grad_scaler=...)``, xsam.optim.amp), then calls
    ``scaler.update()``: an overflow in any pass skips the step and lowers the scale.

        precision = SharpnessAwareMixedPrecision("16-mixed", device="cuda")
        trainer = L.Trainer(plugins=[precision])
        # in configure_optimizers:
        XSAM(self.parameters(), base, model=self, grad_scaler=self.trainer.precision_plugin.scaler)
    """

    def optimizer_step(self, optimizer: Any, model: Any, closure: Callable, **kwargs: Any) -> Any:
        if self.scaler is None:  # bf16-mixed: no scaler, Lightning's own step
            return super().optimizer_step(optimizer, model=model, closure=closure, **kwargs)
        if getattr(getattr(optimizer, "unscaler", None), "scaler", None) is not self.scaler:
            raise MisconfigurationException(
                "SharpnessAwareMixedPrecision: build the optimizer with "
                "grad_scaler=self.trainer.precision_plugin.scaler, so that it unscales each "
                "pass with the plugin's scaler"
            )
        loss = optimizer.step(closure=partial(self._wrap_closure, model, optimizer, closure))
        self.scaler.update()
        return loss
