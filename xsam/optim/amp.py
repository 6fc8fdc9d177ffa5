"""fp16 training of the SAM family with ``torch.amp.GradScaler``.

One step has several gradient passes; with a scaler all of them use the scale the scaler
holds when the step starts (it changes only in ``scaler.update()``, after the step). The
closure back-propagates ``scaler.scale(loss)``; the optimizer unscales each pass's gradients
right after it, so norms, the plane, the alpha search and the update all see true
gradients. Each pass is unscaled through GradScaler's public ``unscale_`` on a view of its
own (``unscale_`` allows one call per optimizer between updates), so the scaler records one
overflow flag per pass and ``scaler.update()`` lowers the scale if any pass overflowed.
Unscaling syncs nothing with the host.

An overflow leaves inf or NaN in that pass's gradients, so its global norm is not finite and
the step is skipped as every non-finite step is: the weights are copied back to w0 and the
base optimizer does not step. Alpha-search passes of a ``closure(backward=...)`` closure run
no backward and are not scaled; a zero-argument closure's search passes back-propagate
(scaled, as its code says) into gradients the search sets aside and never reads.

    scaler = torch.amp.GradScaler("cuda")
    opt = XSAM(model.parameters(), base, model=model, grad_scaler=scaler)

    def closure():
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        return loss

    opt.step(closure)   # not scaler.step(opt): GradScaler refuses closures
    scaler.update()
"""

from torch.amp import GradScaler


class _PassGradients:
    """What ``GradScaler.unscale_`` needs of an optimizer (its ``param_groups``), one object
    per pass of a step, so that each pass gets its own overflow record."""

    def __init__(self, owner) -> None:
        self._owner = owner

    @property
    def param_groups(self) -> list[dict]:
        return self._owner.param_groups


class PassUnscaler:
    """Unscales the gradients of pass ``i`` of a step (``i`` from 0) through ``scaler``."""

    def __init__(self, scaler: GradScaler, owner) -> None:
        if not isinstance(scaler, GradScaler):
            raise ValueError(f"grad_scaler must be a torch.amp.GradScaler, got {scaler!r}")
        self.scaler, self._owner = scaler, owner
        self._views: list[_PassGradients] = []  # kept alive: the scaler keys them by id

    def unscale(self, i: int) -> None:
        while len(self._views) <= i:
            self._views.append(_PassGradients(self._owner))
        try:
            self.scaler.unscale_(self._views[i])
        except RuntimeError as error:
            if "already been called" not in str(error):
                raise
            raise RuntimeError(
                "grad_scaler: call scaler.update() after every opt.step(closure); the scaler "
                "still holds the last step's passes"
            ) from error
