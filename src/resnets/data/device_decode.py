"""JPEG decoding on the training device (nvJPEG through `torchvision.io.decode_jpeg` on CUDA).

With `--decode-on-device`, DataLoader workers only read the files and check their headers; the
main process decodes each batch's JPEGs in one call on the device and runs the same torchvision
v2 transform there, so the CPU no longer bounds the input pipeline. Only what the device decoder
takes as is goes this way: an RGB JPEG within the pixel limit that needs no EXIF rotation.
Anything else (PNG, grayscale or CMYK JPEG, rotated photo, damaged header) is decoded in the
worker by PIL as before, so every image still comes out upright 8-bit RGB.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from PIL import Image

from resnets.data.images import MAX_PIXELS

EXIF_ORIENTATION = 0x0112


class EncodedJpeg(NamedTuple):
    """A JPEG file's bytes, read in a worker, decoded later on the device."""

    data: torch.Tensor  # uint8, the whole file
    path: str


def device_ready_jpeg(path: str) -> EncodedJpeg | None:
    """The file's bytes when the device decoder can take it as is, else None (decode with PIL)."""
    from torchvision.io import read_file

    try:
        with Image.open(path) as image:  # reads the header only
            if image.format != "JPEG" or image.mode != "RGB":
                return None
            if image.width * image.height > MAX_PIXELS:
                return None  # PIL's path reports it as a decompression bomb
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return None
    except Exception:  # noqa: BLE001 - whatever is wrong, PIL's path names it
        return None
    return EncodedJpeg(read_file(path), path)


def decode_batch(
    items: list[torch.Tensor | EncodedJpeg], transform, device: torch.device
) -> tuple[list[torch.Tensor | None], list[str]]:
    """`items` with every EncodedJpeg decoded on `device` and transformed there (None where a
    file does not decode), and the paths of those that did not."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [k for k, item in enumerate(items) if isinstance(item, EncodedJpeg)]
    if not encoded:
        return list(items), []
    try:
        images = decode_jpeg(
            [items[k].data for k in encoded], mode=ImageReadMode.RGB, device=device
        )  # one call for the batch
    except RuntimeError:  # a damaged file fails the whole call: find it one by one
        images = [_decode_one(items[k].data, device) for k in encoded]
    out: list[torch.Tensor | None] = list(items)
    failed = []
    for k, image in zip(encoded, images):
        if image is None:
            failed.append(items[k].path)
            out[k] = None
        else:
            out[k] = transform(image).as_subclass(torch.Tensor)
    return out, failed


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None
