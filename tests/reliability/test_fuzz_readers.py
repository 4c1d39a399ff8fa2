"""Promise 14: the readers of outside text and files only ever raise their documented exceptions.

- Table-1 notation: SpecError (fuzzed in tests/models/test_notation.py,
  test_arbitrary_text_only_ever_raises_spec_errors; here through create_model, the public door).
- Checkpoints (train/checkpoint.py load_checkpoint): WeightsError, whatever the bytes of
  latest.json or of the tensor file, and a tampered latest.json cannot name a file outside the
  checkpoint folder.
- Foreign `.pth` files (checkpoints_in.read_checkpoint, behind --weights, convert, predict):
  WeightsError for any damage to torch.save's zip format and to its legacy pickle format.
"""

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnets import create_model
from resnets.errors import SpecError, WeightsError
from resnets.train.checkpoint import load_checkpoint, save_checkpoint
from resnets.train.state import optimizer_state
from resnets.weights.pytorch_files import read_checkpoint

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_values = optimizer_state(model, optimizer)
    tensors.update({f"optimizer.{k}": v for k, v in optim_tensors.items()})
    state = {"optimizer": optim_values, "progress": {"epoch": 1}}
    save_checkpoint(folder, 1, tensors, state)
    return folder


def fresh_copy(good, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    for path in good.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def mutated(data: bytes, edits: list[tuple[int, int]], cut: int | None, insert: bytes) -> bytes:
    buf = bytearray(data)
    for at, value in edits:
        buf[at % len(buf)] = value
    if insert:
        at = edits[0][0] % (len(buf) + 1) if edits else 0
        buf[at:at] = insert
    return bytes(buf[:cut] if cut is not None else buf)


byte_damage = dict(
    edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 4000),
    insert=st.binary(max_size=12),
)


def load_or_weights_error(folder, name=None, named=None):
    try:
        tensors, state = load_checkpoint(folder, name)
    except WeightsError as exc:
        assert "\n" not in str(exc) and str(named or folder) in str(exc)
        return
    assert isinstance(tensors, dict) and isinstance(state, dict)


@FUZZ
@given(which=st.sampled_from(["latest.json", "epoch-0001.safetensors"]), **byte_damage)
def test_a_damaged_checkpoint_file_only_ever_raises_weights_error(
    tmp_path, good_checkpoint, which, edits, cut, insert
):
    folder = fresh_copy(good_checkpoint, tmp_path)
    path = folder / which
    path.write_bytes(mutated(path.read_bytes(), edits, cut, insert))
    load_or_weights_error(folder, named=path)  # the damaged file is the one named
    load_or_weights_error(folder, "epoch-0001.safetensors")


@pytest.fixture(scope="module")
def good_pth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pth")
    state = {"state_dict": torch.nn.Conv2d(3, 4, 3).state_dict(), "epoch": 7}
    torch.save(state, folder / "zip.pth")
    torch.save(state, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    return folder


@FUZZ
@given(which=st.sampled_from(["zip.pth", "legacy.pth"]), **byte_damage)
def test_a_damaged_pth_only_ever_raises_weights_error(tmp_path, good_pth, which, edits, cut, insert):
    path = tmp_path / which
    path.write_bytes(mutated((good_pth / which).read_bytes(), edits, cut, insert))
    try:
        read_checkpoint(path)
    except WeightsError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(
    tensors=json_values
    | st.sampled_from(["../outside.safetensors", "/etc/passwd", ".hidden.safetensors", "latest.json"]),
    shape=st.sampled_from(["dict", "list", "value"]),
)
def test_a_tampered_latest_json_only_ever_raises_weights_error_and_stays_in_its_folder(
    tmp_path, good_checkpoint, tensors, shape
):
    folder = fresh_copy(good_checkpoint, tmp_path)
    shutil.copy(good_checkpoint / "epoch-0001.safetensors", tmp_path / "outside.safetensors")
    state = json.loads((folder / "latest.json").read_text())
    document = {"dict": {**state, "tensors": tensors}, "list": [state], "value": tensors}[shape]
    (folder / "latest.json").write_text(json.dumps(document))
    try:
        loaded, _ = load_checkpoint(folder)
    except WeightsError:
        return
    assert tensors == "epoch-0001.safetensors" and shape == "dict" and loaded


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="[];,x×*C=0123456789 13abc-:_resnt", max_size=50))
def test_any_model_text_only_ever_raises_spec_error(text):
    try:
        create_model(text, device="meta")
    except SpecError as exc:
        assert "\n" not in str(exc)
