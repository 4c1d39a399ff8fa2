"""resnets.optimize and the training step change speed, never results: each fast path against
the plain model.

The oracle is the same network run the plain PyTorch way (eval forward; an SGD step written
out by hand with torch.optim.SGD), with identical weights.
"""

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from cifar_reference import randomize_bn_statistics
from resnets import create_model, fold_bn, optimize
from resnets.errors import InputError, ResNetsError
from resnets.train.config import TrainConfig
from resnets.train.step import TrainStep, build_optimizer, build_step, set_lr


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BNs are identities; give them statistics so folding has something to get wrong."""
    return randomize_bn_statistics(model, seed).train()


def train_step(model, **config) -> TrainStep:
    """The step `resnets train` runs, built as train builds it, on the CPU (10 classes)."""
    settings = TrainConfig(**{"model": "resnet20", "lr": 0.1, **config})
    return build_step(settings, model, torch.device("cpu"), num_classes=10, in_memory=True)


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
    assert fast.config.fold_bn and fast.config.channels_last
    assert fast.config.compile and fast.config.compile_mode == "onednn-graph"  # the CPU default
    eager = optimize(resnet20, mode="infer", device="cpu", compile=False)  # --no-compile
    assert not eager.config.compile and eager.fallback is None
    torch.testing.assert_close(eager(x), expected, rtol=1e-4, atol=1e-4)


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

    step = train_step(resnet20, checkpoint_activations=checkpoint_activations)
    results = [step([(x, y)], i + 1) for i, (x, y) in enumerate(batches)]

    assert all(r.applied for r in results)
    assert [r.stats[0].item() / len(x) for r, (x, _) in zip(results, batches)] == pytest.approx(
        expected, rel=1e-5
    )
    assert [r.stats[2].item() for r in results] == [len(x) for x, _ in batches]
    ours, theirs = resnet20.state_dict(), reference.state_dict()
    for key in theirs:  # parameters and BN running statistics (counted once per batch)
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5, msg=key)


def test_accumulated_micro_batches_step_like_one_batch_and_count_what_they_saw(resnet20):
    """Two micro-batches of 4 (accum_steps=2) against one plain step on the 8 images: the same
    update and the same loss and correct count (BN in eval mode on both, so that batch statistics
    over 4 or 8 images do not differ)."""
    (x, y) = batch(n=8, seed=3)
    reference = copy.deepcopy(resnet20).eval()
    with torch.no_grad():
        correct = (reference(x).argmax(1) == y).sum().item()
    expected = plain_sgd_steps(reference, [(x, y)])
    step = train_step(resnet20, accum_steps=2)
    resnet20.eval()
    result = step([(x[:4], y[:4]), (x[4:], y[4:])], 1)
    assert result.stats[0].item() / 8 == pytest.approx(expected[0], rel=1e-5)
    assert result.stats[1:].tolist() == [correct, 8]
    for (name, p), q in zip(reference.named_parameters(), resnet20.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ResNetsError, match="takes 2 micro-batch"):
        step([(x, y)], 2)


def test_grad_clip_bounds_the_update_to_the_clipped_gradient(resnet20):
    """--grad-clip: the step applies SGD to the gradient rescaled to norm `grad_clip` (oracle:
    torch's clip_grad_norm_ on a plain copy)."""
    x, y = batch()
    reference = copy.deepcopy(resnet20)
    F.cross_entropy(reference(x), y).backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.01)
    torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4).step()
    train_step(resnet20, grad_clip=0.01)([(x, y)], 1)
    for (name, p), q in zip(reference.named_parameters(), resnet20.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


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


def test_checkpointing_recomputes_only_when_autograd_records(resnet20, monkeypatch):
    """With checkpointing on, a forward without autograd (no_grad, inference_mode: eval, predict)
    must run the blocks directly: there is no backward to save memory for. The spy counts the
    blocks that go through torch.utils.checkpoint."""
    from resnets.models import resnet as resnet_module

    real, calls = resnet_module.checkpoint, []

    def spy(block, *args, **kwargs):
        calls.append(block)
        return real(block, *args, **kwargs)

    monkeypatch.setattr(resnet_module, "checkpoint", spy)
    resnet20.set_grad_checkpointing(True)
    x, _ = batch()
    with torch.no_grad():
        resnet20(x)
    with torch.inference_mode():
        resnet20(x)
    assert calls == []
    resnet20(x)
    assert len(calls) == sum(len(stage) for stage in resnet20.stages) == 9


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


@pytest.mark.parametrize(
    "name, channels, sizes",
    [
        ("resnet20", 1, [(16, 16), (17, 23), (24, 40)]),  # one channel, odd sizes
        ("resnet18d", 3, [(32, 32), (33, 47)]),  # ResNet-D: deep stem, avg-pool shortcut (ceil mode)
        ("preact_resnet20", 3, [(32, 32), (20, 20)]),  # pre-activation: BNs that stay unfolded
    ],
)
def test_cpu_inference_default_is_a_onednn_graph_exact_at_any_batch_and_input_size(name, channels, sizes):
    """The default for fp32 CPU inference: a frozen TorchScript graph whose convolutions oneDNN
    Graph fuses. It must equal the eager model (fp32 rounding) at every batch and input size,
    one-channel nets included, for inputs in either memory format, and keep the input checks."""
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, in_channels=channels))
    fast = optimize(model, mode="infer", device="cpu")
    assert fast.config.compile_mode == "onednn-graph" and fast.config.freeze
    reference = copy.deepcopy(model).eval()
    fusion_before = torch.jit.onednn_fusion_enabled()
    for h, w in sizes:
        for i, n in enumerate((3, 1, 3, 1)):  # the second call of a shape runs the fused graph
            x = torch.randn(n, channels, h, w, generator=torch.Generator().manual_seed(i * h + w))
            if i == 2:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                expected = reference(x)
            torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-4 * max(1, expected.abs().max()))
    graph = str(torch.jit.last_executed_optimized_graph())
    assert "prim::oneDNNFusionGroup" in graph  # oneDNN Graph really runs the convolutions
    assert fast.fallback is None and not fast.fixed_shapes
    assert torch.jit.onednn_fusion_enabled() == fusion_before  # the process-wide switch restored
    small = model.min_input_size - 1
    for bad, message in [
        (torch.randn(1, channels, small, 40), "too small"),
        (torch.randn(1, channels + 1, 32, 32), "input channels"),
        (torch.randn(channels, 32, 32), "4-D batch"),
    ]:
        with pytest.raises(InputError, match=message):
            fast(bad)
    assert fast.fallback is None  # a bad input is the caller's error, not a reason to drop the graph


def test_onednn_graph_is_for_fp32_cpu_inference_and_only_the_default_for_resnets(resnet20):
    with pytest.raises(ResNetsError, match="fp32 inference on the CPU"):
        optimize(resnet20, mode="infer", device="cpu", precision="bf16", compile_mode="onednn-graph")
    assert not optimize(resnet20, mode="infer", device="cpu", precision="bf16").config.compile
    assert not optimize(resnet20, mode="train", device="cpu").config.compile
    # A trace is exact only without data-dependent control flow: other modules stay eager.
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert not optimize(other, mode="infer", device="cpu").config.compile


def test_a_graph_that_cannot_be_built_falls_back_to_eager_in_one_logged_line(resnet20, monkeypatch, caplog):
    def untraceable(*args, **kwargs):
        raise RuntimeError("Tracer cannot infer type of output\nmore detail")

    monkeypatch.setattr(torch.jit, "trace", untraceable)
    x, _ = batch()
    reference = copy.deepcopy(resnet20).eval()
    fast = optimize(resnet20, mode="infer", device="cpu")
    with caplog.at_level("WARNING", logger="resnets"):
        with pytest.raises(InputError, match="too small"):
            fast(torch.randn(1, 3, 2, 2))  # checked before the graph: no fallback for bad input
        assert caplog.records == []
        for _ in range(3):
            with torch.no_grad():
                torch.testing.assert_close(fast(x), reference(x), rtol=1e-4, atol=1e-4)
    (record,) = caplog.records  # said once, not per call
    assert record.levelname == "WARNING" and record.name.startswith("resnets.")
    assert record.getMessage() == (
        "oneDNN Graph cannot run resnet20 (Tracer cannot infer type of output); running it eagerly"
    )
    assert fast.fallback == "Tracer cannot infer type of output"


def test_an_input_eager_refuses_too_raises_and_keeps_the_graph(resnet20):
    fast = optimize(resnet20, mode="infer", device="cpu")
    x, _ = batch()
    fast(x)
    with pytest.raises(RuntimeError):
        fast(x.double())  # float64 into float32 weights: eager refuses it as well
    assert fast.fallback is None
    fast(x)
    assert "prim::oneDNNFusionGroup" in str(torch.jit.last_executed_optimized_graph())


def test_without_onednn_graph_the_cpu_default_is_eager_said_once(resnet20, monkeypatch, caplog):
    optimize_module = importlib.import_module("resnets.runtime.optimize")  # the package exports the function
    monkeypatch.setattr(optimize_module, "onednn_graph_available", lambda: False)
    with caplog.at_level("WARNING", logger="resnets"):
        fast = optimize(resnet20, mode="infer", device="cpu")
    assert not fast.config.compile
    assert [r.getMessage() for r in caplog.records] == [
        "this torch has no oneDNN Graph (torch.jit); CPU inference runs eagerly"
    ]
    explicit = optimize(resnet20, mode="infer", device="cpu", compile=True)  # asked for: inductor
    assert explicit.config.compile_mode == "default"


def test_predict_says_in_one_line_when_the_graph_falls_back(tmp_path, run_cli, monkeypatch):
    from PIL import Image

    from resnets.weights import save_weights
    from resnets.weights.format import meta_for_model

    model = create_model("basic:1-1-1:4-8-16", num_classes=3)
    weights = tmp_path / "model.safetensors"
    save_weights(model, weights, meta_for_model(model))
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32), (30, 30, 200)).save(tmp_path / "b.png")

    def untraceable(*args, **kwargs):
        raise RuntimeError("no trace here")

    monkeypatch.setattr(torch.jit, "trace", untraceable)
    code, out, err = run_cli("predict", weights, tmp_path / "a.png", tmp_path / "b.png", "--batch-size", "1")
    assert code == 0 and len(out.splitlines()) == 3
    assert [line for line in err.splitlines() if "oneDNN" in line] == [
        "resnets predict: oneDNN Graph cannot run basic:1-1-1:4-8-16 (no trace here); running it eagerly"
    ]  # (the other line says which preprocessing is assumed for this file without a record)


@pytest.mark.slow
def test_compiled_training_with_checkpointing_matches_a_plain_sgd_loop(resnet20):
    batches = [batch(seed=s) for s in (1, 2)]
    reference = copy.deepcopy(resnet20)
    expected = plain_sgd_steps(reference, batches)
    step = train_step(resnet20, compile=True, checkpoint_activations=True)
    losses = [step([(x, y)], i + 1).stats[0].item() / len(x) for i, (x, y) in enumerate(batches)]
    assert losses == pytest.approx(expected, rel=1e-4)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resnet20.state_dict()[key], value, rtol=1e-3, atol=1e-4, msg=key)
    torch._dynamo.reset()


def test_state_dict_is_the_wrapped_models(resnet20):
    fast = optimize(resnet20, mode="train", device="cpu")
    assert list(fast.state_dict()) == list(resnet20.state_dict())
    assert all(p is q for p, q in zip(fast.parameters(), resnet20.parameters()))


def test_the_optimizer_is_fused_sgd_with_the_papers_settings(resnet20):
    optimizer = build_optimizer(resnet20, TrainConfig(lr=0.1), tensor_lr=True)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD) and group["fused"]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4  # sec. 3.4
    lr = group["lr"]
    set_lr(optimizer, 0.01)
    assert group["lr"] is lr and lr.item() == pytest.approx(0.01)  # same storage: graph-safe
    adamw = build_optimizer(resnet20, TrainConfig(optimizer="adamw"))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["fused"]


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
    with pytest.raises(ResNetsError, match="cannot be one CUDA graph here: it needs a CUDA device"):
        train_step(resnet20, cuda_graph=True)
    optimizer = build_optimizer(resnet20, TrainConfig())
    with pytest.raises(ResNetsError, match="needs a CUDA model"):
        TrainStep(resnet20, resnet20, optimizer, criterion=F.cross_entropy, cuda_graph=True)


def test_fold_bn_is_what_optimize_uses(resnet20):
    x, _ = batch()
    fast = optimize(resnet20, mode="infer", device="cpu", channels_last=False)
    torch.testing.assert_close(fast(x), fold_bn(resnet20)(x), rtol=0, atol=0)


def test_the_grad_scaler_scales_the_loss_and_skips_an_overflowed_update():
    """fp16's GradScaler in the step (exercised on the CPU, where fp16 autocast is refused): a
    finite step updates the weights exactly as the plain loop does; a step whose gradients
    overflow leaves them untouched and halves the scale."""
    torch.manual_seed(0)
    model = create_model("basic:1-1-1:4-8-16")
    reference = copy.deepcopy(model)
    x, y = batch()
    expected = plain_sgd_steps(reference, [(x, y)])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    step = TrainStep(
        model, model, build_optimizer(model, TrainConfig(lr=0.1)), criterion=F.cross_entropy, scaler=scaler
    )
    assert step([(x, y)], 1).stats[0].item() / len(x) == pytest.approx(expected[0], rel=1e-5)
    for (name, p), q in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)
    before = [p.detach().clone() for p in model.parameters()]
    step.criterion = lambda logits, targets: F.cross_entropy(logits, targets) * 1e38  # overflows x 2**10
    step([(x, y)], 2)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert scaler.get_scale() == 2.0**9
    with pytest.raises(ResNetsError, match="fp16 needs CUDA"):
        train_step(create_model("basic:1-1-1:4-8-16"), precision="fp16")


def test_classifier_on_the_cpu_sends_a_short_batch_as_it_is(monkeypatch):
    """Padding a short last batch to the batch size is for CUDA graphs (fixed shapes); the CPU's
    oneDNN Graph takes any batch, so one image costs one image, not a padded batch of 16."""
    from resnets.infer import Classifier
    from resnets.weights.format import meta_for_model

    model = create_model("basic:1-1-1:4-8-16", num_classes=3)
    classifier = Classifier.from_model(model, meta_for_model(model), device="cpu", batch_size=16)
    assert classifier.model.config.compile_mode == "onednn-graph" and not classifier.model.fixed_shapes
    seen = []
    run = classifier.model._run
    monkeypatch.setitem(classifier.model.__dict__, "_run", lambda x: seen.append(len(x)) or run(x))
    probabilities = classifier.probabilities(torch.rand(1, 3, 32, 32))
    assert seen == [1] and probabilities.shape == (1, 3)
