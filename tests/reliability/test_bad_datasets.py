"""Promise 11: a CIFAR folder with a missing or corrupt batch file, or an ImageFolder with an empty
class or no classes, is a one-line error naming the problem before any training step (no run
directory is even created). Promise 14, for the CIFAR reader: a corrupt batch file, whatever its
bytes, only ever raises DataError, and never makes it allocate more than the file's size."""

import pickle
import resource

import numpy as np
import pytest
from cifar_format import write_cifar10
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from resnets.data.cifar import safe_load
from resnets.errors import DataError


def cifar_missing_a_batch(root):
    write_cifar10(root, per_batch=4, test=4)
    (root / "data_batch_3").unlink()


def cifar_truncated_test_batch(root):
    write_cifar10(root, per_batch=4, test=4)
    data = (root / "test_batch").read_bytes()
    (root / "test_batch").write_bytes(data[: len(data) // 2])


def cifar_garbage_meta(root):
    write_cifar10(root, per_batch=4, test=4)
    (root / "batches.meta").write_bytes(b"<html>404 Not Found</html>")


def image_folder(root, classes=("cat", "dog"), per_class=2):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * i, 90, 200)).save(root / name / f"{i}.png")


def folder_with_an_empty_class(root):
    image_folder(root)
    (root / "bird").mkdir()


def folder_without_classes(root):
    root.mkdir()
    (root / "README.txt").write_text("images go in class folders")


@pytest.mark.parametrize(
    "make, expected",
    [
        (cifar_missing_a_batch, "data_batch_3 is missing"),
        (cifar_truncated_test_batch, "test_batch: not a readable CIFAR batch"),
        (cifar_garbage_meta, "batches.meta: not a readable CIFAR batch"),
        (folder_with_an_empty_class, "class 'bird' has no images"),
        (folder_without_classes, "no class folders"),
    ],
)
def test_a_broken_dataset_is_one_line_before_any_training_step(tmp_path, run_cli, make, expected):
    make(tmp_path / "data")
    run = tmp_path / "run"
    code, _, err = run_cli(
        "train", "--data", tmp_path / "data", "--val-split", "0.5", "--model", "resnet20", "--out", run
    )
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("resnets train: error: ") and expected in line, line
    assert not run.exists()  # nothing was set up, let alone trained


@pytest.fixture(scope="module")
def real_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=4, test=4)
    return (root / "data_batch_1").read_bytes()


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(
        st.just("overwrite"), st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=8)
    ),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 20_000), st.binary(min_size=1, max_size=9))),
    st.tuples(st.just("random"), st.binary(max_size=300)),
)


def mutate(data: bytes, how) -> bytes:
    kind, arg = how
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[: arg % (len(buf) + 1)])
    if kind == "overwrite":
        for at, value in arg:
            buf[at % len(buf)] = value
        return bytes(buf)
    if kind == "insert":
        at, extra = arg
        at %= len(buf) + 1
        return bytes(buf[:at] + extra + buf[at:])
    return b"\x80\x02" + arg  # protocol-2 header, then anything


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=mutation)
def test_a_corrupt_cifar_batch_only_ever_raises_data_error_within_bounded_memory(tmp_path, real_batch, how):
    path = tmp_path / "data_batch_1"
    path.write_bytes(mutate(real_batch, how))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        batch = safe_load(path)
    except DataError:
        return
    finally:
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown_kib < 64 * 1024, (
            f"reading a {path.stat().st_size}-byte file grew memory by {grown_kib} KiB"
        )
    assert isinstance(batch, (dict, list, str, bytes, int, float, np.ndarray, type(None), tuple))


def test_memo_and_bytearray_bombs_are_refused_without_allocating(tmp_path):
    path = tmp_path / "bomb"
    # LONG_BINPUT 5e7: the C unpickler sizes (and zero-fills) its memo table for 5e7 entries, 400 MB
    # from a 12-byte file (and 16 GB from 2e9).
    path.write_bytes(b"\x80\x02}r" + (50_000_000).to_bytes(4, "little") + b".")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert safe_load(path) == {}
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024
    path.write_bytes(b"\x80\x05\x96" + (2**40).to_bytes(8, "little"))  # BYTEARRAY8 of 1 TB
    with pytest.raises(DataError, match="BYTEARRAY8"):
        safe_load(path)
    shape = pickle.dumps((2**20, 2**20), protocol=2)[2:-1]  # _reconstruct(ndarray, (2**20, 2**20), 'b'): 1 TB
    path.write_bytes(
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + shape + b"C\x01b\x87R."
    )
    with pytest.raises(DataError, match="only empty numpy arrays"):
        safe_load(path)
