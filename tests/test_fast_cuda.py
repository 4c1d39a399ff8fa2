"""The CUDA-only fast paths against their eager selves: run on a GPU machine, skipped elsewhere.

python -m pytest -q tests/test_fast_cuda.py
"""

import copy

import pytest
import torch

from resnets import create_model, optimize
from resnets.data.augment import crop_flip, random_crop_flip, sample_crop_flip
from resnets.train.config import TrainConfig
from resnets.train.step import build_step, set_lr

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


def cuda_step(model, **config):
    """The step `resnets train` runs on a GPU with in-memory data, built as train builds it."""
    settings = TrainConfig(**{"model": "resnet20", "device": "cuda", "lr": 0.1, **config})
    return build_step(settings, model, torch.device("cuda"), num_classes=10, in_memory=True)


@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graph_train_steps_equal_eager_steps(compile):
    """Every call is one real step: warm-up, capture and replays update exactly like eager, the
    statistics they return included, and a schedule change after capture reaches the graph."""
    torch.manual_seed(0)
    model = create_model("resnet20")
    twin = copy.deepcopy(model)
    data = batches(6)

    eager = cuda_step(twin, cuda_graph=False)
    graphed = cuda_step(model, cuda_graph=None, compile=compile)  # train's own decision: capture
    assert graphed.cuda_graph and not eager.cuda_graph

    for i, (x, y) in enumerate(data):
        if i == 4:
            set_lr(graphed.optimizer, 0.01)
            set_lr(eager.optimizer, 0.01)
        expected = eager([(x, y)], i + 1).stats.tolist()
        got = graphed([(x, y)], i + 1).stats.tolist()
        assert got[0] == pytest.approx(expected[0], rel=1e-3, abs=1e-4) and got[2] == expected[2] == len(x)
    for (name, p), q in zip(twin.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=name)
    assert graphed.graph is not None


def test_a_graphed_step_records_a_nan_loss_with_its_step_number():
    """The loss guard inside a replayed graph: the first non-finite loss and its step survive
    later finite replays (in-place device buffers), and check() names that step."""
    from resnets.train.guards import NonFiniteLossError

    torch.manual_seed(0)
    step = cuda_step(create_model("resnet20"))
    x, y = batches(1)[0]
    for number in range(1, 6):
        step([(x, y)], number)
    assert step.graph is not None
    step([(x * float("nan"), y)], 6)
    step([(x, y)], 7)
    with pytest.raises(NonFiniteLossError, match="at step 6;"):
        step.guard.check()


def test_bf16_graphed_training_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    step = cuda_step(create_model("resnet20"), precision="bf16", lr=0.05)
    assert step.cuda_graph
    x, y = batches(1, n=64)[0]
    losses = [step([(x, y)], i + 1).stats[0].item() / 64 for i in range(60)]
    assert losses[-1] < 0.5 * losses[0]


def test_resnets_train_on_a_gpu_with_in_memory_data_runs_the_graphed_step(tmp_path, monkeypatch):
    """The decision in a real run: CUDA, one process, in-memory data, fp32 -> the graphed step,
    and the run learns (the bundled digits, a few epochs)."""
    from resnets.train import resolve_recipe, train
    from resnets.train.step import TrainStep

    built = []
    real_init = TrainStep.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(TrainStep, "__init__", spy)
    config = resolve_recipe("default", device="cuda", epochs=4, input_size=8)
    summary = train(config, tmp_path / "run")
    (step,) = built
    assert step.cuda_graph and step.graph is not None
    assert summary["val_top1"] > 0.8


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
        config = TrainConfig(
            model="resnet50", device="cuda", precision="bf16", checkpoint_activations=checkpoint
        )
        step = build_step(
            config, create_model("resnet50"), torch.device("cuda"), num_classes=1000, in_memory=True
        )
        assert not step.cuda_graph  # eager both ways: the same kernels, only the memory differs
        x = torch.randn(batch, 3, 224, 224, device="cuda")
        y = torch.randint(0, 1000, (batch,), device="cuda")
        for i in range(2):
            step([(x, y)], i + 1)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()

    assert peak(64, checkpoint=True) <= peak(32, checkpoint=False)
