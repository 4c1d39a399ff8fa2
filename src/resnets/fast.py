"""optimize(): the fast path that train, eval, predict and bench all run.

Each option is something PyTorch already offers, chosen per device and mode and measured in
docs/benchmarks.md: channels-last memory format (convolutions run NHWC kernels without
transposes), bf16/fp16 autocast, torch.compile (fuses BN, ReLU and the residual add into the
convolutions' neighbours), BN folding and weight freezing for inference, CUDA graphs (one
launch instead of hundreds of kernels per step), fused SGD, and activation checkpointing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnets.errors import ResNetsError
from resnets.fuse import fuse_bn as fold_bn
from resnets.onednn_graph import ONEDNN_GRAPH, OneDNNGraph, onednn_graph_available

MODES = ("train", "infer")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# torch.compile's modes, and "onednn-graph": a frozen TorchScript graph run by oneDNN Graph
# (CPU fp32 inference only; see onednn_graph.py).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "onednn-graph")


@dataclass(frozen=True)
class FastConfig:
    """What optimize() resolved every option to: printed by bench, kept with results."""

    mode: str
    device: str
    precision: str
    channels_last: bool
    fuse_bn: bool
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
        self._copy_out = config.compile and config.compile_mode in ("reduce-overhead", "max-autotune")
        # Inductor reads its freezing flag per call (see _freezing); oneDNN Graph froze at the trace.
        self._inductor_freezing = config.freeze and config.compile_mode != ONEDNN_GRAPH

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

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


def autocast(device: torch.device | str, precision: str) -> Any:
    """Autocast for `precision`, or a no-op for fp32.

    The weight-cast cache is off: a ResNet uses each weight once per forward, so the cache saves
    nothing, and cached casts would dangle across CUDA-graph replays.
    """
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype, cache_enabled=False)


def _freezing(enabled: bool) -> Any:
    """Inductor freezing, switched on around the call rather than passed to torch.compile: dynamo
    reads the global flag while tracing to treat parameters as constants (without it, weights
    stay graph inputs and nothing gets folded or prepacked), and setting it globally would also
    freeze every other model the process compiles."""
    return torch._inductor.config.patch(freezing=True) if enabled else nullcontext()


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device we can run on now ('auto': CUDA if there is one), or a one-line
    ResNetsError saying why not."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ResNetsError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ResNetsError("device 'cuda' requested but CUDA is not available here; use --device cpu")
    return dev


def optimize(
    model: nn.Module,
    mode: str = "train",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    *,
    compile: bool | None = None,
    compile_mode: str | None = None,
    channels_last: bool | None = None,
    fuse_bn: bool | None = None,
    freeze: bool | None = None,
    checkpoint_activations: bool = False,
) -> OptimizedModel:
    """The fastest way to run `model` for `mode` on `device` at `precision`, same outputs.

    mode="train" wraps `model` itself (moved to the device; the returned module shares its
    parameters, so build the optimizer from either). mode="infer" works on an eval-mode copy
    with BN folded into the convolutions and, when compiled, the weights frozen as constants.

    Defaults, per device (None means "choose"):
      channels_last  on (NHWC kernels for cuDNN and oneDNN)
      compile        on for CUDA (or when a compile_mode is given); off for CPU, where compiling
                     ResNet-50 takes ~20-40 s, which a one-off predict never earns back; pass
                     compile=True for serving and benchmarks
      compile_mode   'reduce-overhead' (CUDA graphs) for CUDA inference; 'default' for training,
                     where `make_train_step` captures the whole step as one CUDA graph instead
      fuse_bn, freeze  on for inference
    fp16 on CUDA wants a GradScaler for training (`make_train_step` adds one); bf16 does not.
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
        fuse_bn=infer if fuse_bn is None else fuse_bn,
        compile=(dev.type == "cuda" or compile_mode is not None) if compile is None else compile,
        compile_mode=None,
        freeze=False,
        checkpoint_activations=checkpoint_activations,
    )
    if config.compile:
        config = replace(
            config,
            compile_mode=compile_mode or _default_compile_mode(infer, dev, precision),
            freeze=infer if freeze is None else freeze,
        )
    if config.compile_mode == ONEDNN_GRAPH and not (infer and dev.type == "cpu" and precision == "fp32"):
        raise ResNetsError("compile mode 'onednn-graph' is for fp32 inference on the CPU")

    if infer:
        model = fold_bn(model) if config.fuse_bn else copy.deepcopy(model).eval()
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


# --- training --------------------------------------------------------------------------------


def make_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
    *,
    device: str | torch.device = "cpu",
    tensor_lr: bool = False,
) -> torch.optim.SGD:
    """SGD as the paper trains (sec. 3.4: momentum 0.9, weight decay 1e-4), in one fused kernel.

    `fused=True` updates every parameter in one launch on CUDA and CPU, where the default
    (foreach) takes several. `tensor_lr=True` keeps the learning rate in a device tensor, so a
    CUDA-graph-captured step reads the current value: change it with `set_lr`.
    """
    dev = torch.device(device)
    fused = dev.type in ("cuda", "cpu")
    rate: float | torch.Tensor = torch.tensor(lr, device=dev) if tensor_lr else lr
    return torch.optim.SGD(
        params, lr=rate, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, fused=fused
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate in place (tensor learning rates keep their storage)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


TrainStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    precision: str = "fp32",
    cuda_graph: bool | None = None,
    warmup: int = 3,
) -> TrainStep:
    """`step(x, y) -> loss`: zero the grads, forward, loss, backward, update.

    On CUDA (unless `cuda_graph=False`) the whole step is captured once as a CUDA graph after
    `warmup` ordinary steps and replayed from then on, so the CPU launches one graph per step
    instead of hundreds of kernels (He et al.'s CIFAR nets are small enough for launches to
    dominate). Every call is one real step on its own batch. A captured step needs fixed
    shapes: the last, smaller batch of an epoch must be dropped or padded. fp16 needs a
    GradScaler, whose overflow check syncs with the CPU, so fp16 steps are never captured.
    """
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    step = _eager_step(model, optimizer, loss_fn, scaler)
    if cuda_graph is None:
        cuda_graph = device.type == "cuda" and scaler is None
    if not cuda_graph:
        return step
    if device.type != "cuda" or scaler is not None:
        raise ResNetsError(
            "a CUDA-graph train step needs a CUDA model and fp32 or bf16 (fp16 needs a GradScaler)"
        )
    return CudaGraphStep(step, warmup)


def _eager_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scaler: torch.amp.GradScaler | None,
) -> TrainStep:
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss.detach()

    return step


class CudaGraphStep:
    """Runs `step` eagerly `warmup` times on a side stream (compiling, cuDNN autotuning and
    allocating optimizer state), then captures it into a CUDA graph with static input buffers
    and replays it. The returned loss is a static buffer too: read or clone it before the next
    call if you keep it."""

    def __init__(self, step: TrainStep, warmup: int = 3) -> None:
        self.step = step
        self.warmup = max(1, warmup)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None
        self.side = torch.cuda.Stream()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = self.step(x, y)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        if self.graph is None:
            self.static = (x.clone(), y.clone())
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.step(*self.static)
        else:
            assert self.static is not None
            if x.shape != self.static[0].shape or y.shape != self.static[1].shape:
                raise ResNetsError(
                    f"a CUDA-graph step replays fixed shapes {tuple(self.static[0].shape)}; got "
                    f"{tuple(x.shape)} (drop or pad the last batch)"
                )
            self.static[0].copy_(x, non_blocking=True)
            self.static[1].copy_(y, non_blocking=True)
        self.graph.replay()
        assert self.loss is not None
        return self.loss
