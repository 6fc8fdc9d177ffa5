"""The SAM family: SGD, SAM, multi-step SAM, SGD+, ASAM and XSAM as one optimizer."""

from xsam.optim.closure import BatchClosure, frozen_bn_stats
from xsam.optim.xsam import XSAM

__all__ = ["XSAM", "BatchClosure", "frozen_bn_stats"]
