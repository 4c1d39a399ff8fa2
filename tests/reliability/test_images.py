"""Images from outside (docs/reliability.md, promise 10). Every odd but valid file (RGBA,
grayscale, palette with transparency, CMYK JPEG, EXIF-rotated photo, 16-bit PNG, 1x1, extreme
aspect ratio) is classified as its plain RGB original is; every broken one (truncated JPEG, text named .jpg,
decompression bomb) is reported by name and skipped, the exit code saying so; memory stays
bounded."""

import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnets import create_model
from resnets.data.images import MAX_PIXELS
from resnets.infer import Classifier
from resnets.weights import WeightsMeta

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from digits_model import save_digits_weights, trained_digits_model  # noqa: E402

EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def classifier():
    model, meta, _ = trained_digits_model()
    return Classifier.from_model(model, meta, device="cpu")


@pytest.fixture(scope="module")
def original(classifier):
    """A held-out digit the network gets right with confidence, as an 8-bit RGB image, and its
    label. It contains pure white pixels (full ink), which the transparent variants hide."""
    _, _, data = trained_digits_model()
    for pixels, label in zip(data.val.images[:, 0], data.val.labels.tolist()):
        image = Image.fromarray(pixels.numpy(), "L").convert("RGB")
        (top,) = classifier.predict(image, topk=1)
        if top[0].label == data.classes[label] and top[0].probability > 0.9 and (pixels == 255).any():
            return image, data.classes[label]
    pytest.fail("the test network classifies no held-out digit confidently")


def rgba_white_ink_transparent(image: Image.Image) -> Image.Image:
    """Full-ink pixels become transparent black: only compositing on white restores them."""
    rgba = np.asarray(image.convert("RGBA")).copy()
    white = (rgba[..., :3] == 255).all(-1)
    rgba[white] = (0, 0, 0, 0)
    return Image.fromarray(rgba, "RGBA")


def palette_white_transparent(image: Image.Image) -> Image.Image:
    """A gray palette whose last entry is black and transparent, used for the full-ink pixels."""
    gray = np.asarray(image.convert("L"))
    indices = gray.copy()
    palette = [v for i in range(255) for v in (i, i, i)] + [0, 0, 0]
    out = Image.fromarray(indices, "L").convert("P")
    out.putpalette(palette)
    out.info["transparency"] = 255
    return out


def rotated_with_exif(image: Image.Image) -> tuple[Image.Image, Image.Exif]:
    """Pixels stored turned a quarter, with EXIF orientation 6 ("rotate 90 CW to view"), as
    phones write them: the upright view is the original."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return image.transpose(Image.Transpose.ROTATE_90), exif


def write_variant(kind: str, image: Image.Image, folder: Path) -> Path:
    if kind == "rgba":
        path = folder / "rgba.png"
        rgba_white_ink_transparent(image).save(path)
    elif kind == "grayscale":
        path = folder / "gray.png"
        image.convert("L").save(path)
    elif kind == "palette-transparent":
        path = folder / "palette.png"
        palette_white_transparent(image).save(path, transparency=255)
    elif kind == "16-bit":
        path = folder / "gray16.png"
        Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257).save(path)
    elif kind == "exif-png":
        path = folder / "exif.png"
        turned, exif = rotated_with_exif(image)
        turned.save(path, exif=exif)
    elif kind == "exif-jpeg":
        path = folder / "exif.jpg"
        turned, exif = rotated_with_exif(image)
        turned.save(path, quality=95, exif=exif)
    elif kind == "cmyk-jpeg":
        path = folder / "cmyk.jpg"
        image.convert("CMYK").save(path, quality=95)
    elif kind == "webp-lossless":
        path = folder / "image.webp"
        image.save(path, lossless=True)
    elif kind in ("bmp", "tiff"):
        path = folder / f"image.{kind}"
        image.save(path)
    else:
        raise AssertionError(kind)
    return path


LOSSLESS = ["rgba", "grayscale", "palette-transparent", "16-bit", "exif-png", "webp-lossless", "bmp", "tiff"]
LOSSY = ["cmyk-jpeg", "exif-jpeg"]


@pytest.mark.parametrize("kind", LOSSLESS)
def test_lossless_variants_give_the_probabilities_of_the_rgb_original(classifier, original, tmp_path, kind):
    image, _ = original
    path = write_variant(kind, image, tmp_path)
    with Image.open(path) as stored:
        assert stored.mode != "RGB" or kind in ("exif-png", "bmp", "tiff", "webp-lossless")
        if kind == "exif-png":  # the stored pixels really are turned: ignoring EXIF would show
            assert not np.array_equal(np.asarray(stored.convert("RGB")), np.asarray(image))
    expected, got = classifier.probabilities([image, path])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", LOSSY)
def test_lossy_variants_give_the_top_1_of_the_rgb_original(classifier, original, tmp_path, kind):
    image, label = original
    path = write_variant(kind, image, tmp_path)
    with Image.open(path) as stored:
        assert stored.mode == ("CMYK" if kind == "cmyk-jpeg" else "RGB")
    (top,) = classifier.predict(path, topk=1)
    assert top[0].label == label


def truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    return data[: len(data) // 2]


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk for a width x height RGB image, and nothing else: 45 bytes
    on disk that would decode to width * height * 3 bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return save_digits_weights(tmp_path_factory.mktemp("weights"))


def test_broken_files_are_reported_and_skipped_while_odd_valid_ones_are_classified(
    weights_file, original, tmp_path, run_cli
):
    image, label = original
    folder = tmp_path / "inbox"
    folder.mkdir()
    broken = {
        "truncated.jpg": (truncated_jpeg(), "truncated"),
        "text.jpg": (b"Hello, I am a text file with an image extension.\n", "not a readable image"),
        "bomb.png": (png_header_claiming(100_000, 100_000), "pixel limit"),
        "bomb-just-over.png": (png_header_claiming(10_000, 10_000), "pixel limit"),
        "empty.png": (b"", "not a readable image"),
    }
    for name, (data, _) in broken.items():
        (folder / name).write_bytes(data)
    assert (folder / "bomb.png").stat().st_size < 100 and 10_000**2 > MAX_PIXELS
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "one-pixel.png")
    Image.fromarray(np.full((1, 4000), 255, np.uint8)).save(folder / "wide.png")
    Image.fromarray(np.full((4000, 1, 3), 90, np.uint8)).save(folder / "tall.png")
    image.save(folder / "digit.png")

    code, out, err = run_cli("predict", weights_file, folder, "--json", "--topk", "10")
    records = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}

    assert code == 1
    assert set(records) == set(broken) | {"one-pixel.png", "wide.png", "tall.png", "digit.png"}
    for name, (_, reason) in broken.items():
        assert "topk" not in records[name] and reason in records[name]["error"], records[name]
        lines = [line for line in err.splitlines() if str(folder / name) in line]
        assert len(lines) == 1 and reason in lines[0]
    assert "Traceback" not in err
    for name in ("one-pixel.png", "wide.png", "tall.png", "digit.png"):
        probabilities = [t["probability"] for t in records[name]["topk"]]
        assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert records["digit.png"]["topk"][0]["class"] == label


def test_all_good_files_exit_0(weights_file, original, tmp_path, run_cli):
    image, _ = original
    image.save(tmp_path / "digit.png")
    image.convert("CMYK").save(tmp_path / "digit.jpg")
    code, _, err = run_cli("predict", weights_file, tmp_path)
    assert code == 0 and err == ""


def test_an_extreme_strip_is_cut_before_resizing_so_memory_stays_bounded(tmp_path, monkeypatch):
    """A 1x40000 strip for a network resizing to 256 would be a 256 x 10,240,000 image (2.6
    gigapixels) if resized whole; only the centre 256 x 224 is ever used. A spy on PIL's resize
    refuses (before allocating) any resize to more than 16 times the crop's area."""
    model = create_model("basic:1-1-1:4-8-16", num_classes=3).eval()
    meta = WeightsMeta(
        spec=model.spec.to_dict(),
        classes=["a", "b", "c"],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        input_size=224,
        resize_size=256,
    )
    strip = tmp_path / "strip.png"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), 40000 // 256 + 1)[None, :40000]).save(strip)
    limit = 16 * 256 * 256
    resize = Image.Image.resize
    sizes = []

    def spy(self, size, *args, **kwargs):
        sizes.append(size)
        assert size[0] * size[1] <= limit, f"resize to {size} allocates {size[0] * size[1]:,} pixels"
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    (top,) = Classifier.from_model(model, meta, device="cpu").predict(strip, topk=3)
    assert sizes and sum(p.probability for p in top) == pytest.approx(1.0, abs=1e-5)
