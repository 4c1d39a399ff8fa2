"""Image folders of small images, decoded once into memory: then they train at in-memory speed.

A folder is read file by file every epoch (DataLoader workers: open, decode, transform, collate),
which for 32-px images costs more than a small ResNet's step. When the decoded images fit a memory
budget, `decode_in_memory` reads every file once, in parallel threads (PIL decodes without
holding the GIL), through the same fitting as evaluation (preprocess.eval_transform: as is at the
input size, else shorter side resized and the centre cropped), into uint8 tensors: the dataset
then takes the in-memory path (TensorLoader, batched augmentation on the training device), and
its recorded pipeline is that fit.

`--decode-in-memory auto` (the default) does so for folders whose images are no larger than the
input size (a sample of headers says) when the result fits `--memory-budget` (default: a quarter
of this machine's memory, and of the GPU's when training there) and the augmentation is one the
in-memory path has (pad-crop, none); `always` whenever it fits; `never` keeps reading files.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from resnets.data.datasets import ImageData, Split, channel_stats
from resnets.data.images import open_rgb
from resnets.data.transforms import TENSOR_AUGMENTS
from resnets.errors import DataError
from resnets.preprocess import Preprocess, eval_transform
from resnets.text import human_bytes, shorten

MODES = ("auto", "never", "always")
HEADER_SAMPLE = 32  # image headers read to decide whether a folder's images are small
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def parse_bytes(text: str) -> int:
    """'2GiB', '500MB', '1.5G', '800000000' -> bytes (k/M/G/T powers of 1000, KiB/MiB/GiB/TiB of 1024).

    Raises DataError for anything else."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise DataError(f"--memory-budget {text!r}: give a size such as 2GiB, 500MB or 800000000 (bytes)")
    return int(float(match.group(1)) * _UNITS[unit])


def default_budget(device: torch.device | str = "cpu") -> int:
    """A quarter of this machine's memory, and of the GPU's free memory when training on one."""
    try:
        budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        budget = 2**31
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = min(budget, free // 4)
    return int(budget)


def decoded_bytes(data: ImageData) -> int:
    """Bytes the decoded uint8 images of both splits take: N x 3 x S x S."""
    size = data.input_size
    return (len(data.train) + len(data.val)) * 3 * size * size


def images_are_small(files: list[str], size: int, sample: int = HEADER_SAMPLE) -> bool:
    """Whether a fixed sample of the files have no side longer than `size` (headers only)."""
    pick = np.random.default_rng(0).permutation(len(files))[:sample]
    for i in sorted(pick.tolist()):
        try:
            with Image.open(files[i]) as image:
                if max(image.size) > size:
                    return False
        except OSError:
            continue  # an unreadable file is reported when it is decoded
    return True


def should_decode(data: ImageData, mode: str, augment: str, budget: int) -> tuple[bool, str]:
    """(decode?, why a folder of small images is not decoded) for `--decode-in-memory mode` with
    `augment` ("auto" or an augmentation) and a budget in bytes. Raises DataError when `always`
    cannot be had."""
    if mode not in MODES:
        raise DataError(f"--decode-in-memory must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "never" or data.train.in_memory:
        return False, ""
    need = decoded_bytes(data)
    problems = []
    if augment not in (*TENSOR_AUGMENTS, "auto"):
        problems.append(f"--augment {augment} needs image files (in memory: {', '.join(TENSOR_AUGMENTS)})")
    if need > budget:
        problems.append(
            f"the decoded images would take {human_bytes(need)}, over the --memory-budget of {human_bytes(budget)}"
        )
    if mode == "always":
        if problems:
            raise DataError(f"--decode-in-memory always: {'; '.join(problems)}")
        return True, ""
    assert data.train.files is not None
    if not images_are_small(data.train.files, data.input_size):
        return False, ""  # a folder of photos: read as files, nothing to say
    return not problems, "; ".join(problems)


def decode_in_memory(
    data: ImageData, *, workers: int | None = None, progress: bool = False, budget: int | None = None
) -> ImageData:
    """`data` (image files) with both splits decoded into uint8 tensors (N, 3, S, S) at its input
    size S, fitted as evaluation fits (eval_transform of a plain fit); unreadable files are left
    out and named in `messages`. Mean/std are measured on the decoded training images; the record
    (`preprocess()`) becomes that fit. `progress` shows a bar on a terminal (stderr)."""
    size = data.input_size
    fit = eval_transform(Preprocess((size, size)), normalize=False)
    files = [*(data.train.files or []), *(data.val.files or [])]
    images = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    bad: list[str] = []

    def decode(i: int) -> None:
        try:
            images[i] = fit(open_rgb(files[i]))
        except DataError:
            bad.append(files[i])

    threads = workers or min(8, os.cpu_count() or 1)
    from tqdm import tqdm

    with (
        ThreadPoolExecutor(max(1, threads)) as pool,
        tqdm(
            total=len(files), unit="img", desc="decoding", disable=None if progress else True, leave=False
        ) as bar,
    ):
        for _ in pool.map(decode, range(len(files))):
            bar.update()
    n_train = len(data.train)
    bad_set = set(bad)
    keep = torch.as_tensor([f not in bad_set for f in files], dtype=torch.bool)
    train = _part(data.train, images[:n_train], keep[:n_train])
    val = _part(data.val, images[n_train:], keep[n_train:])
    if len(train) == 0 or len(val) == 0:
        raise DataError(
            f"{data.notes.get('source', data.name)}: no readable images left in one of the splits"
        )
    mean, std = channel_stats(train.images)  # type: ignore[arg-type]
    took = human_bytes(images.numel())
    messages = [
        *data.messages,
        f"decoded {len(files) - len(bad):,} images of {data.notes.get('source', data.name)} into memory "
        f"({took}, --memory-budget {human_bytes(budget) if budget else 'not checked'}): augmented on the "
        "device like in-memory data (--decode-in-memory never reads the files every epoch instead)",
    ]
    if bad:
        messages.append(f"left out {len(bad)} unreadable image(s): {shorten(sorted(bad), 5)}")
    return replace(data, train=train, val=val, mean=mean, std=std, resize_size=None, messages=messages)


def _part(split: Split, images: torch.Tensor, keep: torch.Tensor) -> Split:
    files = [f for f, k in zip(split.files or [], keep.tolist()) if k]
    return Split(labels=split.labels[keep], images=images[keep].contiguous(), files=files)
