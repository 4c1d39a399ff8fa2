"""The tensor-resident loader: batches are a function of (seed, epoch), augmentation is exact."""

import pytest
import torch

from resnets.data.datasets import Split, split_indices
from resnets.data.digits import load_digits_data
from resnets.data.loaders import TensorLoader


def loader(n=50, **kw):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    split = Split(labels=torch.arange(n), images=images)
    args = dict(batch_size=8, train=True, seed=3, augment="none")
    return TensorLoader(split, (0.0,), (1 / 255,), **{**args, **kw})


def test_an_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    a = [y for _, y in loader().epoch(2)]
    b = [y for _, y in loader().epoch(2)]
    other = [y for _, y in loader().epoch(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    seen = torch.cat(a)
    assert len(seen) == 48 and len(set(seen.tolist())) == 48  # full batches, no repeats
    assert not torch.equal(seen, torch.cat(other))


def test_images_travel_with_their_labels_and_are_normalised():
    for x, y in loader().epoch(0):
        # mean 0, std 1/255 undoes the /255: the pixel value is the image index = its label.
        torch.testing.assert_close(x[:, 0, 0, 0], y.float())


def test_ranks_get_disjoint_equal_shares_of_an_epoch():
    shares = [torch.cat([y for _, y in loader(rank=r, world_size=2, batch_size=5).epoch(1)]) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 25
    assert not set(shares[0].tolist()) & set(shares[1].tolist())


def test_validation_batches_cover_every_image_in_order():
    ys = torch.cat([y for _, y in loader(train=False).epoch(0)])
    assert ys.tolist() == list(range(50))


def test_digits_split_is_the_fixed_stratified_sklearn_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    _, held = train_test_split(range(1797), test_size=0.2, stratify=bunch.target, random_state=0)
    data = load_digits_data(input_size=8)
    assert (len(data.train), len(data.val)) == (1437, 360)
    assert data.val.labels.tolist() == bunch.target[sorted(held)].tolist()
    expected = torch.as_tensor(bunch.images[sorted(held)] * 255 / 16).round().to(torch.uint8)
    assert torch.equal(data.val.images[:, 0], expected)
    assert data.in_channels == 1 and load_digits_data().input_size == 16


def test_split_refuses_to_hold_out_everything():
    from resnets.errors import DataError

    with pytest.raises(DataError):
        split_indices(torch.arange(10) % 2, 10, 0)
