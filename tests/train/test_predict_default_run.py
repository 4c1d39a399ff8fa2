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
