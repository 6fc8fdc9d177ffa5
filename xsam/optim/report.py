"""What one step of the SAM family saw: the typed record ``opt.step_and_report`` returns.

Every value is a tensor (0-d unless said otherwise), on the parameters' device except
``alpha`` before the step's first plane and ``rho`` (host tensors: the configured values), so
building the report costs no host synchronisation; a loop reads the values it logs, when it
logs them.
"""

from dataclasses import dataclass, fields

from torch import Tensor


@dataclass
class StepReport:
    """``None`` marks what this method or this step did not compute."""

    loss_0: Tensor  # the batch loss at the weights the step started from (w0)
    grad_norm_0: Tensor  # ||g_0||
    finite: Tensor  # bool: False when the step was skipped (weights left at w0)
    loss_k: Tensor | None = None  # the loss at the last ascent point
    grad_norm_k: Tensor | None = None  # ||g_k||, before the update direction replaces it
    angle: Tensor | None = None  # t, between v0 and v1 (radians); SAM forms it only when asked
    alpha: Tensor | None = None  # the alpha the update used
    rho: Tensor | None = None  # the ascent radius the step used (GSAM's rho_t, WSAM's rho)
    search_alphas: Tensor | None = None  # 1-d: the alpha grid, on a search step
    search_losses: Tensor | None = None  # 1-d: the loss at w0 + rho_max * d(alpha) per alpha

    @property
    def searched(self) -> bool:
        """Whether this step re-estimated alpha."""
        return self.search_losses is not None

    def scalars(self) -> dict[str, Tensor]:
        """The 0-d values this step computed, by field name (the diagnostics log's keys)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if v is not None and v.ndim == 0}
