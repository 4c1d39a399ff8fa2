"""The CUDA-only fast paths against their eager selves: run on a GPU machine, skipped elsewhere.

python -m pytest -q tests/test_fast_cuda.py
"""

import copy

import pytest
import torch

from resnets import create_model, optimize
from resnets.data.augment import crop_flip, random_crop_flip, sample_crop_flip
from resnets.train.step import CudaGraphStep, make_optimizer, make_train_step, set_lr

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def batches(n_steps, n=8, device="cuda"):
    g = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(n, 3, 32, 32, generator=g).to(device),
            torch.randint(0, 10, (n,), generator=g).to(device),
        )
        for _ in range(n_steps)
    ]


@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graph_train_steps_equal_eager_steps(compile):
    """Every call is one real step: warm-up, capture and replays update exactly like eager."""
    torch.manual_seed(0)
    model = create_model("resnet20")
    twin = copy.deepcopy(model)
    data = batches(6)

    eager = optimize(twin, "train", "cuda", compile=False)
    eager_opt = make_optimizer(eager.parameters(), lr=0.1, device="cuda", tensor_lr=True)
    eager_step = make_train_step(eager, eager_opt, cuda_graph=False)

    fast = optimize(model, "train", "cuda", compile=compile)
    opt = make_optimizer(fast.parameters(), lr=0.1, device="cuda", tensor_lr=True)
    step = make_train_step(fast, opt, warmup=2)
    assert isinstance(step, CudaGraphStep)

    for i, (x, y) in enumerate(data):
        if i == 4:  # a schedule change after capture must reach the graph
            set_lr(opt, 0.01)
            set_lr(eager_opt, 0.01)
        expected = eager_step(x, y).item()
        assert step(x, y).item() == pytest.approx(expected, rel=1e-3, abs=1e-4)
    for (name, p), q in zip(twin.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=name)
    assert step.graph is not None


def test_bf16_graphed_training_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    fast = optimize(create_model("resnet20"), "train", "cuda", "bf16")
    step = make_train_step(fast, make_optimizer(fast.parameters(), lr=0.05, device="cuda", tensor_lr=True))
    x, y = batches(1, n=64)[0]
    losses = [step(x, y).item() for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("compile_mode", ["default", "reduce-overhead"])
def test_cuda_inference_matches_eager(compile_mode):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(16, 3, 32, 32, device="cuda")
    with torch.no_grad():
        expected = model.cuda()(x)
    fast = optimize(model, "infer", "cuda", "fp32", compile_mode=compile_mode)
    outs = [fast(x) for _ in range(4)]  # cudagraph trees record on a later call
    for out in outs:  # earlier outputs survive later replays
        torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)
    bf16 = optimize(model, "infer", "cuda", "bf16", compile=False)(x)
    assert (bf16 - expected).abs().max() < 0.05 * expected.abs().max()


def test_gpu_augment_on_cuda_equals_the_cpu_result():
    x = torch.randint(0, 255, (32, 3, 32, 32), dtype=torch.uint8)
    top, left, flip = sample_crop_flip(32, 4, generator=torch.Generator().manual_seed(0))
    cpu = crop_flip(x, top, left, flip)
    gpu = crop_flip(x.cuda(), top.cuda(), left.cuda(), flip.cuda())
    assert torch.equal(gpu.cpu(), cpu)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert random_crop_flip(x.cuda(), generator=g).device.type == "cuda"


def test_checkpointing_fits_twice_the_batch_on_cuda():
    """Peak memory of a step at 2x the batch with checkpointing <= the plain step at 1x."""

    def peak(batch, checkpoint):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = optimize(
            create_model("resnet50"),
            "train",
            "cuda",
            "bf16",
            compile=False,
            checkpoint_activations=checkpoint,
        )
        step = make_train_step(model, make_optimizer(model.parameters(), device="cuda"), cuda_graph=False)
        x = torch.randn(batch, 3, 224, 224, device="cuda")
        y = torch.randint(0, 1000, (batch,), device="cuda")
        for _ in range(2):
            step(x, y)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()

    assert peak(64, checkpoint=True) <= peak(32, checkpoint=False)
