"""Diagnostics of sharpness and of the XSAM geometry; see docs/DIAGNOSTICS.md.

* :mod:`~xsam.diagnostics.batches`: a fixed set of batches and the deterministic loss over it.
* :mod:`~xsam.diagnostics.hessian`: top Hessian eigenvalue (power iteration), trace (Hutchinson).
* :mod:`~xsam.diagnostics.sharpness`: worst-case loss increase within rho; ``evaluate_sharpness``.
* :mod:`~xsam.diagnostics.landscape`: the (v0, v1) plane, the loss on it, the true maximum.
* :mod:`~xsam.diagnostics.plots`: the figures (imported on its own: it pulls in matplotlib).
"""

from xsam.diagnostics.batches import batch_loss, fixed_batches
from xsam.diagnostics.hessian import Eigen, Trace, hessian_trace, top_eigenvalue
from xsam.diagnostics.landscape import (
    CircleMax,
    Landscape,
    Plane,
    circle_max,
    direction_diagnostics,
    landscape,
    search_alpha,
    xsam_direction,
    xsam_plane,
)
from xsam.diagnostics.sharpness import WorstCase, evaluate_sharpness, worst_case_increase

__all__ = [
    "CircleMax",
    "Eigen",
    "Landscape",
    "Plane",
    "Trace",
    "WorstCase",
    "batch_loss",
    "circle_max",
    "direction_diagnostics",
    "evaluate_sharpness",
    "fixed_batches",
    "hessian_trace",
    "landscape",
    "search_alpha",
    "top_eigenvalue",
    "worst_case_increase",
    "xsam_direction",
    "xsam_plane",
]
