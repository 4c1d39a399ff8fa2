"""The training step's decisions, on the CPU: when `resnets train` captures the step as one CUDA
graph, and what the EMA update computes."""

import copy

import pytest
import torch

from resnets import create_model
from resnets.errors import ResNetsError
from resnets.train import resolve_recipe
from resnets.train.build import build_run
from resnets.train.config import TrainConfig
from resnets.train.step import build_step, cuda_graph_blocker, use_cuda_graph

CUDA = torch.device("cuda")  # only a name here: the decision looks at the device type, never at a GPU


def blocker(config=None, device=CUDA, in_memory=True, world_size=1):
    return cuda_graph_blocker(config or TrainConfig(), device, in_memory=in_memory, world_size=world_size)


def test_a_gpu_run_on_in_memory_data_at_fp32_or_bf16_is_captured():
    assert blocker() is None
    assert blocker(TrainConfig(precision="bf16", compile=True, grad_clip=1.0, ema_decay=0.9)) is None
    assert blocker(TrainConfig(mixup_alpha=0.2, accum_steps=2, warmup_until_error=0.8)) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(device=torch.device("cpu")), "CUDA device"),
        (dict(world_size=2), "single process"),
        (dict(in_memory=False), "in-memory data"),
        (dict(config=TrainConfig(precision="fp16")), "grad scaler"),
        (dict(config=TrainConfig(skip_nonfinite=True)), "--skip-nonfinite"),
        (dict(config=TrainConfig(checkpoint_activations=True)), "activation checkpointing"),
        (dict(config=TrainConfig(compile=True, compile_mode="reduce-overhead")), "CUDA graphs of its own"),
    ],
)
def test_each_thing_a_graph_cannot_replay_keeps_the_step_eager_and_says_why(change, reason):
    found = blocker(**change)
    assert found is not None and reason in found
    config = change.get("config", TrainConfig())
    where = dict(in_memory=change.get("in_memory", True), world_size=change.get("world_size", 1))
    device = change.get("device", CUDA)
    assert use_cuda_graph(config, device, **where) is False  # the default (None): eager, no error
    with pytest.raises(ResNetsError, match=f"--cuda-graph: .*{reason}"):
        use_cuda_graph(config.replace(cuda_graph=True), device, **where)


def test_cuda_graph_false_turns_capture_off_where_it_could_run():
    assert use_cuda_graph(TrainConfig(), CUDA, in_memory=True, world_size=1) is True
    assert use_cuda_graph(TrainConfig(cuda_graph=False), CUDA, in_memory=True, world_size=1) is False


def test_a_cpu_run_builds_the_eager_step(tmp_path):
    config = resolve_recipe("default", model="basic:1-1-1:4-8-16", data="synthetic", input_size=8)
    run = build_run(config, tmp_path / "run", torch.device("cpu"))
    assert not run.step.cuda_graph and run.step.graph is None
    assert isinstance(run.optimizer.param_groups[0]["lr"], float)  # tensor learning rates only when graphed
    assert run.step.describe()["optimizer"] == "SGD(fused=True)"


def test_ema_copies_first_then_averages_with_the_ramped_up_decay():
    """The oracle: the EMA written out by hand, decay_n = min(decay, (1 + n) / (10 + n)) for the
    n-th update after the first (which copies), BN's num_batches_tracked copied, not averaged."""
    torch.manual_seed(0)
    model = create_model("basic:1-1-1:4-8-16")
    config = TrainConfig(model="basic:1-1-1:4-8-16", ema_decay=0.9)
    step = build_step(config, model, torch.device("cpu"), num_classes=10, in_memory=True)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    expected = None
    for n in range(4):
        step([(x, y)], n + 1)
        current = copy.deepcopy(model.state_dict())
        if expected is None:
            expected = current
        else:
            decay = min(0.9, (1 + n) / (10 + n))
            for key, value in current.items():
                if value.is_floating_point():
                    expected[key] = expected[key] * decay + value * (1 - decay)
                else:
                    expected[key] = value
    averaged = step.ema.module.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert int(step.ema.n_averaged) == 4
