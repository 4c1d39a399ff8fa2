"""CPU inference through oneDNN Graph: the network traced and frozen as a TorchScript graph whose
convolutions, their ReLUs and residual adds oneDNN Graph (LLGA) fuses into partitions and runs
with its own layouts. For fp32 ResNet-50 at batch 1 on a 2-core AVX2 CPU it measured faster
than torch.compile's inductor and level with onnxruntime, and it builds in seconds rather than
tens of seconds (docs/benchmarks.md). TorchScript is deprecated in favour of torch.compile;
where it is gone, optimize() falls back to inductor.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

ONEDNN_GRAPH = "onednn-graph"


def onednn_graph_available() -> bool:
    jit = getattr(torch, "jit", None)
    return all(hasattr(jit, f) for f in ("trace", "freeze", "enable_onednn_fusion", "onednn_fusion_enabled"))


class OneDNNGraph:
    """Calls `model` (eval mode, BN folded) as a frozen TorchScript graph with oneDNN Graph fusion.

    Traced on the first call: a ResNet's graph has no data-dependent control flow, so the trace
    serves every batch and image size (each new shape costs two warm-up calls while oneDNN
    Graph compiles its partitions). The model's own input checks run in Python first, so bad
    inputs still get their one-line InputError rather than an error from inside the graph.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.graph: torch.jit.ScriptModule | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check = getattr(self.model, "check_input", None)
        if check is not None:
            check(x)
        with _fusion_on():  # no autograd: OptimizedModel runs inference under no_grad
            if self.graph is None:
                with warnings.catch_warnings():
                    # TracerWarnings for the input checks (traced as constants; they run above)
                    # and TorchScript's deprecation notice: ours to know, not the user's.
                    warnings.simplefilter("ignore")
                    self.graph = torch.jit.freeze(torch.jit.trace(self.model, x, check_trace=False))
            return self.graph(x)


@contextmanager
def _fusion_on():
    """oneDNN Graph fusion is a process-wide switch: on for our graph only, then as it was."""
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)
