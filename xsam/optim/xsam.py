"""XSAM and the SAM family as one optimizer.

Revisiting Sharpness-Aware Minimization: A More Faithful and Effective Implementation
(Chen & Zhou, ICLR 2026, arXiv 2603.10048); the adaptive ascent is ASAM (Kwon et al. 2021,
arXiv 2102.11600). Norms and dot products are global, over every parameter with a gradient.

One step on a batch, with weights w0 = theta_0:

    theta_{i+1} = theta_i + (rho / k) * e_i,      e_i = g_i / (||g_i|| + eps),  i < k
                  (ASAM: e_i = T^2 g_i / (||T g_i|| + eps),  T = |theta_i| + eta)
    scale = ||g_k||,   v0 = (theta_k - w0) / (||theta_k - w0|| + eps),   v1 = g_k / (||g_k|| + eps)
    t = arccos(clamp(<v0, v1>, -1, 1))
    d(alpha) = sin((1 - alpha) t) / sin t * v0 + sin(alpha t) / sin t * v1
               (= (v0 + v1) / 2 where sin t < 1e-8)
    grad <- scale * d(alpha);   w <- w0 (copied back);   base optimizer step

Dynamic alpha: every ``search_every`` steps (from step 0), alpha becomes the grid value
0, delta, ..., alpha_max with the largest batch loss at w0 + rho_max * d(alpha) (first on ties).

Reductions, each proved by a test:
    steps=0, rho=0          the base optimizer alone (SGD)
    steps=1, alpha=1        SAM: the update gradient is g_1
    steps=k, alpha=1        multi-step SAM: the update gradient is g_k
    steps=1, alpha=0        "SGD+": direction g_0 / ||g_0||, length ||g_1||
    adaptive=True, alpha=1  ASAM (adaptive_scope="weight": T only on tensors named *weight*,
                            as the ASAM authors' code; "all": on every tensor)

With alpha fixed at 1 (no search) the update gradient is g_k itself, as SAM defines it:
d(1) = v1, so the arc is not formed (nor its sin t fallback, which would only matter for
(anti)parallel v0 and v1). The plane is then a diagnostic alone, formed only on the steps
whose caller asks for the angle (``step_and_report(closure, angle=True)``).
"""

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.amp import GradScaler
from torch.optim import Optimizer

from xsam.optim.accumulate import m_sharpness_update
from xsam.optim.amp import PassUnscaler
from xsam.optim.closure import frozen_bn_stats
from xsam.optim.kernels import (
    add_scaled_,
    all_finite,
    backup_and_ascend_,
    combine_,
    combine_and_restore_,
    global_norm,
    scratch_for,
    subtract_and_measure_,
)
from xsam.optim.passes import (
    Closure,
    GradientLedger,
    checked_loss,
    gradients_of,
    parameter_namer,
    takes_backward,
)
from xsam.optim.report import StepReport
from xsam.optim.state import pack, unpack

SIN_T_MIN = 1e-8  # below this, v0 and v1 are (anti)parallel and the arc is undefined


class XSAM(Optimizer):
    """The SAM family over any torch base optimizer; see the module docstring for the maths.

    ``base`` builds the base optimizer from param groups, e.g.
    ``functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=1e-3)``.
    ``self.param_groups`` *is* the base's, so LR schedulers attach to this object.
    ``step(closure)`` calls ``closure()`` for each gradient pass (gradients are set to None
    before it) and, if it takes a ``backward`` argument, ``closure(backward=False)`` under
    ``no_grad`` for alpha-search passes; torch's zero-argument closure works too, at a cost
    (:mod:`xsam.optim.passes`). The parameters with a gradient on the first pass take part
    in the step; the others keep no gradient. ``model`` (the ``nn.Module`` the closure
    runs) makes the optimizer run every pass after a step's first inside
    :func:`~xsam.optim.closure.frozen_bn_stats`, which a closure it did not build (torch's,
    a framework's) does not do itself. ``grad_scaler`` (a ``torch.amp.GradScaler``) is fp16
    training: see :mod:`xsam.optim.amp`. ``defaults``, ``state`` and ``param_groups`` are
    the base optimizer's; ``state_dict`` is in torch's layout (:mod:`xsam.optim.state`).
    A step whose loss or gradients are not finite is skipped: the weights are copied back to
    w0 and the base optimizer does not step (``report.finite`` is False).

    ``step_and_report(closure, angle=...)`` is the same step returning its
    :class:`~xsam.optim.report.StepReport` (also kept as ``opt.report``). SAM and multi-step
    SAM (alpha fixed at 1, no search) do not need the plane for their update, so they form
    it, for the angle, only when ``angle=True``; it costs six passes over the parameters'
    memory, about a quarter of such a step's optimizer time on a CPU. Every other
    configuration needs the plane and reports the angle on every step.

    The keyword defaults are the paper's and this suite's: configs/optimizer/xsam.yaml states
    the same values, and a test holds the two equal.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base: Callable[..., Optimizer],
        *,
        rho: float = 0.15,
        steps: int = 1,
        alpha: float = 1.0,
        search_every: int | None = None,
        rho_max: float = 0.3,
        alpha_max: float = 2.0,
        alpha_delta: float = 0.1,
        adaptive: bool = False,
        eta: float = 0.01,
        adaptive_scope: str = "all",
        eps: float = 1e-12,
        model: nn.Module | None = None,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        _check_settings(
            rho, steps, alpha, search_every, rho_max, alpha_max, alpha_delta, adaptive, eta, eps
        )
        super().__init__(params, {})
        # ASAM's T on every tensor ("all", the paper's definition), or, as the ASAM authors'
        # code does, only on tensors whose name contains "weight" (T = 1 on biases)
        self.unscaled = _unscaled_by_name(self.param_groups, adaptive_scope)
        self.base = base(self.param_groups)
        # torch.optim's contract is the base's: schedulers read defaults (OneCycleLR's
        # momentum), checkpoint tools walk state; all three are the base's own objects
        self.param_groups, self.defaults, self.state = _shared(self.base)
        if model is not None and not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module (for its BatchNorm), got {model!r}")
        self.model = model
        self.grad_scaler = grad_scaler
        self.rho, self.steps, self.eps = float(rho), int(steps), float(eps)
        self.adaptive, self.eta = bool(adaptive), float(eta)
        self.search_every, self.rho_max = search_every, float(rho_max)
        self.alpha_grid = torch.from_numpy(alpha_grid(alpha_max, alpha_delta))
        self.alpha = torch.tensor(float(alpha), dtype=torch.float64)
        self.alpha_fixed_at_one = search_every is None and float(alpha) == 1.0  # SAM's update
        self.step_count = self.forward_passes = self.backward_passes = 0
        self.skipped_steps = torch.zeros((), dtype=torch.int64)
        self.report: StepReport | None = None  # the last step's
        self._angle_wanted = False
        self._w0: dict[Tensor, Tensor] = {}  # the one parameter copy this optimizer keeps
        self._passes_this_step = 0
        self._ledger = GradientLedger()
        self._names = parameter_namer(self.param_groups, model)

    supports_m_sharpness = True  # (accumulate.py) GSAM and WSAM say no

    @property
    def grad_scaler(self) -> GradScaler | None:
        """The fp16 loss scaler whose scale the closure's backward uses (:mod:`.amp`); may be
        set after construction, e.g. by a framework that owns the scaler."""
        return None if self.unscaler is None else self.unscaler.scaler

    @grad_scaler.setter
    def grad_scaler(self, scaler: GradScaler | None) -> None:
        self.unscaler = None if scaler is None else PassUnscaler(scaler, self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``; gradients zeroed in place are nobody's work, so the next
        step does not take them for accumulated ones (see ``GradientLedger``)."""
        super().zero_grad(set_to_none=set_to_none)
        self._ledger.record(self.param_groups)

    def step_and_report(self, closure: Closure | None, *, angle: bool = False) -> StepReport:
        """``step`` (through torch's step hooks and schedulers' bookkeeping), returning the
        step's report; ``angle``: form the plane for the angle even where the update does not
        need it (SAM, multi-step SAM)."""
        self.step(closure, angle=angle)
        return self.report

    @torch.no_grad()
    def step(self, closure: Closure | None = None, *, angle: bool = False) -> Tensor:  # type: ignore[override]
        """One training step on the closure's batch; returns the loss at w0.

        ``closure()`` or ``closure(backward=True)``, see :mod:`xsam.optim.passes`; a
        :class:`~xsam.optim.accumulate.MicroBatchClosure` accumulates micro-batches (or, with
        ``m_sharpness=True``, ascends on each). Without a closure the step is refused, except
        with every learning rate at 0: that is the base optimizer's step, which only creates
        its state (what ``torch.distributed.checkpoint`` does to a fresh optimizer).
        """
        if closure is None:
            return self._closure_free_step()
        self._angle_wanted = angle
        self._ledger.warn_if_new(self.param_groups, type(self).__name__)
        self._passes_this_step = 0
        if getattr(closure, "m_sharpness", False):
            self.report, params = m_sharpness_update(self, closure)
        else:
            self.report, params = self._update(closure)
        if len(params) < sum(len(g["params"]) for g in self.param_groups):
            self._put_back(params, [p.grad for p in params])  # only the first pass's take part
        self._base_step(self.report.finite)
        self._after_base_step(params, self.report.finite)
        self._ledger.record(self.param_groups)  # our own update gradients, not new ones
        self.step_count += 1
        return self.report.loss_0

    def _update(self, closure: Closure) -> tuple[StepReport, list[Tensor]]:
        """The update gradient in ``.grad`` and the weights back at w0; the step's report
        and the parameters that took part (those with a gradient on the first pass)."""
        loss_0 = self._gradient_pass(closure, clean=True)
        params, g_0 = self._params_with_grad()
        grad_norm_0 = global_norm(g_0)
        if self.steps == 0:
            return StepReport(loss_0, grad_norm_0, all_finite(loss_0, grad_norm_0)), params
        return self._sharpness_aware_step(closure, params, g_0, loss_0, grad_norm_0), params

    def _closure_free_step(self) -> None:
        if any(float(group["lr"]) != 0.0 for group in self.param_groups):
            raise ValueError(
                f"{type(self).__name__}.step needs a closure, closure() or "
                "closure(backward=True) returning the scalar loss: the method re-evaluates "
                "the batch at perturbed weights (with a GradScaler, pass grad_scaler= to the "
                "optimizer and call opt.step(closure), not scaler.step(opt))"
            )
        self.base.step()  # lr 0: no weight moves; the base creates its state

    def _after_base_step(self, params: list[Tensor], finite: Tensor) -> None:
        """A step that follows the base optimizer's (WSAM's decoupled sharpness term)."""

    def _sharpness_aware_step(self, closure, params, g_0, loss_0, grad_norm_0) -> StepReport:
        w0 = self._w0_buffers(params)
        g_i, norm_i, later_norms = g_0, grad_norm_0, []
        for i in range(self.steps):
            if i > 0:
                self._gradient_pass(closure)
                g_i, norm_i = gradients_of(params, self._names, f"ascent pass {i}"), None
            backup = w0 if i == 0 else None
            norm_i = self._ascend(params, g_i, self.rho / self.steps, norm_i, backup)
            later_norms += [norm_i] if i > 0 else []  # an overflow on these passes skips too
        loss_k = self._gradient_pass(closure)
        g_k = gradients_of(params, self._names, "the pass at the ascent point")
        report = StepReport(loss_0, grad_norm_0, finite=None, loss_k=loss_k)
        if self.alpha_fixed_at_one and not self._angle_wanted:
            grad_norm_k, plane = global_norm(g_k), {}  # the update is g_k as it stands
            torch._foreach_copy_(params, w0)  # exact restore: copy, never subtract
        else:
            plane = self._plane_update_and_restore(closure, params, w0, g_k, report)
            grad_norm_k, report.angle = plane["grad_norm_k"], plane["t"]
        report.finite = all_finite(loss_0, grad_norm_0, grad_norm_k, *plane.values(), *later_norms)
        report.grad_norm_k, report.alpha = grad_norm_k, self.alpha
        return report

    def _plane_update_and_restore(self, closure, params, w0, g_k, report) -> dict[str, Tensor]:
        """The plane of v0 and v1, the alpha search when due, g_k <- scale * d(alpha) (unless
        alpha is fixed at 1, when g_k already is the update), and the weights copied back."""
        delta_norm, grad_norm_k, dot = subtract_and_measure_(params, w0, g_k)  # params: delta
        cos_t = dot / ((delta_norm + self.eps) * (grad_norm_k + self.eps))
        t = torch.arccos(cos_t.clamp(-1.0, 1.0))  # rounding can push |cos| past 1
        plane = {"delta_norm": delta_norm, "grad_norm_k": grad_norm_k, "cos_t": cos_t, "t": t}
        if self.is_search_step():
            self.alpha = self._search_alpha(closure, params, w0, g_k, plane, report)
        self.alpha = self.alpha.to(t)  # moved once, then stays on the device
        if self.alpha_fixed_at_one:
            torch._foreach_copy_(params, w0)  # exact restore: copy, never subtract
            return plane
        c0, c1 = _arc_coefficients(self.alpha, t)
        scale = grad_norm_k  # g_k <- scale * (c0 v0 + c1 v1), then the exact restore
        a, b = scale * c1 / (grad_norm_k + self.eps), scale * c0 / (delta_norm + self.eps)
        combine_and_restore_(g_k, a, params, b, w0)
        return plane

    def _ascend(
        self, params, g, step_size: float, norm: Tensor | None, backup: list[Tensor] | None
    ) -> Tensor:
        """theta += step_size * e(g), after copying theta into ``backup`` if one is given;
        the gradient tensors are consumed. ``norm`` is ||g|| when already known; returns the
        norm the step used."""
        if self.adaptive:
            t_op = torch._foreach_abs(params)
            torch._foreach_add_(t_op, self.eta)  # T = |theta| + eta
            for i in [i for i, p in enumerate(params) if p in self.unscaled]:
                t_op[i].fill_(1.0)  # adaptive_scope="weight": T = 1 on this tensor
            torch._foreach_mul_(g, t_op)  # T g
            norm = global_norm(g)
            torch._foreach_mul_(g, t_op)  # T^2 g
        elif norm is None:
            norm = global_norm(g)
        scale = step_size / (norm + self.eps)
        if backup is None:
            add_scaled_(params, g, scale)
        else:
            backup_and_ascend_(params, backup, g, scale)
        return norm

    def is_search_step(self) -> bool:
        """Whether the next step re-estimates alpha."""
        return (
            self.steps > 0
            and self.search_every is not None
            and self.step_count % self.search_every == 0
        )

    def _search_alpha(self, closure, params, w0, g_k, plane, report) -> Tensor:
        """The grid alpha with the largest loss at w0 + rho_max * d(alpha); no host sync.

        On entry and on return ``params`` hold theta_k - w0.
        """
        delta = [p.clone() for p in params]  # theta_k - w0; search steps only: a transient copy
        scratch = scratch_for(g_k)  # reused at every grid point
        grid = self.alpha_grid.to(plane["t"])
        forward_only = takes_backward(closure)
        if not forward_only:  # its zero_grad and backward must not reach g_k (passes.py)
            for p in params:
                p.grad = None
        losses = []
        for alpha in grid:
            c0, c1 = _arc_coefficients(alpha, plane["t"])
            a = self.rho_max * c0 / (plane["delta_norm"] + self.eps)
            b = self.rho_max * c1 / (plane["grad_norm_k"] + self.eps)
            combine_(params, w0, delta, a, g_k, b, scratch)  # w0 + rho_max * d(alpha)
            losses.append(self._search_pass(closure, forward_only).to(grid.dtype))
        if not forward_only:
            self._put_back(params, g_k)
        losses = _mean_over_ranks(torch.stack(losses))
        torch._foreach_copy_(params, delta)  # back to theta_k - w0 for the update
        report.search_alphas, report.search_losses = grid, losses
        # NaN never wins, as in the authors' strict ">" comparison; argmax keeps the first tie
        return grid[torch.nan_to_num(losses, nan=-torch.inf).argmax()]

    def _gradient_pass(self, closure: Closure, *, clean: bool = False) -> Tensor:
        """closure() with gradients set to None before it; ``clean``: the step's first pass,
        the only one that may update BatchNorm running statistics (with ``model=``)."""
        super().zero_grad(set_to_none=True)  # (the step records its gradients at its end)
        with torch.enable_grad(), self._frozen_bn(clean):
            loss = checked_loss(closure(), closure)
        if self.unscaler is not None:  # one scale for every pass: unscale each (amp.py)
            self.unscaler.unscale(self._passes_this_step)
        self._passes_this_step += 1
        self.forward_passes += 1
        self.backward_passes += 1
        return loss

    def _search_pass(self, closure: Closure, forward_only: bool) -> Tensor:
        """The loss at the current weights; a closure without ``backward`` runs its backward
        too (its gradients are thrown away)."""
        with self._frozen_bn(clean=False):
            if forward_only:
                loss = closure(backward=False)
            else:
                with torch.enable_grad():
                    loss = closure()
                self.backward_passes += 1
        self.forward_passes += 1
        return checked_loss(loss, closure)

    def _frozen_bn(self, clean: bool):
        """The optimizer's BatchNorm policy for closures it did not build (``model=``)."""
        return nullcontext() if clean or self.model is None else frozen_bn_stats(self.model)

    def _put_back(self, params: list[Tensor], grads: list[Tensor]) -> None:
        """.grad <- ``grads`` on ``params``, None on every other parameter."""
        of = dict(zip(params, grads, strict=True))
        for p in (p for g in self.param_groups for p in g["params"]):
            p.grad = of.get(p)

    def _params_with_grad(self) -> tuple[list[Tensor], list[Tensor]]:
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            raise ValueError(
                "the closure left no parameter with a gradient: it must call loss.backward() "
                "(closure(backward=True) when it takes that argument)"
            )
        return params, [p.grad for p in params]

    def _w0_buffers(self, params: list[Tensor]) -> list[Tensor]:
        for p in params:
            if p not in self._w0:
                self._w0[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        return [self._w0[p] for p in params]

    def _base_step(self, finite: Tensor) -> None:
        """The base step, skipped on non-finite values (on the device where it can)."""
        self.skipped_steps = self.skipped_steps.to(finite.device)
        self.skipped_steps += (~finite).long()
        # Fused bases skip through GradScaler's private protocol (_step_supports_amp_scaling,
        # a found_inf attribute): re-check it on a torch upgrade. Before the base has any
        # state, torch allocates it uninitialised (SGD's momentum buffers) and then skips,
        # so a non-finite *first* step would leave garbage that later steps use: until the
        # first real step, skip on the host instead (SGD without momentum keeps no state,
        # so it takes this host sync on every step).
        fused = getattr(self.base, "_step_supports_amp_scaling", False) and self.base.state
        if fused:  # no host sync
            self.base.found_inf = (~finite).float()
            try:
                self.base.step()
            finally:
                del self.base.found_inf
        elif finite:  # one host sync, for base optimizers that cannot skip on the device
            self.base.step()

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict, with alpha and the counters in each param group
        (the layout is in :mod:`xsam.optim.state`); loading it resumes bit-identically."""
        scalars = {
            "alpha": self.alpha.detach().cpu(),
            "step_count": self.step_count,
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "skipped_steps": self.skipped_steps.cpu(),
        }
        return pack(self.base.state_dict(), scalars)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        base_state, scalars = unpack(state_dict)
        self.base.load_state_dict(base_state)
        # the base replaced its param groups and state: share them again
        self.param_groups, self.defaults, self.state = _shared(self.base)
        self.alpha = torch.as_tensor(scalars["alpha"]).clone()
        self.step_count = int(scalars["step_count"])
        self.forward_passes = int(scalars["forward_passes"])
        self.backward_passes = int(scalars["backward_passes"])
        self.skipped_steps = torch.as_tensor(scalars["skipped_steps"]).clone()


def _shared(base: Optimizer) -> tuple[list[dict], dict[str, Any], Any]:
    return base.param_groups, base.defaults, base.state


def alpha_grid(alpha_max: float, alpha_delta: float) -> np.ndarray:
    """The search grid 0, alpha_delta, ..., alpha_max (up to and including alpha_max)."""
    return np.arange(0.0, alpha_max + 1e-5, alpha_delta)


def _arc_coefficients(alpha: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(c0, c1) with d(alpha) = c0 v0 + c1 v1 on the arc from v0 (alpha=0) through v1."""
    sin_t = torch.sin(t)
    degenerate = sin_t < SIN_T_MIN
    half = torch.full_like(t, 0.5)
    c0 = torch.where(degenerate, half, torch.sin((1 - alpha) * t) / sin_t)
    c1 = torch.where(degenerate, half, torch.sin(alpha * t) / sin_t)
    return c0, c1


def _mean_over_ranks(losses: Tensor) -> Tensor:
    """Average search losses across data-parallel ranks, so every rank picks the same alpha."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(losses, op=dist.ReduceOp.SUM)  # gloo has no AVG
        losses = losses / dist.get_world_size()
    return losses


def _unscaled_by_name(groups: list[dict[str, Any]], scope: str) -> set[Tensor]:
    """The tensors ASAM does not scale: none for "all"; for "weight", those whose name (from
    ``named_parameters()``) does not contain "weight"."""
    if scope not in ("all", "weight"):
        raise ValueError(f"adaptive_scope must be 'all' or 'weight', got {scope!r}")
    if scope == "all":
        return set()
    if not all("param_names" in g for g in groups):
        raise ValueError(
            "adaptive_scope='weight' needs parameter names: XSAM(model.named_parameters(), ...)"
        )
    pairs = [pair for g in groups for pair in zip(g["params"], g["param_names"], strict=True)]
    return {p for p, name in pairs if "weight" not in name}


def _check_every(name: str, every: int | None) -> None:
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ValueError(f"{name} must be None or an integer >= 1, got {every!r}")


def _check_settings(rho, steps, alpha, search_every, rho_max, alpha_max, alpha_delta, adaptive,
                    eta, eps) -> None:  # fmt: skip
    """One clear error per bad setting, naming it (train.py's config checks rely on these)."""
    numbers = dict(rho=rho, alpha=alpha, rho_max=rho_max, alpha_max=alpha_max,
                   alpha_delta=alpha_delta, eta=eta, eps=eps)  # fmt: skip
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
    if not isinstance(adaptive, bool):
        raise ValueError(f"adaptive must be true or false, got {adaptive!r}")
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    if not isinstance(steps, int) or steps < 0 or (steps == 0 and rho != 0):
        raise ValueError(
            f"steps must be an integer >= 1 for ascent methods (rho > 0), got steps={steps!r}; "
            "steps=0 with rho=0 is the base optimizer alone"
        )
    _check_every("search_every", search_every)
    if rho_max <= 0:
        raise ValueError(f"rho_max must be > 0, got {rho_max}")
    if alpha_max < 0:
        raise ValueError(f"alpha_max must be >= 0, got {alpha_max}")
    if alpha_delta <= 0:
        raise ValueError(f"alpha_delta must be > 0, got {alpha_delta}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
