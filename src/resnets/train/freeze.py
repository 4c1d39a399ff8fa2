"""Fine-tuning: which parts of the network train, and how fast.

    --freeze stem,layer1      those parts keep their weights: no gradients for their parameters,
                              and their BatchNorm layers stay in eval mode (running statistics
                              fixed), as timm's `freeze` and torchvision's detection backbones
                              (FrozenBatchNorm2d) do
    --freeze all-but-head     a linear probe: only the classifier (fc) trains
    --freeze-bn               every BatchNorm in eval mode, its affine parameters frozen
    --lr-backbone M           every parameter but the classifier's at M x the learning rate
                              (step.build_optimizer's param groups)

The parts are the network's own: `stem` (conv1, bn1: everything before layer1), `layer1` ...
`layerN` (the paper's conv2_x ... ; a pre-activation network's final BN goes with the last
stage) and `head` (fc). A frozen BatchNorm stays an nn.BatchNorm2d with the same state_dict
(`FrozenBatchNorm2d` only refuses to leave eval mode), so checkpoints, EMA and exports see
the network they always did.
"""

from __future__ import annotations

from torch import nn

from resnets.errors import ResNetsError
from resnets.text import shorten

ALL_BUT_HEAD = "all-but-head"


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode whatever `train()` asks: it normalises with its
    running statistics and never updates them (its parameters are frozen by `apply_freeze`)."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


def network_parts(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The parts `--freeze` names, in order: stem, layer1..layerN, head; each a list of the
    network's top-level modules (those without parameters are left out)."""
    parts: dict[str, list[nn.Module]] = {"stem": []}
    current = "stem"
    for name, child in model.named_children():
        if name.startswith("layer") and name[5:].isdigit():
            current = name
        elif name == "fc":
            current = "head"
        parts.setdefault(current, [])
        if any(True for _ in child.parameters()):
            parts[current].append(child)
    return parts


def frozen_part_names(model: nn.Module, freeze: str | None) -> list[str]:
    """The parts `freeze` names ("stem,layer1", "all-but-head"), checked against the network's:
    a ResNetsError names the unknown ones and the choices."""
    if not freeze:
        return []
    parts = network_parts(model)
    names = [n.strip() for n in freeze.split(",") if n.strip()]
    if names == [ALL_BUT_HEAD]:
        return [n for n in parts if n != "head"]
    unknown = [n for n in names if n not in parts]
    if unknown:
        raise ResNetsError(
            f"--freeze: no part {shorten(unknown)} in this network; its parts are "
            f"{', '.join(parts)} (or {ALL_BUT_HEAD} for a linear probe)"
        )
    return names


def apply_freeze(model: nn.Module, freeze: str | None, *, freeze_bn: bool = False) -> list[str]:
    """Freeze the parts `freeze` names (their parameters get no gradient, their BatchNorms stay in
    eval mode) and, with `freeze_bn`, every BatchNorm of the network. Returns the frozen parts."""
    names = frozen_part_names(model, freeze)
    parts = network_parts(model)
    for name in names:
        for module in parts[name]:
            module.requires_grad_(False)
            freeze_batchnorms(module)
    if freeze_bn:
        freeze_batchnorms(model)
    return names


def freeze_batchnorms(module: nn.Module) -> None:
    """Every nn.BatchNorm2d in `module` becomes a FrozenBatchNorm2d (same state), with frozen
    affine parameters, in eval mode."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = FrozenBatchNorm2d
            m.requires_grad_(False)
            m.eval()


def head_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the classifier's parameters: what `--lr-backbone` leaves at the full rate."""
    head = network_parts(model).get("head", [])
    return {id(p) for module in head for p in module.parameters()}


def describe_freeze(
    model: nn.Module, names: list[str], freeze_bn: bool, lr_backbone: float | None
) -> str | None:
    """One line for the run's start: what is frozen and how much trains; None when nothing is."""
    if not names and not freeze_bn and lr_backbone is None:
        return None
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    what = []
    if names:
        probe = " (a linear probe)" if names == [n for n in network_parts(model) if n != "head"] else ""
        what.append(f"frozen: {', '.join(names)}{probe}, with their BatchNorm statistics")
    if freeze_bn:
        what.append("every BatchNorm in eval mode with frozen affine parameters")
    if lr_backbone is not None:
        head = head_parameter_ids(model)
        if any(p.requires_grad and id(p) not in head for p in model.parameters()):
            what.append(f"all but the classifier at {lr_backbone:g} x the learning rate")
        else:
            what.append(f"--lr-backbone {lr_backbone:g} has nothing to scale (only the classifier trains)")
    return f"fine-tuning: {'; '.join(what)}; {trained:,} of {total:,} parameters train"
