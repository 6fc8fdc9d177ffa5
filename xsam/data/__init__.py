"""Datasets: each builder returns a :class:`DataSplits` of real torch datasets."""

from xsam.data.splits import DataSplits

__all__ = ["DataSplits"]
