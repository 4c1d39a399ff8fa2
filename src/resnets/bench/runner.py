"""resnets bench: our fast path against its peers, in one process, with one loop.

Training times exactly the step `resnets train` runs: bench makes a TrainConfig from its settings
and builds the step with train's own builder (resnets.train.step.build_step: fused SGD, the loss
guard, device-side statistics and, on CUDA, the whole step as one CUDA graph). The peers run the
plain PyTorch step (`eager_train_step`). Every peer gets the same synthetic batch already on the
device, the same memory format and precision and the same optimizer settings (SGD, momentum 0.9,
weight decay 1e-4, as the paper trains); the first steps (compilation, cuDNN autotuning, CUDA-graph
capture) are warm-up and not timed. Time is taken around chunks of steps (CUDA events on GPU,
perf_counter on CPU) and the median chunk is reported, so a hiccup of the machine does not become
the result.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnets.errors import ResNetsError
from resnets.export.int8 import quantize
from resnets.export.onnx import export_onnx, onnx_session
from resnets.models.create import create_model
from resnets.models.zoo import default_input_size
from resnets.runtime.device import autocast, resolve_device
from resnets.runtime.optimize import optimize
from resnets.text import first_line
from resnets.train.config import TrainConfig
from resnets.train.step import GRAPH_WARMUP, TrainStep, build_step, use_cuda_graph

PEERS = ("torchvision", "torchvision-compile", "onnxruntime", "onnxruntime-int8")
# Calibration batches the INT8 peer is quantized with: random inputs, since only its speed is measured
# (`resnets export --int8` calibrates on real images and checks the accuracy).
INT8_CALIBRATION_BATCHES = 4


@dataclass
class BenchSettings:
    model: str = "resnet50"
    mode: str = "train"
    device: str = "cpu"
    batch_size: int = 1
    input_size: int | None = None
    precision: str = "fp32"
    steps: int = 30
    warmup: int = 10
    repeats: int = 5
    compare: tuple[str, ...] = ("torchvision",)
    # None: compile where it pays for a benchmark run: on CUDA, and for CPU inference
    # (compiling CPU training takes minutes and is not measured to pay off).
    compile: bool | None = None
    compile_mode: str | None = None
    cuda_graph: bool = True
    checkpoint_activations: bool = False
    channels_last: bool = True
    lr: float = 0.1


@dataclass
class PeerResult:
    """One peer's numbers: throughput, step time, peak memory and what the warm-up cost."""

    name: str
    img_s: float | None = None
    ms_step: float | None = None
    peak_mem_mb: float | None = None
    mem_kind: str = ""
    first_step_s: float | None = None
    note: str = ""
    error: str = ""


@dataclass
class BenchReport:
    settings: BenchSettings
    environment: dict[str, str]
    fast_config: dict[str, Any]
    results: list[PeerResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ours(self) -> PeerResult:
        return self.results[0]

    def ratios(self) -> dict[str, float]:
        """Our throughput over each peer's (> 1: we are faster)."""
        ours = self.ours.img_s
        return {r.name: ours / r.img_s for r in self.results[1:] if ours is not None and r.img_s is not None}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **asdict(self.settings),
            "environment": self.environment,
            "fast_config": self.fast_config,
            "results": [asdict(r) for r in self.results],
            "ours_img_s": self.ours.img_s,
            "notes": self.notes,
        }
        for name, ratio in self.ratios().items():
            data[f"ratio_vs_{name.replace('-', '_')}"] = ratio
        return data


MEMORY_KINDS = {
    "cuda_max_allocated": "torch.cuda.max_memory_allocated during the run (weights, optimizer state, activations)",
    "rss_peak_delta": "process RSS high-water mark above its level before the peer was built (sampled every 2 ms; approximate)",
}


# --- the loop ----------------------------------------------------------------------------------


def synthetic_batch(
    batch_size: int,
    input_size: int,
    num_classes: int,
    device: torch.device,
    channels_last: bool = True,
    generator_seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and labels, made on `device` once: the input pipeline costs nothing."""
    g = torch.Generator(device="cpu").manual_seed(generator_seed)
    x = torch.randn(batch_size, 3, input_size, input_size, generator=g)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    step: Callable[[], Any],
    *,
    steps: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    on_step: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """(median ms per step, seconds of the first step). Warm-up steps are run and discarded;
    the timed steps are split into `repeats` chunks timed whole, on the device's clock."""
    tick = on_step or (lambda: None)
    start = time.perf_counter()
    step()
    synchronize(device)
    first_s = time.perf_counter() - start
    tick()
    for _ in range(max(0, warmup - 1)):
        step()
        tick()
    synchronize(device)
    repeats, per_chunk = chunking(steps, repeats)
    chunks = []
    for _ in range(repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(per_chunk):
                step()
                tick()
            end.record()
            end.synchronize()
            chunks.append(begin.elapsed_time(end) / per_chunk)
        else:
            t = time.perf_counter()
            for _ in range(per_chunk):
                step()
                tick()
            chunks.append((time.perf_counter() - t) * 1000 / per_chunk)
    return statistics.median(chunks), first_s


def chunking(steps: int, repeats: int) -> tuple[int, int]:
    """(chunks, steps per chunk): `steps` timed steps in `repeats` equal chunks (at least one)."""
    repeats = max(1, min(repeats, steps))
    return repeats, max(1, steps // repeats)


def eager_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, precision: str, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The peers' training step: what a plain PyTorch loop does, under the same autocast."""
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss.detach()

    return step


def paper_sgd(model: nn.Module, lr: float) -> torch.optim.SGD:
    """The peers' optimizer: SGD as the paper sets it (sec. 3.4), PyTorch's default implementation."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)


# --- peers --------------------------------------------------------------------------------------

Step = Callable[[], Any]


def build_ours(settings: BenchSettings, x: torch.Tensor, y: torch.Tensor) -> tuple[Step, dict[str, Any]]:
    """Our side: the fast inference path, or for training the step `resnets train` runs, built by
    its own builder from a TrainConfig with these settings."""
    device = x.device
    model = _our_model(settings)
    if settings.mode == "infer":
        fast = optimize(
            model,
            mode="infer",
            device=device,
            precision=settings.precision,
            compile=_compiles(settings, device),
            compile_mode=settings.compile_mode,
            channels_last=settings.channels_last,
        )
        return lambda: fast(x), fast.config.to_dict()
    step = build_train_step(settings, model, device)
    counter = iter(range(1, 2**62))
    batch = [(x, y)]
    return lambda: step(batch, next(counter)), step.describe()


def train_config(settings: BenchSettings, device: torch.device) -> TrainConfig:
    """The TrainConfig that trains like this benchmark: one micro-batch per step, SGD with the
    paper's momentum and weight decay (TrainConfig's defaults), and the bench's runtime choices."""
    compile = _compiles(settings, device)
    return TrainConfig(
        model=settings.model,
        device=str(device),
        batch_size=settings.batch_size,
        lr=settings.lr,
        precision=settings.precision,
        compile=compile,
        compile_mode=settings.compile_mode if compile else None,
        channels_last=settings.channels_last,
        checkpoint_activations=settings.checkpoint_activations,
        cuda_graph=None if settings.cuda_graph else False,
    ).validate()


def build_train_step(settings: BenchSettings, model: nn.Module, device: torch.device) -> TrainStep:
    """train's step over `model` for these settings (synthetic batches already on the device)."""
    config = train_config(settings, device)
    return build_step(config, model, device, num_classes=model.spec.num_classes, in_memory=True)


def _compiles(settings: BenchSettings, device: torch.device) -> bool:
    """None means: compile where it pays for a benchmark run (CUDA, and CPU inference)."""
    if settings.compile is not None:
        return settings.compile
    return device.type == "cuda" or settings.mode == "infer" or settings.compile_mode is not None


def build_torchvision(
    settings: BenchSettings, x: torch.Tensor, y: torch.Tensor, compile_mode: str | None = None
) -> Step:
    import torchvision

    device = x.device
    model = torchvision.models.get_model(settings.model, weights=None, num_classes=_num_classes(settings))
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    run: nn.Module = torch.compile(model, mode=compile_mode) if compile_mode else model
    if settings.mode == "infer":
        model.eval()

        def infer() -> torch.Tensor:
            with torch.no_grad(), autocast(device, settings.precision):
                return run(x)

        return infer
    step = eager_train_step(run, paper_sgd(model, settings.lr), settings.precision, device)
    return lambda: step(x, y)


def build_onnxruntime(settings: BenchSettings, x: torch.Tensor, workdir: str) -> Step:
    """torchvision's model exported to ONNX (fp32) and run by onnxruntime on the CPU, with the
    same threads as torch (export.onnx, as `resnets export` writes and checks its files)."""
    import torchvision

    model = torchvision.models.get_model(settings.model, weights=None, num_classes=_num_classes(settings))
    model.eval()
    example = x.detach().cpu().contiguous()
    path = os.path.join(workdir, f"{settings.model}.onnx")
    export_onnx(model, example, path)
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    array = example.numpy()
    return lambda: session.run(None, {name: array})


def build_onnxruntime_int8(settings: BenchSettings, x: torch.Tensor, workdir: str) -> Step:
    """Our model as `resnets export --int8` writes it (fp32 ONNX, then onnxruntime's static
    quantization: QDQ, per-channel int8 weights, uint8 activations), run by onnxruntime on the CPU
    with the same threads as torch. Calibrated on random inputs: this row measures speed only."""
    model = _our_model(settings).eval()
    example = x.detach().cpu().contiguous()
    fp32 = os.path.join(workdir, f"{settings.model}-for-int8.onnx")
    int8 = os.path.join(workdir, f"{settings.model}-int8.onnx")
    export_onnx(model, example, fp32)
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.randn(example.shape, generator=generator) for _ in range(INT8_CALIBRATION_BATCHES)]
    quantize(fp32, int8, calibration, batch=None)
    session = onnx_session(int8)
    name = session.get_inputs()[0].name
    array = example.numpy()
    return lambda: session.run(None, {name: array})


def torchvision_has(name: str) -> bool:
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def _our_model(settings: BenchSettings) -> nn.Module:
    return create_model(settings.model)


def _num_classes(settings: BenchSettings) -> int:
    return create_model(settings.model, device="meta").spec.num_classes


# --- measurement ---------------------------------------------------------------------------------


def measure(
    name: str,
    build: Callable[[], Step],
    settings: BenchSettings,
    device: torch.device,
    on_step: Callable[[], None] | None = None,
    *,
    catch: bool = True,
    log_errors: bool = False,
) -> PeerResult:
    """Build one peer, warm it up, time it, and record its peak memory. With `catch`, a failing
    peer becomes a result with its error (the others still run); `log_errors` also prints its
    traceback to stderr."""
    result = PeerResult(name)
    _release(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with _rss_sampler() as rss:
        try:
            ms, first_s = time_steps(
                build(),
                steps=settings.steps,
                warmup=settings.warmup,
                repeats=settings.repeats,
                device=device,
                on_step=on_step,
            )
        except ResNetsError:
            raise
        except Exception as exc:
            if not catch:
                raise
            if log_errors:
                traceback.print_exc(file=sys.stderr)
            result.error = _one_line(exc)
            return result
    result.ms_step = ms
    result.img_s = settings.batch_size * 1000.0 / ms
    result.first_step_s = first_s
    if device.type == "cuda":
        result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
        result.mem_kind = "cuda_max_allocated"
    elif rss.peak_delta is not None:
        result.peak_mem_mb = rss.peak_delta / 2**20
        result.mem_kind = "rss_peak_delta"
    return result


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"[:300]


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class _RssPeak:
    peak_delta: int | None = None


@contextmanager
def _rss_sampler(period_s: float = 0.002) -> Iterator[_RssPeak]:
    """Sample this process's resident memory (Linux /proc) in a thread; report the peak rise."""
    found = _RssPeak()
    if not os.path.exists("/proc/self/statm"):
        yield found
        return
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base = rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(period_s):
            peak[0] = max(peak[0], rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        found.peak_delta = max(peak[0], rss()) - base


def environment(device: torch.device) -> dict[str, str]:
    import torchvision

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu: {cpu_name()}, {torch.get_num_threads()} threads"
    env = {"device_name": name, "torch": torch.__version__, "torchvision": torchvision.__version__}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_settings(
    model: str = "resnet50",
    mode: str = "train",
    device: str | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    **kw: Any,
) -> BenchSettings:
    """Defaults per device: a GPU gets ResNet-50's ImageNet setting at GPU scale (batch 256, bf16);
    a CPU gets batch 1 inference or batch 8 training in fp32."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.startswith("cuda")
    if batch_size is None:
        batch_size = 256 if cuda else (1 if mode == "infer" else 8)
    return BenchSettings(
        model=model,
        mode=mode,
        device=dev,
        batch_size=batch_size,
        precision=precision or ("bf16" if cuda else "fp32"),
        **{k: v for k, v in kw.items() if v is not None},
    )


def run_bench(
    settings: BenchSettings, on_step: Callable[[str, BenchSettings], Callable[[], None]] | None = None
) -> BenchReport:
    """Ours first, then each peer of `settings.compare`, in this process, with one loop.

    `on_step(peer_name, settings)` (the settings as run: input size and warm-up resolved) may
    return a callback called after every step (a progress bar). Raises ResNetsError for settings
    that cannot run (unknown mode, model or peer, an input too small for the model).
    """
    if settings.mode not in ("train", "infer"):
        raise ResNetsError(f"unknown mode {settings.mode!r}; use train or infer")
    if settings.batch_size < 1 or settings.steps < 1:
        raise ResNetsError("batch size and steps must be at least 1")
    unknown = [p for p in settings.compare if p not in PEERS]
    if unknown:
        raise ResNetsError(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)}")
    if settings.compile is False and settings.compile_mode is not None:
        raise ResNetsError("--compile-mode chooses how to compile; drop --no-compile or --compile-mode")
    device = resolve_device(settings.device)
    meta = create_model(settings.model, device="meta")  # bad names fail here, before any work
    settings = replace(settings, input_size=settings.input_size or default_input_size(meta.spec))
    graphed = settings.mode == "train" and use_cuda_graph(
        train_config(settings, device), device, in_memory=True, world_size=1
    )
    if graphed and settings.warmup <= GRAPH_WARMUP:
        settings = replace(settings, warmup=GRAPH_WARMUP + 1)  # capture must not be timed
    x, y = synthetic_batch(
        settings.batch_size, settings.input_size, meta.spec.num_classes, device, settings.channels_last
    )
    meta.check_input(x)
    report = BenchReport(settings, environment(device), {})

    def tick(name: str) -> Callable[[], None] | None:
        return on_step(name, settings) if on_step is not None else None

    def build_ours_step() -> Step:
        step, config = build_ours(settings, x, y)
        report.fast_config = config
        return step

    # Our own failures are bugs: they keep their traceback.
    report.results.append(measure("ours", build_ours_step, settings, device, tick("ours"), catch=False))
    with tempfile.TemporaryDirectory(prefix="resnets-bench-") as workdir:
        for peer in settings.compare:
            skip = _skip_reason(peer, settings, device)
            if skip:
                report.notes.append(f"{peer} skipped: {skip}")
                continue
            builders: dict[str, Callable[[], Step]] = {
                "torchvision": lambda: build_torchvision(settings, x, y),
                "torchvision-compile": lambda: build_torchvision(settings, x, y, compile_mode="default"),
                "onnxruntime": lambda: build_onnxruntime(settings, x, workdir),
                "onnxruntime-int8": lambda: build_onnxruntime_int8(settings, x, workdir),
            }
            report.results.append(measure(peer, builders[peer], settings, device, tick(peer)))
    return report


def _skip_reason(peer: str, settings: BenchSettings, device: torch.device) -> str:
    if peer.startswith("torchvision") or peer == "onnxruntime":
        if not torchvision_has(settings.model):
            return f"torchvision has no {settings.model!r}"
    if peer.startswith("onnxruntime"):
        if settings.mode != "infer":
            return "onnxruntime is an inference engine (use --mode infer)"
        if device.type != "cpu":
            return "the onnxruntime peer runs on the CPU (use --device cpu)"
        if settings.precision != "fp32":
            return "the ONNX export is fp32 (use --precision fp32)"
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install 'resnets[export]')"
    return ""
