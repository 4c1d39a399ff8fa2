"""Oracle: timm's ResNet-C/D models (deep stem, average-pool shortcuts; Bag of Tricks sec. 4)."""

import pytest
import torch

from resnets import create_model

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["resnet50d", "resnet18d", "resnet50c"])
def test_timm_weights_give_timm_logits(name):
    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False).eval()
    ours = create_model(name, device="meta")
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == their_shapes
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
