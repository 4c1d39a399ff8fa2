"""`resnets reproduce`: every experiment end to end at a tiny scale (two depths, two steps) on the
bundled digits, sharing one output folder: each writes its files, the later ones train nothing
(a spy on the training call), fig7's numbers equal a forward-hook computation done here on
inputs normalised here, and an interrupted reproduction resumes its run."""

import csv
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import resnets.reproduce.runs
from resnets import create_model
from resnets.reproduce import Scale, reproduce
from resnets.reproduce.plan import SCALES
from resnets.train.build import load_training_data
from resnets.train.run_dir import read_run_config

SMOKE, PAPER = SCALES["smoke"], SCALES["paper"]  # as shipped (the fixture below shrinks "smoke")
TINY = Scale("smoke", iterations=2, batch_size=16, train_subset=320, val_subset=20)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one torch thread trains them fastest, and several times faster
    than two when the cores are busy with other work. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def spy():
    """Counts the training calls of every reproduction in this module."""
    calls = []
    real = resnets.reproduce.runs.train

    def counting(config, run_dir, **kwargs):
        calls.append((config.model if config else None, run_dir, kwargs.get("resume", False)))
        return real(config, run_dir, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(resnets.reproduce.runs, "train", counting)
    patch.setitem(SCALES, "smoke", TINY)  # the command line's smoke scale, shrunk for the tests
    yield calls
    patch.undo()


@pytest.fixture(scope="module")
def fig6(tmp_path_factory, spy):
    out = tmp_path_factory.mktemp("reproduction")
    events = []
    report = reproduce("fig6", data="digits", scale=TINY, depths=(20, 32), out=out, on_event=events.append)
    return out, report, events


def keeper(outputs, name):
    """A forward hook that keeps a copy of the module's output (and returns None, so the output
    goes on unchanged: a hook that returns a tensor replaces the output)."""

    def hook(module, inputs, out):
        outputs[name] = out.clone()

    return hook


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fig6_trains_each_network_once_and_writes_its_report(fig6, spy):
    out, report, events = fig6
    assert sorted(m for m, _, _ in spy) == ["plain20", "plain32", "resnet20", "resnet32"]
    assert set(report.files) == {"markdown", "csv", "curves_csv", "png"}
    assert all(path.is_file() and path.stat().st_size > 0 for path in report.files.values())
    assert report.files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(out / "fig6.csv")
    assert [(r["network"], r["steps"]) for r in rows] == [
        ("plain-20", "2"), ("plain-32", "2"), ("ResNet-20", "2"), ("ResNet-32", "2"),
    ]  # fmt: skip
    summary = json.loads((out / "runs" / "resnet32-seed0" / "summary.json").read_text())
    assert float(rows[3]["test_error"]) == pytest.approx(100 * (1 - summary["val_top1"]), abs=0.006)
    curves = read_csv(out / "fig6_curves.csv")
    assert {r["network"] for r in curves} == {"plain-20", "plain-32", "ResNet-20", "ResNet-32"}
    text = report.files["markdown"].read_text()
    assert "smoke-scale run" in text and "| ResNet-32 |" in text
    assert "2-pixel pad-and-crop, no flips" in text and "4-pixel" not in text  # the digits' recipe
    assert any(f.startswith("degradation (the deeper plain net") for f in report.findings)
    assert any(f.startswith("no degradation for ResNets") for f in report.findings)
    twins = next(f for f in report.findings if f.startswith("the ResNet ends with a lower training error"))
    assert "20 layers" in twins and "32 layers" in twins
    plan = events[0]
    assert plan.kind == "plan" and plan.total == 4 and plan.estimate.runs == 4 and plan.estimate.seconds > 0
    assert [e.kind for e in events[1:]] == ["start", "done"] * 4


def test_table6_and_fig1_after_fig6_reuse_its_runs_and_train_nothing(fig6, spy, run_cli):
    out, _, _ = fig6
    trained = len(spy)
    threads = torch.get_num_threads()
    try:  # the device and the threads say how a run goes, not what it is: still reused
        result = run_cli(
            "reproduce", "table6", "--depths", "20,32", "--out", out, "--device", "cpu", "--threads", 1
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert result.code == 0, result.err
    assert "2 finished already (reused)" in result.out and "expected time" not in result.out
    rows = read_csv(out / "table6.csv")
    assert [(r["network"], r["cifar10_params"], r["paper_params"]) for r in rows] == [
        ("ResNet-20", "269722", "0.27M"), ("ResNet-32", "464154", "0.46M"),
    ]  # fmt: skip
    assert "| ResNet-20 | 269.72K (269,722) | 0.27M |" in (out / "table6.md").read_text()
    assert (out / "table6.png").read_bytes()[:4] == b"\x89PNG"
    report = reproduce("fig1", data="digits", scale=TINY, depths=(20, 32), out=out)
    assert set(report.files) == {"markdown", "csv", "curves_csv", "png"} and len(spy) == trained
    assert all(path.stat().st_size > 0 for path in report.files.values())
    assert [r["network"] for r in read_csv(report.files["csv"])] == ["plain-20", "plain-32"]


def test_fig7_measures_what_hooks_measure_on_inputs_normalised_here(fig6, spy):
    out, _, _ = fig6
    trained = len(spy)
    report = reproduce("fig7", data="digits", scale=TINY, depths=(20, 32), out=out)
    assert len(spy) == trained
    assert set(report.files) == {"markdown", "csv", "runs_csv", "png"}
    assert all(path.stat().st_size > 0 for path in report.files.values())
    rows = read_csv(report.files["csv"])
    config = read_run_config(out / "runs" / "resnet20-seed0")
    data = load_training_data(config)  # the run's images as uint8, normalised below by hand
    mean_image = data.train.images.double().mean(0) / 255  # per-pixel mean (paper-cifar)
    x = (data.val.images.double() / 255 - mean_image).float()
    assert len(x) == 20
    for network, model in [("plain-20", "plain20"), ("ResNet-32", "resnet32")]:
        net = create_model(model, in_channels=1)
        net.load_state_dict(load_file(out / "runs" / f"{model}-seed0" / "model.safetensors"))
        net.eval()
        blocks = 3 if model.endswith("20") else 5
        names = ["bn1"] + [f"layer{s}.{b}.bn{k}" for s in (1, 2, 3) for b in range(blocks) for k in (1, 2)]
        outputs = {}
        handles = [net.get_submodule(n).register_forward_hook(keeper(outputs, n)) for n in names]
        with torch.no_grad():
            net(x)
        for h in handles:
            h.remove()
        mine = [r for r in rows if r["model"] == network]
        assert [r["layer"] for r in mine] == names
        for r in mine:
            assert float(r["std"]) == pytest.approx(outputs[r["layer"]].double().std().item(), rel=1e-5)
    assert any("responses smaller than plain-20's" in f for f in report.findings)
    assert "the deeper ResNet has smaller responses" in report.files["markdown"].read_text()


def test_analyze_responses_of_one_run_prints_and_writes_them(fig6, run_cli, tmp_path):
    out, _, _ = fig6
    run = out / "runs" / "resnet20-seed0"
    result = run_cli("analyze", "responses", run, "--device", "cpu", "--out", tmp_path)
    assert result.code == 0, result.err
    assert "20 images, 19 3x3 layers, mean response std" in result.out and "layer3.2.bn2" in result.out
    mine = read_csv(tmp_path / "responses.csv")
    fig7 = [r for r in read_csv(out / "fig7.csv") if r["model"] == "ResNet-20"]
    assert [r["layer"] for r in mine] == [r["layer"] for r in fig7] and mine[0]["layer"] == "bn1"
    assert [float(r["std"]) for r in mine] == pytest.approx([float(r["std"]) for r in fig7], rel=1e-5)
    assert (tmp_path / "responses.png").read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_reproduction_resumes_its_run_from_the_checkpoint(tmp_path, monkeypatch):
    two_epochs = Scale("smoke", iterations=6, batch_size=8, train_subset=40, val_subset=20)  # 5 a epoch
    monkeypatch.setattr(resnets.reproduce.runs, "time_steps", lambda *args, **kwargs: 0.01)
    real = resnets.reproduce.runs.train

    def interrupted(config, run_dir, **kwargs):
        real(config, run_dir, stop_after_epoch=1, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(resnets.reproduce.runs, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reproduce("table6", data="digits", scale=two_epochs, depths=(20,), out=tmp_path)
    run = tmp_path / "runs" / "resnet20-seed0"
    assert not (run / "summary.json").exists() and (run / "checkpoint" / "latest.json").is_file()
    calls = []
    monkeypatch.setattr(
        resnets.reproduce.runs,
        "train",
        lambda config, run_dir, **kw: calls.append(kw) or real(config, run_dir, **kw),
    )
    events = []
    report = reproduce(
        "table6", data="digits", scale=two_epochs, depths=(20,), out=tmp_path, on_event=events.append
    )
    assert [kw["resume"] for kw in calls] == [True]
    assert events[0].estimate.steps == 1  # 6 planned, 5 done before the interruption
    assert [int(r["step"]) for r in read_csv(run / "metrics.csv")] == [5, 6]
    assert read_csv(report.files["csv"])[0]["steps"] == "6"


def test_a_folder_of_another_configuration_is_refused_and_bad_requests_are_one_line(fig6, run_cli, tmp_path):
    out, _, _ = fig6
    result = run_cli("reproduce", "table6", "--depths", "20", "--out", out, "--iterations", "5")
    assert result.code == 2 and "holds a run of another configuration (it differs in iterations" in result.err
    result = run_cli("reproduce", "fig1", "--depths", "1202", "--out", out)
    assert result.code == 2 and "no plain-1202" in result.err
    assert run_cli("reproduce", "fig8").code == 2
    (tmp_path / "flat" / "cat").mkdir(parents=True)  # class folders, but no train/ and test/
    Image.new("RGB", (32, 32)).save(tmp_path / "flat" / "cat" / "a.png")
    result = run_cli("reproduce", "table6", "--data", tmp_path / "flat", "--out", tmp_path / "o")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "no test images; reproduce needs an ImageFolder with train/<class>" in result.err
    assert "--val-split" not in result.err  # a flag reproduce does not have
    assert run_cli("reproduce", "table6", "--depths", "twenty").code == 2


def test_the_paper_scale_is_the_papers_recipe_and_the_smoke_scale_scales_batch_and_lr_together():
    from resnets.reproduce.plan import run_config

    paper = run_config("resnet110", 0, data="cifar10", scale=PAPER)
    # sec. 4.2: batch 128, lr 0.1, /10 at 32k and 48k, stop at 64k, wd 1e-4, momentum 0.9,
    # 0.01 until the training error is below 80% for ResNet-110; all 50k images, 10k test
    assert (paper.batch_size, paper.lr, paper.iterations, paper.milestones) == (
        128,
        0.1,
        64_000,
        [32_000, 48_000],
    )
    assert (paper.weight_decay, paper.momentum, paper.warmup_lr, paper.warmup_until_error) == (
        1e-4,
        0.9,
        0.01,
        0.8,
    )
    assert (paper.val_split, paper.train_subset, paper.val_subset) == (None, None, None)
    assert (paper.normalize, paper.augment, paper.pad, paper.flip) == ("per-pixel-mean", "pad-crop", 4, True)
    smoke = run_config("resnet110", 0, data="digits", scale=SMOKE)
    assert smoke.batch_size * smoke.iterations == 64 * 128  # the images of 1/1000 of the paper's training
    assert smoke.lr == pytest.approx(0.1 * smoke.batch_size / 128)  # the linear scaling rule
    assert smoke.warmup_lr == pytest.approx(smoke.lr / 10) and smoke.milestones == [128, 192]
    assert (smoke.pad, smoke.flip) == (2, False)  # 16-px digits: 1/8 of the side, and never mirrored


def test_the_expected_time_interpolates_the_timed_steps_by_multiply_adds(monkeypatch, tmp_path):
    from resnets import summary
    from resnets.reproduce.plan import run_config
    from resnets.reproduce.runs import FINISHED, PlannedRun, estimate

    timed = {"resnet20": 0.1, "resnet110": 0.5}  # seconds a step, as if measured
    monkeypatch.setattr(resnets.reproduce.runs, "time_steps", lambda model, *args, **kwargs: timed[model])

    def planned(model, state="new", done=0):
        config = run_config(model, 0, data="digits", scale=TINY).replace(iterations=100)
        return PlannedRun(model, 0, config, tmp_path / model, state=state, steps_done=done)

    runs = [
        planned("resnet20"),
        planned("resnet56", done=40),
        planned("resnet110"),
        planned("resnet32", FINISHED, 100),
    ]
    result = estimate(runs, (1, 16, 16), val_images=0, train_images=10_000)
    m20, m56, m110 = (summary(name).macs for name in ("resnet20", "resnet56", "resnet110"))
    t56 = 0.1 + 0.4 * (m56 - m20) / (m110 - m20)  # on the line through the two timed networks
    assert result.seconds == pytest.approx(100 * 0.1 + 60 * t56 + 100 * 0.5)
    assert (result.runs, result.steps, result.probe, result.step_seconds) == (3, 260, "resnet20", 0.1)
    # one evaluation of the test images per epoch, a third of a training step per image
    with_eval = estimate(runs[:1], (1, 16, 16), val_images=48, train_images=16 * 50)  # 2 epochs of 50
    assert with_eval.seconds == pytest.approx((100 + 2 * 48 / 16 / 3) * 0.1)


def result(model, train_error, seed=0):
    from resnets.reproduce.runs import RunResult

    return RunResult(model, seed, None, 0, test_error=0.5, train_error=train_error, seconds=1.0, steps=1)


def test_the_findings_say_observed_only_when_the_numbers_show_it():
    from resnets.reproduce.report import by_network, degradation_findings

    seen = degradation_findings(by_network([result("plain20", 0.1), result("plain56", 0.3), result("resnet20", 0.08), result("resnet56", 0.05)]))  # fmt: skip
    assert seen[0].startswith("degradation") and ": observed in this run: plain-56 ends at 30.00%" in seen[0]
    assert seen[1].startswith("no degradation for ResNets") and ": observed in this run" in seen[1]
    assert "observed in this run (20 layers 8.00% vs 10.00%, 56 layers 5.00% vs 30.00%)" in seen[2]
    # mean over seeds: plain-56 (0.05 + 0.09) / 2 = 7% is below plain-20's 10%
    unseen = degradation_findings(by_network([result("plain20", 0.1), result("plain56", 0.05), result("plain56", 0.09, seed=1), result("resnet20", 0.08), result("resnet56", 0.2)]))  # fmt: skip
    assert all(": not observed" in f for f in unseen) and "plain-56 ends at 7.00%" in unseen[0]


def test_the_response_findings_compare_twins_and_depths():
    from resnets.inspect.responses import LayerResponse
    from resnets.reproduce.report import response_findings
    from resnets.reproduce.responses import Responses

    def net(label, stds):
        layers = [LayerResponse(i + 1, f"bn{i}", "conv1", 16, s, 0.0, 100) for i, s in enumerate(stds)]
        return Responses(label, "w", "d", 10, layers)

    nets = [net("plain-20", [2.0, 2.0]), net("ResNet-20", [1.0, 2.0]), net("ResNet-56", [1.0, 1.0, 1.0, 1.5])]
    found = response_findings(nets)
    assert found[0] == "ResNet-20's responses smaller than plain-20's: observed (mean std 1.5000 vs 2.0000)"
    assert found[1].startswith("the deeper ResNet has smaller responses: observed")
    nets[2] = net("ResNet-56", [2.0, 2.0, 2.0, 2.0])
    assert response_findings(nets)[1].startswith("the deeper ResNet has smaller responses: not observed")


@pytest.mark.parametrize("name", ["fig1", "fig6"])
def test_curves_of_a_single_evaluation_are_drawn_as_points(name, monkeypatch, tmp_path):
    """A short schedule (--iterations below one epoch) evaluates once: its curves must still show."""
    import resnets.reproduce.report as report
    from resnets.reproduce.plan import EXPERIMENTS
    from resnets.reproduce.runs import RunResult

    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.append(fig))
    point = [{"step": 40, "train_error": 0.8, "test_error": 0.7}]
    results = [
        RunResult(model, 0, tmp_path / model, 1, 0.7, 0.8, 1.0, 40, point)
        for model in ("plain20", "resnet20")
    ]
    context = report.Context(EXPERIMENTS[name], TINY, "digits", 1, "cpu", torch.__version__)
    report.plot_curves(tmp_path / "f.png", report.by_network(results), context)
    lines = [line for ax in figures[0].axes for line in ax.lines]
    assert len(lines) == 4 and all(line.get_marker() not in (None, "None", "") for line in lines)
