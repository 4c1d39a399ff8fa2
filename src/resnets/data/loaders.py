"""Batches for training and evaluation, reproducible from (seed, epoch).

`TensorLoader` keeps an in-memory dataset as uint8 tensors on the training device (CPU or
GPU) and builds each batch by indexing with a permutation and augmenting the batch as a whole:
no worker processes to start, no host round trip on a GPU. `FolderLoader` decodes files in
DataLoader workers. Both shard an epoch's order by (rank, world_size), so a data-parallel run
only has to pass its rank.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch

from resnets.data.augment import crop_flip, sample_crop_flip
from resnets.data.datasets import ImageData, Split
from resnets.data.device_decode import decode_batch
from resnets.data.folder import FolderDataset, collate_skipping
from resnets.data.seeds import mix_seed
from resnets.data.transforms import (
    check_tensor_augment,
    folder_scale_transform,
    folder_train_transform,
    normalize,
)
from resnets.errors import DataError
from resnets.preprocess import Preprocess, eval_transform, normalize_batch

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator fixed by (seed, epoch): the same data order and augmentation for an epoch
    whether it runs first, after a resume, or on another device."""
    return torch.Generator().manual_seed(mix_seed(seed, epoch))


def shard(order: torch.Tensor, rank: int, world_size: int, *, even: bool = True) -> torch.Tensor:
    """This rank's share of an epoch's order.

    Training (`even`): every rank gets the same number of items (the last len % world_size are
    left out), so all ranks take the same number of steps. Evaluation (`even=False`): item i goes
    to rank i % world_size and nothing is dropped or padded, so summing the ranks' counts
    covers every validation image exactly once (a DistributedSampler would pad with repeats).
    """
    if world_size == 1:
        return order
    if even:
        order = order[: len(order) - len(order) % world_size]
    return order[rank::world_size]


def worker_generator(seed: int, epoch: int, rank: int, skip: int) -> torch.Generator:
    """Seeds a rank's DataLoader workers (their augmentation) for an epoch started at batch `skip`."""
    return torch.Generator().manual_seed(mix_seed(seed, epoch, rank, skip))


class TensorLoader:
    """Batches of an in-memory split, normalised and (for training) augmented on `device`."""

    def __init__(
        self,
        split: Split,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        augment: str = "none",
        pad: int = 0,
        flip: bool = False,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        preprocess: Preprocess | None = None,
    ) -> None:
        """`preprocess`, when given, normalises instead of `mean`/`std` (eval_transform's
        normalisation, per channel or per pixel)."""
        if train:
            check_tensor_augment(augment)
        assert split.images is not None
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.mean, self.std = tuple(mean), tuple(std)
        self.preprocess = preprocess
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.pad = pad if train and augment == "pad-crop" else 0
        self.flip = flip and train
        self.rank, self.world_size = rank, world_size
        self.skipped: list[str] = []

    @property
    def num_items(self) -> int:
        return len(shard(torch.arange(len(self.labels)), self.rank, self.world_size, even=self.train))

    def __len__(self) -> int:
        n = self.num_items
        if self.train:  # full batches only: steady BN statistics and fixed shapes for compile
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """The epoch's batches for this rank, from batch `skip` on (a resume in mid-epoch).

        Crop offsets and flips are drawn per position of the epoch's permutation, before
        sharding: every image gets its own augmentation, fixed by (seed, epoch), whichever rank
        and world size it lands on and wherever the epoch is resumed.
        """
        gen = epoch_generator(self.seed, epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        # Offsets for the whole epoch from the CPU generator: a batch is the same on any device,
        # after a mid-epoch resume, and whatever the rank.
        top, left, flips = sample_crop_flip(n, self.pad, flip_p=0.5 if self.flip else 0.0, generator=gen)
        positions = shard(torch.arange(n), self.rank, self.world_size, even=self.train)
        size = min(self.batch_size, len(positions))
        for b in range(skip, len(self)):
            at = positions[b * size : (b + 1) * size]
            index = order[at].to(self.images.device, non_blocking=True)
            images = self.images[index]
            if self.preprocess is not None:
                x = normalize_batch(self.preprocess, images)
            else:
                x = normalize(images, self.mean, self.std)
            if self.pad or self.flip:
                x = crop_flip(x, top[at], left[at], flips[at], self.pad)
            yield x, self.labels[index]


class FolderLoader:
    """Batches of an image-file split, decoded and augmented in `workers` DataLoader processes.

    Unreadable files are skipped; their paths collect in `skipped` during each epoch.
    """

    def __init__(
        self,
        split: Split,
        transform,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        workers: int | None = None,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        decode_on_device: bool = False,
    ) -> None:

        assert split.files is not None
        self.dataset = FolderDataset(split.files, split.labels, transform, encoded=decode_on_device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.workers = default_workers() if workers is None else workers
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.skipped: list[str] = []

    def __len__(self) -> int:
        n = len(shard(torch.arange(len(self.dataset)), self.rank, self.world_size, even=self.train))
        if self.train:
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """The epoch's batches for this rank, from batch `skip` on (a resume in mid-epoch)."""

        gen = epoch_generator(self.seed, epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        order = shard(order, self.rank, self.world_size, even=self.train).tolist()
        size = min(self.batch_size, len(order))
        if (self.rank, skip) != (0, 0):  # other ranks and resumed epochs: their own worker seeds
            gen = worker_generator(self.seed, epoch, self.rank, skip)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=size,
            sampler=order[skip * size :],
            num_workers=self.workers,
            collate_fn=collate_skipping,
            pin_memory=self.device.type == "cuda",
            drop_last=self.train and len(order) >= self.batch_size,
            generator=gen,  # seeds the workers' augmentation: same images for the same (seed, epoch)
        )
        self.skipped = []
        for x, y, skipped in loader:
            self.skipped.extend(skipped)
            if isinstance(x, list):  # JPEGs left undecoded for the device
                x, y = self._decode_on_device(x, y)
            if len(y) == 0:
                continue
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _decode_on_device(self, items: list, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:

        images, failed = decode_batch(items, self.dataset.transform, self.device)
        self.skipped.extend(failed)
        keep = [k for k, image in enumerate(images) if image is not None]
        if not keep:
            return torch.empty(0), torch.empty(0, dtype=torch.int64)
        batch = torch.stack([images[k].to(self.device, non_blocking=True) for k in keep])
        return batch, labels[keep]


def default_workers() -> int:
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def make_loader(
    data: ImageData,
    which: str,
    *,
    batch_size: int,
    seed: int = 0,
    augment: str = "none",
    pad: int = 0,
    flip: bool = False,
    device: torch.device | str = "cpu",
    workers: int | None = None,
    crops: int = 1,
    rank: int = 0,
    world_size: int = 1,
    decode_on_device: bool = False,
    preprocess: Preprocess | None = None,
    lighting: float = 0.0,
    scale: int | None = None,
) -> TensorLoader | FolderLoader:
    """The loader for `data.train` (which='train', augmented, shuffled) or `data.val`.

    Validation batches go through the evaluation pipeline `preprocess` (default: the data's own,
    `data.preprocess()`; `resnets eval` passes the weights' record): `eval_transform` for files,
    its normalisation for in-memory images, which are at the input size already.

    `lighting` (AlexNet's PCA colour noise, training only) and `scale` (evaluation of whole
    images with the shorter side resized to `scale`, one image a batch: a scale of multi-scale
    testing, sec. 3.4) need image files: a DataError for in-memory data. At a `scale`, a
    per-pixel mean image (made for input_size) gives way to its channel means (the record's mean).
    """
    train = which == "train"
    split = data.train if train else data.val
    record = preprocess if preprocess is not None else data.preprocess()
    if (train and lighting or scale is not None) and split.in_memory:
        what = "--lighting (AlexNet's PCA colour noise)" if lighting else "multi-scale testing"
        raise DataError(f"{what} needs an image folder, not in-memory data")
    if scale is not None and not train:
        mean, std = record.mean, record.std
        if mean is None and record.mean_image is not None:  # per-pixel: its channel means instead
            mean, std = tuple(record.mean_image.mean((1, 2)).tolist()), (1.0,) * len(record.mean_image)
        return FolderLoader(
            split,
            folder_scale_transform(scale, mean=mean, std=std),
            batch_size=1,
            train=False,
            workers=workers,
            device=device,
            rank=rank,
            world_size=world_size,
        )
    if split.in_memory:
        return TensorLoader(
            split,
            data.mean,
            data.std,
            batch_size=batch_size,
            train=train,
            seed=seed,
            augment=augment,
            pad=pad,
            flip=flip,
            device=device,
            rank=rank,
            world_size=world_size,
            preprocess=record,  # the data's own normalisation when training
        )
    if train:
        transform = folder_train_transform(
            augment,
            data.input_size,
            pad=pad,
            flip=flip,
            mean=data.mean,
            std=data.std,
            resize_size=data.resize_size,
            mean_image=data.mean_image,
            lighting=lighting,
        )
    else:
        transform = eval_transform(record, data.in_channels, crops=crops)
    return FolderLoader(
        split,
        transform,
        batch_size=batch_size,
        train=train,
        seed=seed,
        workers=workers,
        device=device,
        rank=rank,
        world_size=world_size,
        decode_on_device=decode_on_device,
    )
