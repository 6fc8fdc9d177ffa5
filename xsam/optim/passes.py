"""The closure contract of the SAM family: what a pass may return, which closures can skip
their backward, and the gradients a step must neither lose nor take from someone else.

Two closure forms drive every method:

* ``closure(backward=True) -> loss`` (``BatchClosure``, this suite's form): the alpha search
  calls ``closure(backward=False)`` under ``no_grad``, a forward pass alone;
* ``closure() -> loss``, torch's standard form (``opt.zero_grad(); loss = ...;
  loss.backward(); return loss``), and frameworks' wrapped closures. It cannot skip its
  backward, so each alpha-search pass runs a forward *and* a backward (and, under DDP, the
  gradient all-reduce) instead of a forward alone. To keep g_k safe from the
  closure's ``zero_grad`` (even ``set_to_none=False``) and ``backward``, the search holds the
  g_k tensors, detaches them from the parameters for its passes and puts them back after.
"""

import inspect
import os
import sys
import warnings
import weakref
from collections.abc import Callable

from torch import Tensor

Closure = Callable[..., Tensor]


def takes_backward(closure: Closure) -> bool:
    """Whether ``closure`` has a ``backward`` parameter (and so can run a forward alone)."""
    try:
        return "backward" in inspect.signature(closure).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False


def checked_loss(loss: object, closure: Closure) -> Tensor:
    """The pass's loss, detached; a clear error when the closure broke the contract."""
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(
            f"closure must return a scalar loss tensor, got {got} from {_name_of(closure)}"
        )
    return loss.detach()


def _name_of(closure: Closure) -> str:
    return getattr(closure, "__qualname__", None) or type(closure).__qualname__


def gradients_of(params: list[Tensor], names: Callable[[Tensor], str], which: str) -> list[Tensor]:
    """The ``.grad`` of each parameter of the step; a parameter that had one on the first
    pass and lost it on a later one is named (the global norms and the plane need every
    tensor on every pass)."""
    grads = [p.grad for p in params]
    missing = [p for p, g in zip(params, grads, strict=True) if g is None]
    if missing:
        raise ValueError(
            f"parameter {names(missing[0])} had a gradient on the step's first pass but none "
            f"on {which}: every pass of a step must reach the same parameters (set "
            "requires_grad=False on the ones a batch may skip, or use them in every pass)"
        )
    return grads


def parameter_namer(groups: list[dict], model=None) -> Callable[[Tensor], str]:
    """A function naming a parameter: by ``model``'s or the param groups' names, else by
    its place (``param_groups[i]['params'][j]``, shape)."""
    named = {}
    if model is not None:
        named = {p: repr(n) for n, p in model.named_parameters()}
    for i, group in enumerate(groups):
        for j, p in enumerate(group["params"]):
            if "param_names" in group:
                named.setdefault(p, repr(group["param_names"][j]))
            named.setdefault(p, f"param_groups[{i}]['params'][{j}] (shape {tuple(p.shape)})")
    return lambda p: named.get(p, f"of shape {tuple(p.shape)}")


class GradientLedger:
    """Remembers the gradients a step left behind, to tell them from gradients that arrived
    since (a framework's ``accumulate_grad_batches``, ``accelerator.accumulate``, a stray
    ``loss.backward()``), which the next step would otherwise silently discard.

    A gradient counts as the step's own while it is the same tensor at the same version
    (autograd accumulates in place, which bumps the version). No device work: Python only.
    """

    def __init__(self) -> None:
        self._left: dict[Tensor, tuple[weakref.ref, int]] = {}
        self.warned = False

    def record(self, groups: list[dict]) -> None:
        self._left = {
            p: (weakref.ref(p.grad), p.grad._version)
            for g in groups
            for p in g["params"]
            if p.grad is not None
        }

    def warn_if_new(self, groups: list[dict], method: str) -> None:
        if self.warned:
            return
        for p in (p for g in groups for p in g["params"] if p.grad is not None):
            ref, version = self._left.get(p, (None, -1))
            if ref is None or ref() is not p.grad or p.grad._version != version:
                self.warned = True
                warnings.warn(
                    f"{method}.step found gradients in .grad that it did not leave there "
                    "(gradient accumulation, or a backward before the step); every pass of a "
                    "step computes its own gradients, so these are discarded. Accumulate "
                    "inside the step instead: xsam.optim.MicroBatchClosure over the "
                    "micro-batches (and accumulate_grad_batches=1 in a framework). Warned once.",
                    UserWarning,
                    stacklevel=_callers_level(),
                )
                return


def _callers_level() -> int:
    """The ``stacklevel`` of the first frame outside torch and this package, seen from the
    function that calls this one: the user's line that called ``step``."""
    inside = (f"{os.sep}torch{os.sep}", f"{os.sep}xsam{os.sep}optim{os.sep}")
    frame, level = sys._getframe(1), 1
    while frame is not None and any(part in frame.f_code.co_filename for part in inside):
        frame, level = frame.f_back, level + 1
    return level
