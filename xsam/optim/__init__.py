"""The SAM family: SGD, SAM, multi-step SAM, SGD+, ASAM and XSAM as one optimizer, and the
baselines GSAM and WSAM as thin siblings that share its step."""

from xsam.optim.accumulate import MicroBatchClosure
from xsam.optim.closure import BatchClosure, frozen_bn_stats
from xsam.optim.gsam import GSAM
from xsam.optim.wsam import WSAM
from xsam.optim.xsam import XSAM

__all__ = ["GSAM", "WSAM", "XSAM", "BatchClosure", "MicroBatchClosure", "frozen_bn_stats"]
