"""resnets.optimize changes speed, never results: each fast path against the plain model.

The oracle is the same network run the plain PyTorch way (eval forward; an SGD step written
out by hand with torch.optim.SGD), with identical weights.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from cifar_reference import randomize_bn_statistics
from resnets import create_model, fold_bn, optimize
from resnets.errors import InputError, ResNetsError
from resnets.train.step import make_optimizer, make_train_step, set_lr


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BNs are identities; give them statistics so folding has something to get wrong."""
    return randomize_bn_statistics(model, seed).train()


@pytest.fixture
def resnet20():
    torch.manual_seed(0)
    return randomize_bn(create_model("resnet20"))


def batch(n=4, size=32, classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_infer_fp32_matches_the_plain_eval_forward(resnet20):
    x, _ = batch()
    reference = copy.deepcopy(resnet20).eval()
    fast = optimize(resnet20, mode="infer", device="cpu")
    with torch.no_grad():
        expected = reference(x)
    out = fast(x)
    assert out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert fast.config.fold_bn and fast.config.channels_last and not fast.config.compile


def test_infer_leaves_the_callers_model_untouched(resnet20):
    before = {k: v.clone() for k, v in resnet20.state_dict().items()}
    resnet20.train()
    optimize(resnet20, mode="infer", device="cpu")
    assert resnet20.training
    assert all(torch.equal(before[k], v) for k, v in resnet20.state_dict().items())
    assert resnet20.conv1.weight.is_contiguous()  # not switched to channels-last behind our back


def test_bf16_autocast_forward_is_close_to_fp32_and_returns_fp32(resnet20):
    x, _ = batch()
    reference = copy.deepcopy(resnet20).eval()
    fast = optimize(resnet20, mode="infer", device="cpu", precision="bf16")
    with torch.no_grad():
        expected = reference(x)
    out = fast(x)
    assert out.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: ~1% per op, a few percent after 20 layers.
    scale = expected.abs().max()
    assert (out - expected).abs().max() < 0.05 * scale
    assert not torch.equal(out, expected)  # autocast really ran in bf16


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet20", "resnet18d"])
def test_bn_folding_path_equals_the_unfused_path(name):
    torch.manual_seed(0)
    model = randomize_bn(create_model(name))
    x, _ = batch(size=64 if name == "resnet18d" else 32)
    fused = optimize(model, mode="infer", device="cpu", fold_bn=True)
    unfused = optimize(model, mode="infer", device="cpu", fold_bn=False)
    torch.testing.assert_close(fused(x), unfused(x), rtol=1e-4, atol=1e-4)
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in fused.model.modules())
    assert bns < sum(isinstance(m, nn.BatchNorm2d) for m in unfused.model.modules())
    if not model.spec.preact:
        assert bns == 0


def plain_sgd_steps(model, batches):
    """The oracle: a training step as the PyTorch tutorial writes it."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("checkpoint_activations", [False, True])
def test_train_steps_match_a_plain_sgd_loop(resnet20, checkpoint_activations):
    batches = [batch(seed=s) for s in (1, 2)]  # two steps: the second one uses momentum
    reference = copy.deepcopy(resnet20)
    expected = plain_sgd_steps(reference, batches)

    fast = optimize(resnet20, mode="train", device="cpu", checkpoint_activations=checkpoint_activations)
    optimizer = make_optimizer(fast.parameters(), lr=0.1)
    step = make_train_step(fast, optimizer)
    losses = [step(x, y).item() for x, y in batches]

    assert losses == pytest.approx(expected, rel=1e-5)
    ours, theirs = resnet20.state_dict(), reference.state_dict()
    for key in theirs:  # parameters and BN running statistics (counted once per batch)
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5, msg=key)


def activation_bytes_kept_for_backward(model, x):
    """Net CPU memory a forward pass leaves allocated: what autograd keeps for backward."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = model(x)
    return sum(e.self_cpu_memory_usage for e in prof.events()), out


def test_checkpointing_keeps_much_less_for_backward_and_gives_the_same_grads(resnet20):
    x, y = batch(n=16)
    plain = copy.deepcopy(resnet20).train()
    ckpt = copy.deepcopy(resnet20).train()
    ckpt.set_grad_checkpointing(True)
    kept_plain, out_plain = activation_bytes_kept_for_backward(plain, x)
    kept_ckpt, out_ckpt = activation_bytes_kept_for_backward(ckpt, x)
    # Per block only its input survives (vs ~6 tensors): well under half, so >= 2x the batch fits.
    assert kept_ckpt < 0.5 * kept_plain
    F.cross_entropy(out_plain, y).backward()
    F.cross_entropy(out_ckpt, y).backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_checkpointing_is_off_for_inference_forward(resnet20):
    resnet20.set_grad_checkpointing(True)
    x, _ = batch()
    with torch.no_grad():
        kept, _ = activation_bytes_kept_for_backward(resnet20.eval(), x)
    assert kept < 1e6  # no graph, nothing kept (the logits only)


def test_check_input_adds_no_graph_break_and_no_recompiles():
    from torch._dynamo.utils import counters

    model = create_model("basic:1-1-1:4-8-16").eval()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager")
    for n in (2, 3, 4, 5):  # the second size makes the batch dynamic; no more after that
        compiled(torch.randn(n, 3, 32, 32))
    assert counters["stats"]["unique_graphs"] == 2
    with pytest.raises(InputError, match="too small"):  # the checks still run compiled
        compiled(torch.randn(2, 3, 2, 2))
    torch._dynamo.reset()


def test_inductor_cpu_inference_with_freezing_matches_eager():
    """torch.compile + freezing + C++ wrapper on the CPU; one tiny model to keep CI fast."""
    torch.manual_seed(0)
    model = randomize_bn(create_model("basic:1-1-1:8-16-32"))
    x, _ = batch(n=2)
    expected = optimize(model, mode="infer", device="cpu")(x)
    fast = optimize(model, mode="infer", device="cpu", compile=True, compile_mode="default")
    assert fast.config.freeze and fast.config.compile_mode == "default"
    torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


def test_cpu_serving_default_is_a_onednn_graph_that_matches_eager_at_any_batch():
    """compile=True for fp32 CPU inference: a frozen TorchScript graph whose convolutions oneDNN
    Graph fuses; it must equal eager at every batch size and keep the model's input checks."""
    torch.manual_seed(0)
    model = randomize_bn(create_model("resnet20"))
    fast = optimize(model, mode="infer", device="cpu", compile=True)
    assert fast.config.compile_mode == "onednn-graph" and fast.config.freeze
    reference = copy.deepcopy(model).eval()
    fusion_before = torch.jit.onednn_fusion_enabled()
    for n in (2, 1, 5):
        x, _ = batch(n=n, seed=n)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), reference(x), rtol=1e-4, atol=1e-4)
    graph = str(torch.jit.last_executed_optimized_graph())
    assert "prim::oneDNNFusionGroup" in graph  # oneDNN Graph really runs the convolutions
    assert torch.jit.onednn_fusion_enabled() == fusion_before  # the process-wide switch restored
    with pytest.raises(InputError, match="too small"):
        fast(torch.randn(1, 3, 2, 2))
    with pytest.raises(ResNetsError, match="fp32 inference on the CPU"):
        optimize(model, mode="infer", device="cpu", precision="bf16", compile_mode="onednn-graph")


@pytest.mark.slow
def test_compiled_training_with_checkpointing_matches_a_plain_sgd_loop(resnet20):
    batches = [batch(seed=s) for s in (1, 2)]
    reference = copy.deepcopy(resnet20)
    expected = plain_sgd_steps(reference, batches)
    fast = optimize(resnet20, mode="train", device="cpu", compile=True, checkpoint_activations=True)
    step = make_train_step(fast, make_optimizer(fast.parameters(), lr=0.1))
    assert [step(x, y).item() for x, y in batches] == pytest.approx(expected, rel=1e-4)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resnet20.state_dict()[key], value, rtol=1e-3, atol=1e-4, msg=key)
    torch._dynamo.reset()


def test_state_dict_is_the_wrapped_models(resnet20):
    fast = optimize(resnet20, mode="train", device="cpu")
    assert list(fast.state_dict()) == list(resnet20.state_dict())
    assert all(p is q for p, q in zip(fast.parameters(), resnet20.parameters()))


def test_make_optimizer_is_fused_sgd_with_the_papers_settings(resnet20):
    optimizer = make_optimizer(resnet20.parameters(), lr=0.1, tensor_lr=True)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD) and group["fused"]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4
    lr = group["lr"]
    set_lr(optimizer, 0.01)
    assert group["lr"] is lr and lr.item() == pytest.approx(0.01)  # same storage: graph-safe


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"device": "cuda"}, "CUDA is not available"),
        ({"mode": "serve"}, "unknown mode"),
        ({"precision": "fp8"}, "unknown precision"),
        ({"compile_mode": "fastest"}, "unknown compile mode"),
        ({"mode": "infer", "checkpoint_activations": True}, "needs mode='train'"),
    ],
)
def test_bad_options_are_one_line_errors(resnet20, kwargs, message):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ResNetsError, match=message):
        optimize(resnet20, **kwargs)


def test_cuda_graph_step_needs_cuda(resnet20):
    optimizer = make_optimizer(resnet20.parameters())
    with pytest.raises(ResNetsError, match="CUDA"):
        make_train_step(resnet20, optimizer, cuda_graph=True)


def test_fold_bn_is_what_optimize_uses(resnet20):
    x, _ = batch()
    fast = optimize(resnet20, mode="infer", device="cpu", channels_last=False)
    torch.testing.assert_close(fast(x), fold_bn(resnet20)(x), rtol=0, atol=0)


def test_fp16_train_step_uses_a_grad_scaler_and_updates_the_weights():
    torch.manual_seed(0)
    model = create_model("basic:1-1-1:4-8-16")
    before = [p.detach().clone() for p in model.parameters()]
    fast = optimize(model, mode="train", device="cpu", precision="fp16")
    step = make_train_step(fast, make_optimizer(fast.parameters()), precision="fp16")
    x, y = batch()
    assert torch.isfinite(step(x, y))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
