"""`resnets train` learns on real CIFAR-10 JPEGs: 1,000 training images (100 a class) and 500 test
images as an image folder (decoded into memory, being small), ResNet-20, two epochs."""

import json
import shutil

from cifar_files import unpack

# Measured on this project's CPU: 28.2% after two epochs (chance: 10%); the bar leaves room for
# other machines' arithmetic.
BAR = 0.20


def test_resnet20_learns_on_a_real_cifar_subset(real_data, cifar_test_subset, tmp_path, run_cli):
    root = tmp_path / "cifar"
    unpack(real_data / "cifar10-jpg" / "train.tar.gz", root, 100)
    shutil.copytree(cifar_test_subset, root / "val")
    run = tmp_path / "run"
    args = ["train", "--data", root, "--model", "resnet20", "--epochs", "2", "--batch-size", "64"]
    code, out, err = run_cli(*args, "--lr", "0.05", "--out", run, "--json", "--device", "cpu")
    assert code == 0, err
    summary = json.loads(out)
    assert "decoded 1,500 images" in err
    assert summary["val_images"] == 500 and summary["val_top1"] > BAR, summary["val_top1"]
