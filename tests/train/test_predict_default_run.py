"""`resnets predict` on the default run's held-out digits, as PNG files, reproduces the accuracy
the run measured on the same images as tensors: file decoding, preprocessing from the metadata
and the fast path (BN folded) together change nothing."""

import numpy as np
from PIL import Image

from resnets import Classifier
from resnets.data.digits import load_digits_data


def test_predict_on_the_default_runs_held_out_pngs_matches_its_validation_accuracy(default_run, tmp_path):
    data = load_digits_data()  # the run's own split: fixed seed, default size
    paths, truth = [], []
    for i, (pixels, label) in enumerate(zip(data.val.images[:, 0], data.val.labels.tolist())):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(pixels.numpy(), "L").save(paths[-1])
        truth.append(data.classes[label])
    results = list(Classifier(default_run.dir, device="cpu").classify_files(paths, topk=1))
    assert all(r.error is None for r in results)
    accuracy = np.mean([r.predictions[0].label == t for r, t in zip(results, truth)])
    # Within one image: BN folding may flip a near-tie.
    assert abs(accuracy - default_run.summary["val_top1"]) <= 1 / len(paths) + 1e-9


def test_eval_and_predict_at_bf16_run_in_bf16_and_keep_the_accuracy(default_run, tmp_path, run_cli):
    import json

    args = ["eval", default_run.dir, "--json", "--out", tmp_path, "--device", "cpu"]
    result = run_cli(*args, "--precision", "bf16")
    assert result.code == 0
    bf16 = json.loads(result.out)
    # bf16 keeps 8 bits of mantissa: the loss moves, the accuracy stays within a few near-ties.
    assert bf16["loss"] != default_run.summary["val_loss"]
    assert abs(bf16["loss"] - default_run.summary["val_loss"]) < 0.02
    assert abs(bf16["top1"] - default_run.summary["val_top1"]) <= 3 / 360 + 1e-9

    image = tmp_path / "digit.png"
    Image.fromarray(load_digits_data().val.images[0, 0].numpy(), "L").save(image)
    rows = []
    for precision in ("fp32", "bf16"):
        result = run_cli("predict", default_run.dir, image, "--json", "--precision", precision)
        assert result.code == 0
        rows += result.out.splitlines()
    fp32, bf16_row = (json.loads(line) for line in rows)
    assert fp32["topk"][0]["class"] == bf16_row["topk"][0]["class"]
    assert [c["probability"] for c in fp32["topk"]] != [c["probability"] for c in bf16_row["topk"]]


def test_a_topk_beyond_the_classes_shows_and_says_every_class(default_run, tmp_path, run_cli):
    image = tmp_path / "digit.png"
    Image.fromarray(load_digits_data().val.images[0, 0].numpy(), "L").save(image)
    result = run_cli("predict", default_run.dir, image, "--topk", "50")
    assert result.code == 0
    header, row = result.out.splitlines()
    assert header.split()[1:] == ["top-10", "classes"]  # the ten digits, not "top-50"
    assert len(row.split()) == 1 + 2 * 10
