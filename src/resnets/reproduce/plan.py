"""What each experiment trains, at which scale, with which config, in which run directory.

Every network of every experiment is trained with the paper's CIFAR recipe (`paper-cifar`, sec.
4.2) and keyed by (network, seed) only, so experiments share their runs: fig7 after fig6 trains
nothing, and table6 after fig6 neither.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from resnets.errors import ResNetsError
from resnets.train.config import TrainConfig
from resnets.train.recipes import resolve_recipe

# The CIFAR networks of sec. 4.2 in the zoo, by family: 6n+2 layers.
FAMILY_DEPTHS = {"plain": (20, 32, 44, 56, 110), "resnet": (20, 32, 44, 56, 110, 1202)}
FAMILY_NAMES = {"plain": "plain", "resnet": "ResNet"}
# Config fields that say where or how fast a run goes, not what it computes: a finished run is
# reused whatever they were.
RUNTIME_FIELDS = ("out", "device", "workers", "threads", "data_dir", "download", "decode_on_device")


@dataclass(frozen=True)
class Experiment:
    """One experiment of the paper: its name, what it shows, and its networks by family with
    the paper's depths (`--depths` replaces them: every family at every depth given)."""

    name: str
    title: str
    families: tuple[tuple[str, tuple[int, ...]], ...]

    def networks(self, depths: tuple[int, ...] | None = None) -> list[str]:
        """Zoo names ('plain20', 'resnet56', ...) in family, then depth, order.

        Raises ResNetsError for a depth the zoo has no network of for a family.
        """
        names = []
        for family, default in self.families:
            for depth in depths or default:
                if depth not in FAMILY_DEPTHS[family]:
                    known = ", ".join(map(str, FAMILY_DEPTHS[family]))
                    raise ResNetsError(
                        f"{self.name}: no {FAMILY_NAMES[family]}-{depth} (6n+2 CIFAR depths with a "
                        f"{FAMILY_NAMES[family]} in the zoo: {known})"
                    )
                names.append(f"{family}{depth}")
        return list(dict.fromkeys(names))


EXPERIMENTS: dict[str, Experiment] = {
    "table6": Experiment(
        "table6", "Table 6: CIFAR-10 test error of ResNets by depth", (("resnet", (20, 32, 44, 56, 110)),)
    ),
    "fig1": Experiment(
        "fig1", "Fig. 1: training and test error of 20- and 56-layer plain networks", (("plain", (20, 56)),)
    ),
    "fig6": Experiment(
        "fig6",
        "Fig. 6 (left, middle): training and test error of plain networks and ResNets",
        (("plain", (20, 32, 44, 56)), ("resnet", (20, 32, 44, 56, 110))),
    ),
    "fig7": Experiment(
        "fig7",
        "Fig. 7: standard deviations of the 3x3 layers' responses",
        (("plain", (20, 56)), ("resnet", (20, 56, 110))),
    ),
}


@dataclass(frozen=True)
class Scale:
    """How long each network trains: `iterations` of `batch_size` images from learning rate
    `lr`, divided by 10 at 1/2 and 3/4 of them (32k and 48k of 64k, sec. 4.2), on at most
    `train_subset` training and `val_subset` test images (fixed stratified subsets; None: all)."""

    name: str
    iterations: int
    batch_size: int = 128
    lr: float = 0.1
    train_subset: int | None = None
    val_subset: int | None = None
    note: str = ""

    @property
    def milestones(self) -> list[float]:
        return [float(self.iterations // 2), float(self.iterations * 3 // 4)]

    def with_iterations(self, iterations: int | None) -> Scale:
        """This scale with `iterations` instead (milestones at the same fractions)."""
        if iterations is None:
            return self
        if iterations < 1:
            raise ResNetsError("--iterations must be >= 1")
        return replace(self, iterations=iterations)


# The smoke scale trains on the images of 64 of the paper's iterations (1/1000 of its training),
# in mini-batches of 32 with the learning rate scaled with the batch (0.1 x 32/128, the linear
# scaling rule of Goyal et al. 2017): 64 steps of 128 at lr 0.1 are too few for the 44-layer and
# deeper ResNets to recover from their first unstable steps, 256 steps of 32 are not.
SCALES: dict[str, Scale] = {
    "paper": Scale("paper", 64_000, note="the paper's schedule and all the data"),
    "smoke": Scale(
        "smoke",
        256,
        batch_size=32,
        lr=0.025,
        train_subset=2_500,
        val_subset=1_000,
        note="the images of 1/1000 of the paper's training, at most 2,500 training and 1,000 test images",
    ),
}


def run_config(
    model: str,
    seed: int,
    *,
    data: str,
    scale: Scale,
    device: str = "auto",
    data_dir: str = "data",
    download: bool = False,
) -> TrainConfig:
    """The `paper-cifar` recipe (sec. 4.2: SGD, lr 0.1 / 10 at 1/2 and 3/4 of training, wd 1e-4,
    momentum 0.9, batch 128, pad-4 crop + flip, per-pixel mean, the ResNet-110 warm-up; all 50k
    training images, the 10k test images) for `model` and `seed` at `scale` (its iterations,
    batch, learning rate and subsets; the warm-up's lr stays a tenth of the scale's).

    The bundled digits (16x16) are padded by 2 pixels (4 at 32 px) and not mirrored: a mirrored
    digit is another symbol.
    """
    overrides = dict(
        model=model,
        data=data,
        seed=seed,
        device=device,
        data_dir=data_dir,
        download=download or None,
        iterations=scale.iterations,
        milestones=scale.milestones,
        batch_size=scale.batch_size,
        lr=scale.lr,
        train_subset=scale.train_subset,
        val_subset=scale.val_subset,
    )
    if data == "digits":
        overrides.update(pad=2, flip=False)
    config = resolve_recipe("paper-cifar", **overrides)
    if config.warmup_until_error is not None and config.warmup_lr is not None:
        # the ResNet-110 warm-up at a tenth of the scale's learning rate, as 0.01 is of 0.1
        config = config.replace(warmup_lr=config.warmup_lr * scale.lr / 0.1).validate()
    return config


def same_experiment(a: TrainConfig, b: TrainConfig) -> list[str]:
    """The fields in which two configs train different things (RUNTIME_FIELDS aside)."""
    da, db = a.to_dict(), b.to_dict()
    return [k for k in da if k not in RUNTIME_FIELDS and da[k] != db.get(k)]


def run_name(model: str, seed: int) -> str:
    return f"{model}-seed{seed}"


def default_out(data: str, scale: str) -> Path:
    """reproduction/<data>-<scale>: one folder per data and scale, shared by the experiments."""
    tag = Path(data).name if ("/" in data or "\\" in data) else data
    return Path("reproduction") / f"{tag}-{scale}"


def network_label(model: str) -> str:
    """'resnet56' -> 'ResNet-56', 'plain20' -> 'plain-20' (the paper's names)."""
    for family, label in FAMILY_NAMES.items():
        if model.startswith(family) and model[len(family) :].isdigit():
            return f"{label}-{model[len(family) :]}"
    return model


def network_family(model: str) -> str:
    return "plain" if model.startswith("plain") else "resnet"


def network_depth(model: str) -> int:
    return int(model[len(network_family(model)) :])
