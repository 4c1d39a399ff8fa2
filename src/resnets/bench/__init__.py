"""`resnets bench`: our fast path against its peers, in one process, with one loop."""

from resnets.bench.runner import BenchReport, BenchSettings, run_bench

__all__ = ["BenchReport", "BenchSettings", "run_bench"]
