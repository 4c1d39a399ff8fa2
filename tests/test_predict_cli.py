"""`resnets predict`: folders walked in order, a table or JSON lines whose classes and
probabilities are the eager model's, unreadable files reported and skipped with exit code 1,
what the walk passed over said in one line, usage errors as one line with exit code 2."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import resnets
from digits_model import save_digits_weights, trained_digits_model
from resnets.data.transforms import normalize


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_digits_weights(tmp_path_factory.mktemp("weights"))


def eager_probabilities(indices):
    """The oracle: the plain eager model on the dataset's own tensors, softmax."""
    model, _, data = trained_digits_model()
    with torch.no_grad():
        return torch.softmax(model(normalize(data.val.images[indices], data.mean, data.std)), 1)


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """Six held-out digits as PNGs, some in a subfolder, plus things a walk must leave out."""
    _, _, data = trained_digits_model()
    root = tmp_path_factory.mktemp("digits")
    (root / "more").mkdir()
    (root / ".cache").mkdir()
    expected = {}
    for i in range(6):
        name = f"digit{i}.png" if i < 4 else f"more/digit{i}.png"
        Image.fromarray(data.val.images[i, 0].numpy(), "L").save(root / name)
        expected[str(root / name)] = i
    Image.fromarray(data.val.images[0, 0].numpy(), "L").save(root / ".hidden.png")
    Image.fromarray(data.val.images[0, 0].numpy(), "L").save(root / ".cache" / "digit9.png")
    (root / "notes.txt").write_text("not an image, and not named like one")
    return root, expected


def cli_env():
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.parametrize("batch_size", ["32", "4"])  # one batch; two, the bad file in the second
def test_json_lines_give_each_image_the_eager_models_top_k_and_report_a_bad_file(
    weights, digit_folder, tmp_path, batch_size
):
    root, expected = digit_folder
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is text, not a JPEG")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnets",
            "predict",
            str(weights),
            str(root),
            str(bad),
            "--json",
            "--topk",
            "3",
            "--batch-size",
            batch_size,
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in records] == sorted(expected) + [str(bad)]
    probs = eager_probabilities(list(expected.values()))
    _, _, data = trained_digits_model()
    for record, row in zip(records, probs):
        top = row.topk(3)
        assert [t["class"] for t in record["topk"]] == [data.classes[i] for i in top.indices.tolist()]
        assert [t["probability"] for t in record["topk"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert records[-1]["file"] == str(bad) and "not a readable image" in records[-1]["error"]
    errors = [line for line in proc.stderr.splitlines() if str(bad) in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr


def test_table_shows_every_file_with_its_top_k_classes_and_probabilities(weights, digit_folder, run_cli):
    root, expected = digit_folder
    code, out, err = run_cli("predict", weights, root / "digit0.png", root / "more", "--topk", "2")
    out = out.splitlines()
    assert code == 0 and err == ""
    assert out[0].split() == ["file", "top-2", "classes"]
    files = [str(root / "digit0.png"), str(root / "more" / "digit4.png"), str(root / "more" / "digit5.png")]
    probs = eager_probabilities([expected[f] for f in files])
    _, _, data = trained_digits_model()
    for line, file, row in zip(out[1:], files, probs):
        cells = re.findall(r"(\S+)\s+([\d.]+)%", line[len(file) :])
        assert line.startswith(file)
        top = row.topk(2)
        assert [c for c, _ in cells] == [data.classes[i] for i in top.indices.tolist()]
        assert [float(p) for _, p in cells] == pytest.approx((100 * top.values).tolist(), abs=0.006)
    assert len(out) == 1 + len(files)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{weights}", "{missing}"], "no such file or folder"),
        (["{missing}", "{folder}"], "no such run directory or weights file"),
        (["{weights}", "{empty}"], "no image files"),
        (["{weights}", "{folder}", "--topk", "0"], "expected a positive integer"),
    ],
    ids=["missing-image", "missing-weights", "empty-folder", "topk-0"],
)
def test_usage_errors_are_one_line_with_exit_code_2(weights, digit_folder, tmp_path, run_cli, args, message):
    (tmp_path / "empty").mkdir()
    paths = dict(
        weights=weights, missing=tmp_path / "nope.png", folder=digit_folder[0], empty=tmp_path / "empty"
    )
    code, out, err = run_cli("predict", *(a.format(**paths) for a in args))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_help_explains_the_exit_codes(run_cli):
    code, out, _ = run_cli("predict", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "0 every image was classified; 1 some files were skipped; 2 usage error" in text


def test_what_the_walk_passed_over_is_one_line_on_stderr_and_each_file_is_classified_once(
    weights, digit_folder, tmp_path, run_cli
):
    root, expected = digit_folder
    code, out, err = run_cli("predict", weights, root, root / "digit1.png", "--json")
    assert code == 0
    assert [json.loads(line)["file"] for line in out.splitlines()] == sorted(expected)
    assert err.splitlines() == [
        f"resnets predict: passed over 2 hidden ({root / '.cache'}, {root / '.hidden.png'}); "
        f"1 not an image ({root / 'notes.txt'}); 1 duplicate ({root / 'digit1.png'})"
    ]
    only_text = tmp_path / "texts"
    only_text.mkdir()
    (only_text / "a.txt").write_text("words")
    code, _, err = run_cli("predict", weights, only_text)
    assert code == 2
    assert err.splitlines() == [
        f"resnets predict: error: no image files in {only_text} "
        f"(passed over 1 not an image ({only_text / 'a.txt'}))"
    ]
