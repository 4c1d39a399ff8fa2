"""The CPU table of docs/benchmarks.md, "Memory and activation checkpointing": how much memory a
training forward leaves allocated for backward, with and without activation checkpointing.

    PYTHONPATH=src python bench/activation_memory.py

torch.profiler's memory accounting on the CPU: the net bytes the forward allocated and did not
free, which is what autograd keeps for backward (activations grow with the batch; weights do not).
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from resnets import create_model

CASES = [("resnet20", 16, 32), ("resnet56", 16, 32), ("resnet50", 4, 224)]


def kept_for_backward(model: torch.nn.Module, x: torch.Tensor) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = model(x)  # alive until the profile ends: its graph holds what backward needs
    del out
    return sum(e.self_cpu_memory_usage for e in prof.events())


def main() -> None:
    print(f"torch {torch.__version__}, CPU")
    print("| model, batch | kept for backward, plain | with checkpointing | ratio |")
    print("|---|---|---|---|")
    for name, batch, size in CASES:
        torch.manual_seed(0)
        model = create_model(name).train()
        x = torch.randn(batch, 3, size, size)
        plain = kept_for_backward(model, x)
        model.set_grad_checkpointing(True)
        ckpt = kept_for_backward(model, x)
        mib = 2**20
        print(
            f"| {name}, {batch} x {size} px | {plain / mib:.1f} MiB | {ckpt / mib:.1f} MiB | {ckpt / plain:.2f} |"
        )


if __name__ == "__main__":
    main()
