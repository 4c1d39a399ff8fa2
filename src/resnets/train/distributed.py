"""Data parallelism on PyTorch's own engine: torchrun starts the processes, DDP syncs gradients.

torchrun (`python -m torch.distributed.run`) starts one process per device and tells each who it
is in RANK, WORLD_SIZE and LOCAL_RANK (with MASTER_ADDR/MASTER_PORT for the rendezvous). Its
elastic agent restarts the whole group when a worker dies, up to `--max-restarts` times,
counting attempts in TORCHELASTIC_RESTART_COUNT; a restarted worker resumes from the run
directory's last checkpoint (launch.py decides that from `restart_count()`).

What lives here: what torchrun told this process, joining and leaving the process group (NCCL on
CUDA, gloo on CPU), the run directory every rank agrees on, the DDP wrap (with optional
SyncBatchNorm), `no_sync` for gradient accumulation and per-rank seeds. Starting torchrun is in
launch.py; which rank this is and how metrics are summed stays in ranks.py.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from resnets.data.seeds import mix_seed
from resnets.errors import ResNetsError
from resnets.runtime.device import resolve_device
from resnets.train import ranks
from resnets.train.freeze import FrozenBatchNorm2d
from resnets.train.run_dir import default_run_dir


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 outside torchrun), group joined or not."""
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def max_restarts() -> int:
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))


def run_id() -> str | None:
    """torchrun's rendezvous id (`--rdzv-id`, or a fresh one with `--standalone`); None if unset."""
    value = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return None if value in ("", "none") else value


def local_device(name: str) -> torch.device:
    """The device of this process: cuda:LOCAL_RANK under torchrun on CUDA, else as resolved."""
    device = resolve_device(name)
    if device.type == "cuda" and launched_by_torchrun():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


@contextmanager
def process_group(device_name: str) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration (NCCL on CUDA, gloo on CPU) and leave it after.

    A no-op outside torchrun or with one process, and when the group is already joined (the CLI
    joins before `train` to agree on the run directory; `train` then reuses that group).
    """
    device = local_device(device_name)
    start = env_world_size() > 1 and dist.is_available() and not dist.is_initialized()
    if start:
        # torchrun's store outlives a restart of the group; keys under a per-attempt prefix keep
        # the new workers from reading the dead ones' addresses (gloo: "connection refused").
        store, rank, world = next(dist.rendezvous("env://"))
        store = dist.PrefixStore(f"resnets/attempt-{restart_count()}", store)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", store=store, rank=rank, world_size=world
        )
    try:
        yield device
    finally:
        if start and dist.is_initialized():
            dist.destroy_process_group()


def broadcast_text(text: str, device: torch.device) -> str:
    """Rank 0's `text` on every rank (a run directory name), as bytes in a tensor: no pickle."""
    if ranks.world_size() == 1:
        return text
    data = torch.zeros(4096, dtype=torch.uint8, device=device)
    if ranks.is_main():
        raw = text.encode()[:4096]
        data[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    return bytes(data.cpu().tolist()).rstrip(b"\0").decode()


def shared_run_dir(config, device: torch.device) -> Path:
    """The run directory every rank writes to (rank 0) and resumes from after a restart.

    `--out` when given; else runs/<model>-<data>-<rendezvous id>, stable across restarts; else
    (torchrun's default id "none") rank 0's time-stamped name, which a restarted group could not
    find again, so restarts then need `--out`.
    """

    if config.out:
        return Path(config.out)
    if run_id() is not None:
        return default_run_dir(config, run_id=run_id())
    if max_restarts() > 0:
        raise ResNetsError(
            "torchrun --max-restarts needs --out RUN_DIR (or --rdzv-id) so that restarted workers find the checkpoint"
        )
    return Path(broadcast_text(str(default_run_dir(config)), device))


def barrier() -> None:
    if ranks.world_size() > 1:
        dist.barrier()


def wrap(model: nn.Module, device: torch.device, *, channels_last: bool, sync_bn: bool) -> nn.Module:
    """Move `model` to `device` and, with several processes, wrap it in DistributedDataParallel.

    `sync_bn` turns every BatchNorm that trains into SyncBatchNorm, so batch statistics are
    computed over the global batch rather than each rank's share (useful when per-rank batches
    are small); frozen ones (freeze.py) keep their fixed statistics. The
    returned module is the one to call in the training step; `model` keeps the parameters and
    the state_dict names.
    """
    if sync_bn and ranks.world_size() > 1:
        if device.type != "cuda":
            raise ResNetsError("--sync-bn needs CUDA: torch's SyncBatchNorm has no CPU implementation")
        model = sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if ranks.world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if any(p.dim() == 4 and p.shape[1] == 1 for p in model.parameters()):
        # A one-channel stem (grayscale) has a size-1 dimension whose stride is arbitrary: the
        # reducer's layout check fires although both layouts hold the same numbers.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """torch's convert_sync_batchnorm, leaving frozen BatchNorms (eval mode for good) as they are."""
    if isinstance(module, FrozenBatchNorm2d):
        return module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        module.add_module(name, sync_batchnorm(child))
    return module


def broadcast_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BN running statistics) before evaluating.

    DDP copies rank 0's buffers to the others at the start of each forward, and each rank then
    updates its own copy from its share of the batch: after the last step they differ, and
    the ranks would evaluate their shards of the validation set with different models.
    """
    if ranks.world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def no_sync(module: nn.Module | None, skip: bool) -> AbstractContextManager:
    """Accumulate gradients locally (no all-reduce) when `skip`: all but the last micro-step."""
    if skip and hasattr(module, "no_sync"):
        return module.no_sync()
    return nullcontext()


def seed_rank(seed: int, step: int) -> None:
    """Give each rank its own global RNG stream (MixUp, CutMix, drop path) from (seed, rank, step).

    Initial weights are the same everywhere anyway: DDP broadcasts rank 0's at the wrap.
    """
    torch.manual_seed(mix_seed(seed, ranks.rank(), step))
