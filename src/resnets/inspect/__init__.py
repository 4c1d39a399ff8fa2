"""Measuring a network (output sizes, parameters, MACs: paper Table 1) and explaining it."""

from resnets.inspect.summary import Summary, summary

__all__ = ["Summary", "summary"]
