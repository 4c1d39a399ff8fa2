"""CPU inference through oneDNN Graph: the network traced and frozen as a TorchScript graph whose
convolutions, their ReLUs and residual adds oneDNN Graph (LLGA) fuses into partitions and runs
with its own layouts. For fp32 ResNet-50 at batch 1 it measured faster than torch.compile's
inductor and level with onnxruntime, and it builds in about a second rather than tens of seconds
(docs/benchmarks.md), which is why it is the default for fp32 CPU inference (optimize.py).
TorchScript is deprecated in favour of torch.compile; where it is gone, or where a network cannot
be traced or run this way, the network runs eagerly instead, said in one logged line.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from resnets.text import first_line

ONEDNN_GRAPH = "onednn-graph"
log = logging.getLogger(__name__)


def onednn_graph_available() -> bool:
    """Whether this torch still has what the path needs: torch.jit's trace, freeze and the
    oneDNN fusion switch."""
    jit = getattr(torch, "jit", None)
    return all(hasattr(jit, f) for f in ("trace", "freeze", "enable_onednn_fusion", "onednn_fusion_enabled"))


class OneDNNGraph:
    """Calls `model` (eval mode, BN folded) as a frozen TorchScript graph with oneDNN Graph fusion.

    Traced on the first call: a ResNet's graph has no data-dependent control flow, so the trace
    serves every batch and image size (each new shape costs two warm-up calls while oneDNN
    Graph compiles its partitions). The model's own input checks run in Python first, so bad
    inputs still get their one-line InputError rather than an error from inside the graph.

    Where the graph cannot be built or run (a network torch.jit.trace cannot follow, an operator
    oneDNN Graph rejects), the call is repeated eagerly: if eager succeeds, the graph is dropped
    for good and one warning is logged (`fallback` says why); if eager fails too, the input was at
    fault and eager's error is raised, the graph kept.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.graph: torch.jit.ScriptModule | None = None
        self.fallback: str | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check = getattr(self.model, "check_input", None)
        if check is not None:
            check(x)
        if self.fallback is not None:
            return self.model(x)
        try:
            return self._run_graph(x)
        except Exception as exc:  # any failure of the graph: try eager below
            out = self.model(x)  # raises when the input, not the graph, is at fault
            self.fallback = first_line(exc, 200)
            name = getattr(self.model, "name", type(self.model).__name__)
            log.warning("oneDNN Graph cannot run %s (%s); running it eagerly", name, self.fallback)
            return out

    def _run_graph(self, x: torch.Tensor) -> torch.Tensor:
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
