"""resnets.Classifier: the preprocessing the weights' metadata describes, the fast path, and
top-k results, checked against a hand-written PIL + eager-model reference and the true labels
of held-out digits."""

import numpy as np
import pytest
import torch
from PIL import Image

import resnets
from digits_model import trained_digits_model
from resnets import create_model
from resnets.errors import InputError
from resnets.infer import Classifier
from resnets.runtime.optimize import OptimizedModel
from resnets.weights import WeightsMeta, save_weights


@pytest.fixture(scope="module")
def digits():
    return trained_digits_model()


@pytest.fixture(scope="module")
def classifier(digits):
    model, meta, _ = digits
    return Classifier.from_model(model, meta, device="cpu", batch_size=64)


def reference_probabilities(model, image: Image.Image, meta: WeightsMeta, channels: int) -> torch.Tensor:
    """By hand: PIL grayscale/RGB, shorter side resized (torchvision's size rule), centre crop,
    scale to 0..1, normalise, the eager (unfused) model, softmax."""
    image = image.convert("L" if channels == 1 else "RGB")
    size = meta.input_size
    short_target = meta.resize_size or size
    w, h = image.size
    if w <= h:
        new_w, new_h = short_target, int(short_target * h / w)
    else:
        new_w, new_h = int(short_target * w / h), short_target
    image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    image = image.crop((left, top, left + size, top + size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = x[None] if channels == 1 else x.transpose(2, 0, 1)
    mean = np.asarray(meta.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(meta.std, dtype=np.float32)[:, None, None]
    x = torch.from_numpy((x - mean) / std)[None]
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1)[0]


def colourful_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    smooth = rng.random((height // 4 + 1, width // 4 + 1, 3))
    pixels = np.kron(smooth, np.ones((4, 4, 1)))[:height, :width]
    return Image.fromarray((pixels * 255).astype(np.uint8), "RGB")


def test_grayscale_network_output_equals_hand_written_preprocessing_and_eager_softmax(digits, classifier):
    model, meta, _ = digits
    image = colourful_image(37, 23)  # not square, colour: resize, crop and grayscale all matter
    expected = reference_probabilities(model, image, meta, channels=1)
    got = classifier.probabilities([image])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_rgb_network_with_resize_size_equals_hand_written_resize_crop_normalise():
    torch.manual_seed(1)
    model = create_model("basic:1-1-1:8-16-32", num_classes=7).eval()
    for m in model.modules():  # non-trivial BN statistics, so BN folding has something to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    meta = WeightsMeta(
        spec=model.spec.to_dict(),
        classes=[f"c{i}" for i in range(7)],
        mean=[0.4, 0.5, 0.6],
        std=[0.2, 0.25, 0.3],
        input_size=12,
        resize_size=14,
        extra={"color": "RGB"},
    )
    image = colourful_image(29, 41, seed=3)
    expected = reference_probabilities(model, image, meta, channels=3)
    got = Classifier.from_model(model, meta, device="cpu").probabilities(image)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_held_out_digits_are_classified_as_the_eager_model_does_and_mostly_right(digits, classifier):
    model, meta, data = digits
    from resnets.data.transforms import normalize

    with torch.no_grad():
        eager = model(normalize(data.val.images, data.mean, data.std)).argmax(1)
    predictions = classifier.predict(data.val.images, topk=1)  # an (N, 1, 8, 8) uint8 batch
    labels = [data.classes[i] for i in data.val.labels.tolist()]
    got = [p[0].label for p in predictions]
    assert got == [data.classes[i] for i in eager.tolist()]
    accuracy = np.mean([g == t for g, t in zip(got, labels)])
    assert accuracy > 0.9


def test_paths_pil_images_and_tensors_of_one_image_give_the_same_probabilities(digits, classifier, tmp_path):
    _, _, data = digits
    pixels = data.val.images[0, 0]
    image = Image.fromarray(pixels.numpy(), "L")
    image.save(tmp_path / "digit.png")
    rgb_tensor = pixels.expand(3, -1, -1)
    inputs = [
        tmp_path / "digit.png",
        str(tmp_path / "digit.png"),
        image,
        image.convert("RGB"),
        pixels[None],
        rgb_tensor,
        rgb_tensor.float() / 255,
    ]
    probs = classifier.probabilities(inputs)
    for row in probs[1:]:
        torch.testing.assert_close(row, probs[0], atol=1e-6, rtol=0)


def test_topk_is_sorted_labelled_and_clipped_to_the_number_of_classes(digits, classifier):
    _, _, data = digits
    image = data.val.images[3]
    full = classifier.probabilities(image)[0]
    (top3,) = classifier.predict(image, topk=3)
    assert [p.probability for p in top3] == sorted(full.tolist(), reverse=True)[:3]
    assert [p.label for p in top3] == [data.classes[i] for i in full.argsort(descending=True)[:3].tolist()]
    (everything,) = classifier.predict(image, topk=50)
    assert len(everything) == 10
    assert sum(p.probability for p in everything) == pytest.approx(1.0, abs=1e-5)


def test_classifier_loads_a_weights_file_and_a_run_directory_and_runs_the_fast_path(digits, tmp_path):
    model, meta, data = digits
    run = tmp_path / "run"
    run.mkdir()
    save_weights(model, run / "model.safetensors", meta)
    from_dir = resnets.Classifier(run, device="cpu")
    from_file = resnets.Classifier(run / "model.safetensors", device="cpu")
    assert isinstance(from_dir.model, OptimizedModel)
    assert from_dir.model.config.fold_bn and from_dir.model.config.channels_last
    assert from_dir.classes == data.classes
    batch = data.val.images[:16]
    torch.testing.assert_close(from_dir.probabilities(batch), from_file.probabilities(batch))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(2, 8, 8, 3, dtype=torch.uint8)[0], "1 or 3 channels"),
        (torch.randn(1, 8, 8) * 3, "normalised already"),
        (torch.zeros(1, 8, 8, dtype=torch.int32), "uint8 or float"),
        (42, "a path, a PIL image or an image tensor"),
    ],
    ids=["channels-last", "normalised-float", "int32", "not-an-image"],
)
def test_inputs_that_are_not_images_raise_input_error_saying_what_was_expected(classifier, bad, message):
    with pytest.raises(InputError, match=message):
        classifier.predict([bad])


def test_topk_below_one_is_refused(classifier, digits):
    with pytest.raises(InputError, match="topk"):
        classifier.predict(digits[2].val.images[0], topk=0)


def test_colour_tensors_and_colour_files_reach_a_grayscale_network_as_the_same_pixels(classifier):
    image = colourful_image(8, 8, seed=5)
    tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    torch.testing.assert_close(classifier.preprocess(tensor), classifier.preprocess(image), atol=0, rtol=0)
