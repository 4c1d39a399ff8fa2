"""Real files nobody here made: the CIFAR-10 test and training images as JPEGs and the CIFAR
reproduction's published weights, from ../shared/data (or $RESNETS_SHARED_DATA). Tests here skip,
saying why, when that folder is absent. The archives are unpacked once per session, only the
members a test needs, into a temporary folder (never into the repository)."""

from pathlib import Path

import pytest
from cifar_files import shared_data, unpack


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = shared_data()
    if not (root / "cifar10-jpg" / "test.tar.gz").is_file() or not (root / "pretrained-cifar").is_dir():
        pytest.skip(f"real data not found at {root} (set RESNETS_SHARED_DATA to the shared data folder)")
    return root


@pytest.fixture(scope="session")
def cifar_test_subset(real_data, tmp_path_factory) -> Path:
    """The first 50 test images of each class (500): test/<class>/00NN.jpg."""
    return unpack(real_data / "cifar10-jpg" / "test.tar.gz", tmp_path_factory.mktemp("cifar-test"), 50)


@pytest.fixture(scope="session")
def cifar_test_all(real_data, tmp_path_factory) -> Path:
    """All 10,000 test images."""
    return unpack(real_data / "cifar10-jpg" / "test.tar.gz", tmp_path_factory.mktemp("cifar-test-all"), None)
