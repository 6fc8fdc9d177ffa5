"""xsam: sharpness-aware training suite (SGD, SAM, multi-step SAM, ASAM, XSAM)."""

__version__ = "0.1.0"
