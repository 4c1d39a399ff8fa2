"""Opening image files from anywhere as RGB, safely: the one place that reads pixels from disk.

Training folders and `predict` both get files of every kind (grayscale, palette, RGBA, CMYK,
16-bit, EXIF-rotated phone photos, truncated downloads, decompression bombs). Each is turned
into an upright 8-bit RGB image or refused with an ImageFileError naming the file.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from resnets.errors import DataError
from resnets.text import first_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")

# PIL's own guard warns at ~89 MP and refuses at twice that; we refuse at the warning level, so
# a bomb never gets decoded (a 90 MP RGB image is already 270 MB of pixels).
MAX_PIXELS = 89_478_485

_OPEN_LOCK = threading.Lock()


class ImageFileError(DataError):
    """A file that is not a readable image (or is too large to decode safely)."""


def is_image_file(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def open_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at `path` as upright 8-bit RGB, fully decoded, or an ImageFileError.

    Transparency is composited on white (what a viewer shows); 16-bit grayscale is scaled to 8
    bits rather than clipped; EXIF orientation is applied, as phones rely on it.
    """
    try:
        with _open(path) as image:
            if image.width * image.height > max_pixels:
                raise ImageFileError(
                    f"{path}: {image.width}x{image.height} pixels is over the {max_pixels:,}-pixel "
                    "limit (a decompression bomb?)"
                )
            image.load()
            return upright_rgb(image)
    except ImageFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own guard, for headers far over the limit: raised while opening, before any pixel.
        raise ImageFileError(
            f"{path}: over the {max_pixels:,}-pixel limit (a decompression bomb?): {first_line(exc)}"
        ) from None
    except UnidentifiedImageError as exc:
        raise ImageFileError(f"{path}: not a readable image ({first_line(exc)})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageFileError(f"{path}: unreadable or truncated image ({first_line(exc)})") from None


def _open(path: str | os.PathLike) -> Image.Image:
    """Image.open (which reads only the header) with PIL's decompression-bomb warning raised as
    an error. catch_warnings swaps process-wide state, so threads decoding in parallel (predict
    does) take turns here; the decoding itself runs outside the lock."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def upright_rgb(image: Image.Image) -> Image.Image:
    """A decoded PIL image turned as its EXIF orientation says, as 8-bit RGB."""
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


# Truncated files must fail loudly, never decode as half-grey pictures.
ImageFile.LOAD_TRUNCATED_IMAGES = False
