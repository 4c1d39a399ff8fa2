"""TrainConfig: every setting of a training run in one dataclass (nanoGPT style).

A recipe (recipes.py) fills it; any field can then be overridden on the command line
(`--lr 0.05`, `--milestones 30,60`); the resolved config is printed by `--print-config` and saved
in the run directory, so a run can be repeated and resumed from it alone.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from resnets.errors import ResNetsError
from resnets.models.create import MODEL_OVERRIDES
from resnets.preprocess import NORMALIZATIONS
from resnets.runtime import device as runtime_device
from resnets.runtime.optimize import COMPILE_MODES

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
WARMUP_SHAPES = ("linear", "constant")
PRECISIONS = tuple(runtime_device.PRECISIONS)
DEVICES = runtime_device.DEVICES


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # what to train, on what
    model: str = _f("resnet20", "model name, compact spec or Table-1 notation (see 'resnets list')")
    data: str = _f(
        "digits",
        "digits, synthetic, cifar10, cifar100, or a path to a CIFAR python folder or an ImageFolder root",
    )
    data_dir: str = _f("data", "where cifar10/cifar100 are found or downloaded to")
    download: bool = _f(False, "download cifar10/cifar100 into --data-dir if missing (needs internet)")
    input_size: int | None = _f(
        None, "training resolution (default: the data's own; the model's for folders)"
    )
    val_split: float | None = _f(
        None,
        "hold out this fraction (< 1) or number of training images for validation instead of the dataset's own val/test part",
    )
    split_seed: int = _f(0, "seed of the held-out split (fixed, so resume and eval see the same images)")
    accept_changed_data: bool = _f(
        False,
        "resume (or eval) although the data's files changed since the run was made: the recorded validation files that remain stay validation files, the rest are trained on",
    )
    train_subset: int | None = _f(
        None,
        "train on a fixed stratified subset of this many training images (quick experiments; the smoke scale of 'resnets reproduce')",
    )
    val_subset: int | None = _f(None, "validate on a fixed stratified subset of this many validation images")
    synthetic_count: int = _f(512, "images in --data synthetic")
    synthetic_classes: int = _f(10, "classes in --data synthetic")
    workers: int | None = _f(None, "DataLoader worker processes for image folders (default: min(8, CPUs))")
    decode_on_device: bool = _f(
        False,
        "image folders: decode JPEGs on the training device (nvJPEG on CUDA, torchvision.io.decode_jpeg), a batch at a time in the main process; workers only read files",
    )
    decode_in_memory: str = _f(
        "auto",
        "image folders: decode every image once into memory and train like in-memory data (auto: when the images are no larger than the input size and fit --memory-budget)",
        ("auto", "never", "always"),
    )
    memory_budget: str | None = _f(
        None,
        "most memory the decoded images may take, e.g. 4GiB (default: a quarter of RAM, and of the GPU's)",
    )
    weights: str | None = _f(
        None,
        "start from these weights (.safetensors, or a torchvision/timm/CIFAR .pth; see docs/weights.md)",
    )
    reset_head: bool = _f(False, "with --weights: a fresh classifier if the file's has another size")
    freeze: str | None = _f(
        None,
        "parts that keep their weights (no gradients; their BatchNorm statistics fixed): comma-separated stem, layer1, ... layerN, or all-but-head for a linear probe",
    )
    freeze_bn: bool = _f(
        False, "every BatchNorm in eval mode with frozen affine parameters (running statistics fixed)"
    )
    lr_backbone: float | None = _f(
        None, "learning-rate multiplier for everything but the classifier (e.g. 0.1 when fine-tuning)"
    )
    # model overrides (None keeps the model's own)
    shortcut: str | None = _f(None, "shortcut option A, B or C (paper sec. 3.3)", ("A", "B", "C"))
    width_multiplier: float | None = _f(None, "multiplier on every stage width")
    drop_path_rate: float | None = _f(None, "stochastic depth rate at the last block")
    zero_init_residual: bool | None = _f(None, "start every residual branch at zero (last BN gamma = 0)")
    # how long
    epochs: float | None = _f(30.0, "training length in epochs (ignored when --iterations is set)")
    iterations: int | None = _f(
        None, "training length in iterations; milestones and warm-up then count iterations too"
    )
    batch_size: int = _f(
        128,
        "global mini-batch size: the images of one optimizer step over all processes and --accum-steps (each process takes batch-size / (processes x accum-steps) per micro-step)",
    )
    accum_steps: int = _f(
        1, "gradient accumulation: micro-batches per optimizer step, so a global batch fits on fewer devices"
    )
    # optimiser
    optimizer: str = _f("sgd", "optimiser", OPTIMIZERS)
    lr: float = _f(0.1, "peak learning rate (for --lr-base-batch images when that is set)")
    lr_base_batch: int | None = _f(
        None,
        "linear scaling rule (Goyal et al. 2017): the peak lr is lr x batch-size / lr-base-batch (e.g. 256 with lr 0.1); pair it with --warmup",
    )
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "Nesterov momentum")
    weight_decay: float = _f(1e-4, "L2 weight decay")
    decay_norm_and_bias: bool = _f(True, "apply weight decay to BN parameters and biases too")
    grad_clip: float | None = _f(None, "clip the gradient norm to this value")
    # schedule
    schedule: str = _f("step", "learning-rate schedule after warm-up", SCHEDULES)
    milestones: list[float] = _f([], "step schedule: divide lr by 1/gamma at these epochs (or iterations)")
    gamma: float = _f(0.1, "step schedule: factor at each milestone")
    warmup: float = _f(0.0, "linear warm-up length in epochs (or iterations), from --warmup-lr to --lr")
    warmup_lr: float | None = _f(None, "learning rate at the start of warm-up (default lr/100)")
    warmup_shape: str = _f(
        "linear",
        "linear: ramp from --warmup-lr up to --lr (Goyal et al. 2017); constant: hold --warmup-lr, then jump to --lr (He et al. 2016's CIFAR warm-up: 0.01 for 400 iterations)",
        WARMUP_SHAPES,
    )
    warmup_until_error: float | None = _f(
        None, "hold lr at --warmup-lr until the training error is below this (paper sec. 4.2, ResNet-110)"
    )
    # regularisation
    label_smoothing: float = _f(0.0, "label smoothing")
    mixup_alpha: float = _f(0.0, "MixUp alpha (0 = off)")
    cutmix_alpha: float = _f(0.0, "CutMix alpha (0 = off); with MixUp, one of the two per batch")
    ema_decay: float | None = _f(
        None,
        "keep an exponential moving average of the weights with this decay per step (evaluated and saved instead of the raw weights)",
    )
    # augmentation and preprocessing
    augment: str = _f(
        "auto",
        "training augmentation (auto: pad-crop for in-memory data, resized-crop for image folders)",
        ("auto", "pad-crop", "resized-crop", "scale", "none"),
    )
    pad: int = _f(4, "pad-crop: pixels of zero padding around the image before the random crop")
    normalize: str = _f(
        "per-channel",
        "input normalisation: per-channel ((x - mean) / std, per channel, of the training images) or per-pixel-mean (x - the training images' mean image, paper sec. 3.4 and 4.2); recorded with the weights",
        NORMALIZATIONS,
    )
    flip: bool = _f(True, "random horizontal flips")
    lighting: float = _f(
        0.0,
        "image folders: AlexNet's PCA colour noise, the std of its per-image coefficients (0 = off; paper-imagenet: 0.1, as fb.resnet.torch)",
    )
    eval_crops: int = _f(
        1, "final evaluation of folder data: 1 (centre crop) or 10 (paper's 10-crop testing)"
    )
    # runtime
    seed: int = _f(0, "random seed (initial weights, data order, augmentation)")
    device: str = _f("auto", "device", DEVICES)
    precision: str = _f("fp32", "autocast precision (fp16 adds a gradient scaler)", PRECISIONS)
    compile: bool = _f(False, "torch.compile the model")
    compile_mode: str | None = _f(
        None, "with --compile: torch.compile's mode (default: torch.compile's default)", COMPILE_MODES
    )
    cuda_graph: bool | None = _f(
        None,
        "capture the whole training step as one CUDA graph (default: whenever it can be: CUDA, one process, in-memory data, fp32 or bf16, without --skip-nonfinite, --checkpoint-activations or a compile mode with CUDA graphs of its own)",
    )
    channels_last: bool | None = _f(None, "channels-last memory format (default: on for CUDA)")
    checkpoint_activations: bool = _f(
        False,
        "recompute each block in backward instead of keeping its activations: a fraction of the activation memory for about one more forward pass",
    )
    deterministic: bool = _f(False, "deterministic algorithms only (bit-identical resume on CPU)")
    threads: int | None = _f(None, "CPU threads for torch (default: torch's)")
    checkpoint_every: int = _f(1, "save a checkpoint every N epochs (and always at the end)")
    keep_last: int = _f(
        1,
        "checkpoints to keep in RUN_DIR/checkpoint; older ones are deleted only once a newer one is safely written",
    )
    skip_nonfinite: bool = _f(
        False,
        "skip an optimizer step whose loss is NaN or infinite and go on (default: stop the run, naming the step and the last good checkpoint)",
    )
    auto_batch_size: bool = _f(
        False,
        "before training, lower --batch-size to the largest that fits in the device's memory (found by trial steps)",
    )
    checkpoint_every_steps: int | None = _f(
        None,
        "also save a checkpoint every N optimizer steps, in mid-epoch too, so a crash or a restarted worker loses at most N steps",
    )
    sync_bn: bool = _f(
        False, "with several processes: BatchNorm statistics over the global batch (SyncBatchNorm)"
    )
    tensorboard: bool = _f(
        False, "also log to TensorBoard in RUN_DIR/tensorboard (needs the tensorboard package)"
    )
    out: str | None = _f(None, "run directory (default runs/<model>-<data>-<time>)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """A config from JSON/TOML data (a run's config.json, a --config file): unknown fields and
        values of the wrong type are one-line ResNetsErrors, not failures later in the run."""
        if not isinstance(data, dict):
            raise ResNetsError(f"a config is a table of fields, got {type(data).__name__}")
        if "width" in data and "width_multiplier" not in data:  # the field's name in earlier runs
            data = {("width_multiplier" if k == "width" else k): v for k, v in data.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ResNetsError(f"unknown config field(s): {', '.join(map(str, unknown))}")
        hints = typing.get_type_hints(cls)
        wrong = [f"{k}={v!r} (wants {hints[k]})" for k, v in data.items() if not _fits(v, hints[k])]
        if wrong:
            raise ResNetsError(f"config field(s) of the wrong type: {', '.join(wrong[:4])}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Raise a one-line ResNetsError for settings that cannot work together, naming the
        command-line flags (`--batch-size`), as users set them there."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ResNetsError(f"{flag(f.name)} must be one of {', '.join(choices)}, got {value!r}")
        if self.iterations is None and (self.epochs is None or self.epochs <= 0):
            raise ResNetsError("set --epochs > 0 or --iterations")
        if self.iterations is not None and self.iterations <= 0:
            raise ResNetsError("--iterations must be > 0")
        for name in ("batch_size", "checkpoint_every", "keep_last", "accum_steps"):
            if getattr(self, name) < 1:
                raise ResNetsError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in (
            "checkpoint_every_steps",
            "lr_base_batch",
            "workers",
            "threads",
            "train_subset",
            "val_subset",
        ):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "workers" else 1):
                raise ResNetsError(f"{flag(name)} must be >= {0 if name == 'workers' else 1}, got {value}")
        for name in ("lr", "momentum", "weight_decay", "gamma", "warmup", "label_smoothing", "lighting"):
            if getattr(self, name) < 0 or (name == "lr" and self.lr == 0):
                raise ResNetsError(
                    f"{flag(name)} must be {'> 0' if name == 'lr' else '>= 0'}, got {getattr(self, name)}"
                )
        if self.eval_crops not in (1, 10):
            raise ResNetsError(f"--eval-crops must be 1 or 10, got {self.eval_crops}")
        if self.lr_backbone is not None and self.lr_backbone <= 0:
            raise ResNetsError(
                f"--lr-backbone must be > 0, got {self.lr_backbone} (freeze with --freeze instead)"
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ResNetsError(f"--ema-decay must be in (0, 1), got {self.ema_decay}")
        if self.pad < 0:
            raise ResNetsError(f"--pad must be >= 0, got {self.pad}")
        if self.reset_head and not self.weights:
            raise ResNetsError("--reset-head needs weights to start from (--weights PATH)")
        if self.compile_mode is not None and not self.compile:
            raise ResNetsError("--compile-mode chooses how to compile; it needs --compile")
        return self

    def model_overrides(self) -> dict[str, Any]:
        """The model overrides this config sets (models.create.MODEL_OVERRIDES; the data decides
        num_classes and in_channels)."""
        keys = [k for k in MODEL_OVERRIDES if k not in ("num_classes", "in_channels")]
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def flag(name: str) -> str:
    """The command-line flag of config field `name`: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value can stand for a field annotated `hint` (ints do for floats)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            ok = value is None
        elif typing.get_origin(option) is list:
            (item,) = typing.get_args(option)
            ok = isinstance(value, list) and all(_fits(v, item) for v in value)
        elif option is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif option is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, option)
        if ok:
            return True
    return False
