"""optimize(): the fast path that train, eval, predict and bench all run.

Each option is something PyTorch already offers, chosen per device and mode and measured in
docs/benchmarks.md: channels-last memory format (convolutions run NHWC kernels without
transposes), bf16/fp16 autocast, torch.compile (fuses BN, ReLU and the residual add into the
convolutions' neighbours), BN folding and weight freezing for inference, CUDA graphs (one
launch instead of hundreds of kernels per step), fused SGD, and activation checkpointing.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from resnets.errors import ResNetsError
from resnets.models.resnet import ResNet
from resnets.runtime.device import PRECISIONS, autocast, resolve_device
from resnets.runtime.fold_bn import fold_bn as fold_batchnorm
from resnets.runtime.onednn_graph import ONEDNN_GRAPH, OneDNNGraph, onednn_graph_available

MODES = ("train", "infer")
# torch.compile's modes, and "onednn-graph": a frozen TorchScript graph run by oneDNN Graph
# (CPU fp32 inference only; see onednn_graph.py).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "onednn-graph")
# Compile modes whose CUDA graphs replay fixed shapes (and reuse their output buffers).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FastConfig:
    """What optimize() resolved every option to: printed by bench, kept with results."""

    mode: str
    device: str
    precision: str
    channels_last: bool
    fold_bn: bool
    compile: bool
    compile_mode: str | None
    freeze: bool
    checkpoint_activations: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OptimizedModel(nn.Module):
    """A model behind the fast path: inputs go to the device and memory format, the forward runs
    under autocast (and without autograd for inference), outputs come back as fp32.

    Its parameters are the wrapped model's own, and its state_dict is the wrapped model's, so
    checkpoints stay interchangeable with the plain model.
    """

    def __init__(self, model: nn.Module, config: FastConfig, run: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.config = config
        # Not a submodule: torch.compile's wrapper shares `model`'s parameters.
        self.__dict__["_run"] = run
        # Compiled CUDA graphs reuse their output buffers on the next replay.
        self._copy_out = self.fixed_shapes
        # Inductor reads its freezing flag per call (see _freezing); oneDNN Graph froze at the trace.
        self._inductor_freezing = config.freeze and config.compile_mode != ONEDNN_GRAPH

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    @property
    def fixed_shapes(self) -> bool:
        """Whether each new input shape costs a new capture (CUDA graphs replay fixed shapes), so
        that a caller should pad a short last batch to the usual size rather than send it as is.
        oneDNN Graph and eager take any batch as it comes."""
        return self.config.compile and self.config.compile_mode in CUDA_GRAPH_MODES

    @property
    def fallback(self) -> str | None:
        """Why the oneDNN Graph path runs eagerly after all (it could not be built or run), or None."""
        return self._run.fallback if isinstance(self._run, OneDNNGraph) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        grad = torch.no_grad() if self.config.mode == "infer" else nullcontext()
        with grad, autocast(self.device, self.config.precision), _freezing(self._inductor_freezing):
            out = self._run(x)
        if out.dtype != torch.float32:
            return out.float()
        return out.clone() if self._copy_out else out

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.load_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())


def _freezing(enabled: bool) -> Any:
    """Inductor freezing, switched on around the call rather than passed to torch.compile: dynamo
    reads the global flag while tracing to treat parameters as constants (without it, weights
    stay graph inputs and nothing gets folded or prepacked), and setting it globally would also
    freeze every other model the process compiles."""
    return torch._inductor.config.patch(freezing=True) if enabled else nullcontext()


def optimize(
    model: nn.Module,
    mode: str = "train",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    *,
    compile: bool | None = None,
    compile_mode: str | None = None,
    channels_last: bool | None = None,
    fold_bn: bool | None = None,
    freeze: bool | None = None,
    checkpoint_activations: bool = False,
) -> OptimizedModel:
    """The fastest way to run `model` for `mode` on `device` at `precision`, same outputs.

    mode="train" wraps `model` itself (moved to the device; the returned module shares its
    parameters, so build the optimizer from either). mode="infer" works on an eval-mode copy
    with BN folded into the convolutions and, when compiled, the weights frozen as constants.

    Defaults, per device (None means "choose"):
      channels_last  on (NHWC kernels for cuDNN and oneDNN)
      compile        on for CUDA, for fp32 CPU inference of a ResNet, and when a compile_mode is
                     given; off for CPU training, bf16 CPU inference and other modules on the CPU
                     (compile=False: eager, BN folded)
      compile_mode   'reduce-overhead' (CUDA graphs) for CUDA inference; 'onednn-graph' for fp32
                     CPU inference (a frozen TorchScript graph run by oneDNN Graph: ResNet-50 at
                     batch 1 level with onnxruntime, built in about a second; exact to fp32
                     rounding at any batch and input size); 'default' for training, where the
                     training step (resnets.train.step) is captured as one CUDA graph instead
      fold_bn, freeze  on for inference
    Where this torch has no oneDNN Graph path, the default CPU inference runs eagerly (an explicit
    compile=True uses inductor instead); where the graph cannot be built or run for a network, it
    runs eagerly too (OptimizedModel.fallback says why). Both are logged as one warning on the
    `resnets` logger; inputs the model refuses still raise its one-line InputError.
    fp16 on CUDA wants a GradScaler for training (the training step adds one); bf16 does not.
    """
    if mode not in MODES:
        raise ResNetsError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise ResNetsError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise ResNetsError(f"unknown compile mode {compile_mode!r}; use one of {', '.join(COMPILE_MODES)}")
    if checkpoint_activations and mode != "train":
        raise ResNetsError("checkpoint_activations saves memory for backward, so it needs mode='train'")
    dev = resolve_device(device)
    infer = mode == "infer"
    config = FastConfig(
        mode=mode,
        device=str(dev),
        precision=precision,
        channels_last=True if channels_last is None else channels_last,
        fold_bn=infer if fold_bn is None else fold_bn,
        compile=_compiles_by_default(model, infer, dev, precision, compile_mode)
        if compile is None
        else compile,
        compile_mode=None,
        freeze=False,
        checkpoint_activations=checkpoint_activations,
    )
    if config.compile and compile is None and compile_mode is None and dev.type == "cpu":
        if not onednn_graph_available():  # the CPU default never pays for an inductor build
            log.warning("this torch has no oneDNN Graph (torch.jit); CPU inference runs eagerly")
            config = replace(config, compile=False)
    if config.compile:
        config = replace(
            config,
            compile_mode=compile_mode or _default_compile_mode(infer, dev, precision),
            freeze=infer if freeze is None else freeze,
        )
    if config.compile_mode == ONEDNN_GRAPH and not (infer and dev.type == "cpu" and precision == "fp32"):
        raise ResNetsError("compile mode 'onednn-graph' is for fp32 inference on the CPU")

    if infer:
        model = fold_batchnorm(model) if config.fold_bn else copy.deepcopy(model).eval()
    else:
        model.train()
    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if checkpoint_activations:
        network = getattr(model, "module", model)  # under DistributedDataParallel, its .module
        if not hasattr(network, "set_grad_checkpointing"):
            raise ResNetsError(
                f"{type(network).__name__} has no set_grad_checkpointing(); build it with resnets"
            )
        network.set_grad_checkpointing(True)
    if config.compile_mode == ONEDNN_GRAPH:
        run: Callable[..., torch.Tensor] = OneDNNGraph(model)
    else:
        run = torch.compile(model, options=inductor_options(config)) if config.compile else model
    return OptimizedModel(model, config, run)


def _compiles_by_default(
    model: nn.Module, infer: bool, device: torch.device, precision: str, compile_mode: str | None
) -> bool:
    """CUDA, fp32 CPU inference of our ResNets (oneDNN Graph: built in about a second, so even a
    one-off predict gains) and any explicit compile mode compile; CPU training and bf16 CPU
    inference do not. The CPU graph is a trace, exact only for networks without data-dependent
    control flow: true of every ResNet, not known of other modules, which stay eager unless
    compile=True says otherwise."""
    cpu_fp32_infer = infer and device.type == "cpu" and precision == "fp32" and isinstance(model, ResNet)
    return device.type == "cuda" or compile_mode is not None or cpu_fp32_infer


def _default_compile_mode(infer: bool, device: torch.device, precision: str) -> str:
    """CUDA inference: CUDA graphs. CPU fp32 inference: oneDNN Graph, which measured faster than
    inductor here and compiles in seconds (docs/benchmarks.md). Otherwise torch.compile's default."""
    if infer and device.type == "cuda":
        return "reduce-overhead"
    if infer and device.type == "cpu" and precision == "fp32" and onednn_graph_available():
        return ONEDNN_GRAPH
    return "default"


def inductor_options(config: FastConfig) -> dict[str, Any]:
    """torch.compile's mode, spelled as inductor options so that freezing can join it.

    Freezing turns the (inference) weights into constants: inductor then folds and prepacks them
    (on CPU into oneDNN's blocked layout, fusing ReLU and the residual add into the conv); the
    C++ wrapper saves the Python call overhead between kernels on CPU.
    """
    options = dict(torch._inductor.list_mode_options(config.compile_mode or "default"))
    if config.freeze:
        # Dynamo reads the global flag (see _freezing); here it makes the backend differ from an
        # unfrozen compile, so dynamo's cache never hands a frozen model an unfrozen graph.
        options["freezing"] = True
        if config.device == "cpu":
            options["cpp_wrapper"] = True
    return options
