"""Oracle: torchvision's own models. Same parameters, same state_dict keys and shapes, same logits."""

import pytest
import torch
import torchvision
from reference_names import TORCHVISION_NAMES

from resnets import create_model


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_state_dict_keys_shapes_and_params_match_torchvision(name):
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)()
    ours = create_model(name, device="meta")
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == their_shapes
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_weights_give_torchvision_logits(name):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)().eval()
    # Non-trivial BN statistics, so a mis-wired BN would show in the logits.
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.0)
    ours = create_model(name, device="meta")
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
