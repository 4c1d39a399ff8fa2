"""Measuring a network (output sizes, parameters, MACs: paper Table 1) and explaining it."""

from resnets.inspect.explain import explain
from resnets.inspect.summary import StageRow, Summary, summary

__all__ = ["StageRow", "Summary", "explain", "summary"]
