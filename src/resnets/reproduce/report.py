"""The report of an experiment: markdown (our numbers next to the paper's, and what was
observed), CSV (every run; every curve point or layer) and PNG (drawn as the paper draws it)."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnets.atomic import write_text
from resnets.models.create import create_model
from resnets.models.resnet import count_parameters
from resnets.plots import figure, save_figure
from resnets.reproduce import paper
from resnets.reproduce.plan import Experiment, Scale, network_depth, network_family, network_label
from resnets.reproduce.responses import Responses, plot_responses, responses_csv
from resnets.reproduce.runs import RunResult
from resnets.text import human
from resnets.version import __version__


@dataclass
class Context:
    """What a report says about how its numbers were made."""

    experiment: Experiment
    scale: Scale
    data: str  # e.g. "digits: 1,437 training and 360 test images, 16x16, 1 channel"
    seeds: int
    device: str
    torch_version: str


@dataclass
class Report:
    """An experiment's report: the files written and the findings, one line each."""

    experiment: str
    files: dict[str, Path]
    findings: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per network, as the markdown table

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "files": {k: str(v) for k, v in self.files.items()},
            "findings": self.findings,
            "rows": self.rows,
        }


def by_network(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped by network, in the order given, each group by seed."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.model, []).append(r)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in groups.items()}


def percent(values: Sequence[float]) -> str:
    """'8.12' for one run; 'best (mean ± std)' over several, as Table 6 prints ResNet-110's."""
    errors = [100 * v for v in values]
    if len(errors) == 1:
        return f"{errors[0]:.2f}"
    return f"{min(errors):.2f} ({statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f})"


def header(context: Context) -> str:
    s = context.scale
    subsets = ""
    if s.train_subset or s.val_subset:
        subsets = f"; at most {s.train_subset or 'all':,} training and {s.val_subset or 'all':,} test images"
    digits = context.data.startswith("digits")  # plan.paper_config: 2 pixels, no mirrored digits
    augmentation = "2-pixel pad-and-crop, no flips" if digits else "4-pixel pad-and-crop and flips"
    lines = [
        f"# {context.experiment.title}: reproduced",
        "",
        f"Source: {paper.SOURCE}, sec. 4.2.",
        "",
        f"- scale: **{s.name}**: {s.iterations:,} iterations of {s.batch_size} images (the paper: 64,000 "
        f"of 128), lr {s.lr:g} divided by 10 at iterations {int(s.milestones[0]):,} and "
        f"{int(s.milestones[1]):,} (the paper: 0.1, at 32k and 48k){subsets}",
        "- recipe: paper-cifar (sec. 4.2): SGD, weight decay 1e-4, momentum 0.9, per-pixel mean "
        f"subtracted, {augmentation}; "
        "ResNet-110 and plain-110 start at a tenth of the lr until the training error is below 80%",
        f"- data: {context.data}",
        f"- seeds: {context.seeds} (0..{context.seeds - 1}); device: {context.device}; resnets "
        f"{__version__}, torch {context.torch_version}",
        "- test error: at the end of training, on the test images; training error: the running "
        "error of the last epoch's mini-batches (augmented)",
    ]
    if s.name != "paper" or s.iterations != 64_000:
        lines += ["", f"> This is a {s.name}-scale run: its numbers are not comparable with the paper's."]
    return "\n".join(lines) + "\n"


def write_runs_csv(path: Path, results: Sequence[RunResult], extra=None) -> None:
    """One row per run: network, depth, seed, params, test and training error (%), steps,
    seconds, run directory (and `extra(result)` columns)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["network", "depth", "seed", "params", "test_error", "train_error", "steps", "seconds", "run_dir"]
    extra_head = list(extra(None)) if extra else []
    writer.writerow(head + extra_head)
    for r in results:
        row = [network_label(r.model), network_depth(r.model), r.seed, r.params]
        row += [
            f"{100 * r.test_error:.2f}",
            f"{100 * r.train_error:.2f}",
            r.steps,
            f"{r.seconds:.1f}",
            r.run_dir,
        ]
        writer.writerow(row + (list(extra(r).values()) if extra else []))
    write_text(path, buffer.getvalue())


# --- Table 6 -----------------------------------------------------------------------------------


def write_table6(out: Path, results: Sequence[RunResult], context: Context) -> Report:
    """table6.md, table6.csv and table6.png: test error and parameters per depth, ours and the paper's."""
    groups = by_network(results)
    rows, md = [], []
    md.append("| network | params (ours) | params (paper) | test error % (ours) | test error % (paper) |")
    md.append("|---|---|---|---|---|")
    for model, runs in groups.items():
        depth = network_depth(model)
        paper_params, paper_error = paper.TABLE6.get(depth, ("-", None))
        paper_text = "-" if paper_error is None else f"{paper_error:.2f}"
        if depth == 110:
            paper_text += " ({:.2f} ± {:.2f})".format(*paper.TABLE6_110_MEAN_STD)
        ours = percent([r.test_error for r in runs])
        params = cifar10_params(model)
        md.append(
            f"| {network_label(model)} | {human(params)} ({params:,}) | {paper_params} | {ours} | {paper_text} |"
        )
        rows.append(
            {
                "network": network_label(model),
                "params": params,
                "params_trained": runs[0].params,
                "paper_params": paper_params,
                "test_errors": [100 * r.test_error for r in runs],
                "paper_test_error": paper_error,
            }
        )
    findings = [
        f"{r['network']}: test error {percent([e / 100 for e in r['test_errors']])}% (paper: "
        f"{'-' if r['paper_test_error'] is None else r['paper_test_error']}%), {human(r['params'])} "
        f"parameters (paper: {r['paper_params']})"
        for r in rows
    ]
    text = header(context) + "\n" + "\n".join(md) + "\n\n"
    text += (
        "Ours: the final test error, best (mean ± std) over seeds when there are several; the "
        "parameters of the network for CIFAR-10 (3 input channels, 10 classes; the runs' own, for "
        "their data, are in table6.csv). The paper's: Table 6 (ResNet-110: best of 5 runs, and "
        "mean ± std).\n\n" + runs_section(results)
    )
    files = {"markdown": out / "table6.md", "csv": out / "table6.csv", "png": out / "table6.png"}
    write_text(files["markdown"], text)
    write_runs_csv(files["csv"], results, extra=_paper_columns)
    plot_table6(files["png"], groups, context)
    return Report("table6", files, findings, rows)


def _paper_columns(result: RunResult | None) -> dict[str, Any]:
    if result is None:
        return {"cifar10_params": None, "paper_params": None, "paper_test_error": None}
    params, error = paper.TABLE6.get(network_depth(result.model), ("", ""))
    return {"cifar10_params": cifar10_params(result.model), "paper_params": params, "paper_test_error": error}


def cifar10_params(model: str) -> int:
    """Parameters of the zoo network as the paper counts it: 3 input channels, 10 classes."""
    return count_parameters(create_model(model, device="meta"))


def plot_table6(path: Path, groups: dict[str, list[RunResult]], context: Context) -> None:
    fig = figure(7, 4.5)
    ax = fig.subplots()
    depths = [network_depth(m) for m in groups]
    means = [100 * statistics.mean(r.test_error for r in runs) for runs in groups.values()]
    stds = [
        100 * statistics.stdev(r.test_error for r in runs) if len(runs) > 1 else 0.0
        for runs in groups.values()
    ]
    ax.errorbar(depths, means, yerr=stds, marker="o", capsize=3, label=f"ours ({context.scale.name} scale)")
    known = [d for d in depths if d in paper.TABLE6]
    ax.plot(known, [paper.TABLE6[d][1] for d in known], "s--", label="paper (Table 6)")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(depths, [str(d) for d in depths])
    data = context.data.split(":")[0]
    ax.set(xlabel="layers", ylabel="test error (%)", title=f"Test error of ResNets by depth: ours on {data}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


# --- Fig. 1 and Fig. 6: curves -----------------------------------------------------------------


def write_curves(out: Path, results: Sequence[RunResult], context: Context) -> Report:
    """figN.md, figN.csv (one row per run), figN_curves.csv (one row per evaluation) and
    figN.png (training error dashed, test error bold, against iterations, as the paper draws)."""
    name = context.experiment.name
    groups = by_network(results)
    md = ["| network | training error % (end) | test error % (end) |", "|---|---|---|"]
    rows = []
    for model, runs in groups.items():
        md.append(
            f"| {network_label(model)} | {percent([r.train_error for r in runs])} | "
            f"{percent([r.test_error for r in runs])} |"
        )
        rows.append(
            {
                "network": network_label(model),
                "train_errors": [100 * r.train_error for r in runs],
                "test_errors": [100 * r.test_error for r in runs],
            }
        )
    findings = degradation_findings(groups)
    claim = paper.FIG1 if name == "fig1" else paper.FIG6
    text = header(context) + "\n" + "\n".join(md) + "\n\n"
    text += "## Observed in this run\n\n" + "".join(f"- {f}\n" for f in findings)
    text += f"\n## The paper\n\n{claim}\n\n" + runs_section(results)
    files = {
        "markdown": out / f"{name}.md",
        "csv": out / f"{name}.csv",
        "curves_csv": out / f"{name}_curves.csv",
        "png": out / f"{name}.png",
    }
    write_text(files["markdown"], text)
    write_runs_csv(files["csv"], results)
    write_text(files["curves_csv"], curves_csv(results))
    plot_curves(files["png"], groups, context)
    return Report(name, files, findings, rows)


def curves_csv(results: Sequence[RunResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["network", "seed", "iteration", "train_error", "test_error"])
    for r in results:
        for point in r.curve:
            writer.writerow(
                [
                    network_label(r.model),
                    r.seed,
                    point["step"],
                    f"{100 * point['train_error']:.2f}",
                    f"{100 * point['test_error']:.2f}",
                ]
            )
    return buffer.getvalue()


def mean_curve(runs: Sequence[RunResult]) -> tuple[list[int], list[float], list[float]]:
    """Iterations, training and test error (%) averaged over the seeds (they share the steps)."""
    steps = [p["step"] for p in runs[0].curve]
    train = [100 * statistics.mean(r.curve[i]["train_error"] for r in runs) for i in range(len(steps))]
    test = [100 * statistics.mean(r.curve[i]["test_error"] for r in runs) for i in range(len(steps))]
    return steps, train, test


def plot_curves(path: Path, groups: dict[str, list[RunResult]], context: Context) -> None:
    """Fig. 1: training error (left) and test error (right). Fig. 6: plain nets (left) and
    ResNets (right), training error dashed and test error bold."""
    fig = figure(11, 4.5)
    left, right = fig.subplots(1, 2, sharey=True)
    if context.experiment.name == "fig1":
        for model, runs in groups.items():
            steps, train, test = mean_curve(runs)
            dot = "o" if len(steps) == 1 else None  # one evaluation: a line of one point draws nothing
            left.plot(steps, train, marker=dot, label=network_label(model))
            right.plot(steps, test, marker=dot, label=network_label(model))
        left.set(title="training error", ylabel="error (%)")
        right.set(title="test error")
    else:
        panels = {"plain": left, "resnet": right}
        for model, runs in groups.items():
            ax = panels[network_family(model)]
            steps, train, test = mean_curve(runs)
            dot = "o" if len(steps) == 1 else None  # one evaluation: a line of one point draws nothing
            (line,) = ax.plot(steps, test, linewidth=2, marker=dot, label=network_label(model))
            ax.plot(steps, train, "--", linewidth=1, marker=dot, fillstyle="none", color=line.get_color())
        left.set(title="plain networks (dashed: training, bold: test)", ylabel="error (%)")
        right.set(title="ResNets (dashed: training, bold: test)")
    for ax in (left, right):
        ax.set(xlabel="iterations")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(f"{context.experiment.title} ({context.scale.name} scale)")
    fig.tight_layout()
    save_figure(fig, path)


def degradation_findings(groups: dict[str, list[RunResult]]) -> list[str]:
    """Whether the deeper plain net ended with the higher training error (the degradation
    problem, sec. 4.2), and whether the deeper ResNet did not, in this run."""
    findings = []
    for family in ("plain", "resnet"):
        nets = sorted((m for m in groups if network_family(m) == family), key=network_depth)
        if len(nets) < 2:
            continue
        errors = {m: 100 * statistics.mean(r.train_error for r in groups[m]) for m in nets}
        shallow, deep = nets[0], nets[-1]
        in_order = all(errors[a] <= errors[b] for a, b in zip(nets, nets[1:]))
        numbers = ", ".join(f"{network_label(m)} {errors[m]:.2f}%" for m in nets)
        if family == "plain":
            seen = errors[deep] > errors[shallow]
            findings.append(
                f"degradation (the deeper plain net has the higher training error): "
                f"{'observed' if seen else 'not observed'} in this run: {network_label(deep)} ends at "
                f"{errors[deep]:.2f}% training error, {network_label(shallow)} at {errors[shallow]:.2f}% "
                f"(by depth: {numbers}{'; rising with every depth' if in_order and seen else ''})"
            )
        else:
            seen = errors[deep] <= errors[shallow]
            findings.append(
                f"no degradation for ResNets (the deeper ResNet's training error is not higher): "
                f"{'observed' if seen else 'not observed'} in this run: {network_label(deep)} ends at "
                f"{errors[deep]:.2f}% training error, {network_label(shallow)} at {errors[shallow]:.2f}% "
                f"(by depth: {numbers})"
            )
    twins = sorted(
        {network_depth(m) for m in groups if network_family(m) == "plain"}
        & {network_depth(m) for m in groups if network_family(m) == "resnet"}
    )
    if twins:
        error = {m: 100 * statistics.mean(r.train_error for r in runs) for m, runs in groups.items()}
        below = all(error[f"resnet{d}"] < error[f"plain{d}"] for d in twins)
        pairs = ", ".join(
            f"{d} layers {error[f'resnet{d}']:.2f}% vs {error[f'plain{d}']:.2f}%" for d in twins
        )
        findings.append(
            f"the ResNet ends with a lower training error than its plain twin at every depth: "
            f"{'observed' if below else 'not observed'} in this run ({pairs})"
        )
    return findings


# --- Fig. 7: layer responses -------------------------------------------------------------------


def write_fig7(
    out: Path, results: Sequence[RunResult], responses: list[Responses], context: Context
) -> Report:
    """fig7.md, fig7.csv (one row per network and layer), fig7_runs.csv and fig7.png."""
    md = ["| network | 3x3 layers | mean std | largest std | smallest std |", "|---|---|---|---|---|"]
    rows = []
    for r in responses:
        stds = [layer.std for layer in r.layers]
        md.append(f"| {r.label} | {len(stds)} | {r.mean_std:.4f} | {max(stds):.4f} | {min(stds):.4f} |")
        rows.append({"network": r.label, "layers": len(stds), "mean_std": r.mean_std, "stds": stds})
    findings = response_findings(responses)
    text = header(context) + "\n" + "\n".join(md) + "\n\n"
    text += (
        f"The responses of the first seed's run of each network over its {responses[0].images:,} "
        "test images: each 3x3 layer's output after BN and before the ReLU or the addition; its "
        "std over every value (images x channels x positions).\n\n"
    )
    text += "## Observed in this run\n\n" + "".join(f"- {f}\n" for f in findings)
    text += f"\n## The paper\n\n{paper.FIG7}\n\n" + runs_section(results)
    files = {
        "markdown": out / "fig7.md",
        "csv": out / "fig7.csv",
        "runs_csv": out / "fig7_runs.csv",
        "png": out / "fig7.png",
    }
    write_text(files["markdown"], text)
    write_text(files["csv"], responses_csv(responses))
    write_runs_csv(files["runs_csv"], results)
    plot_responses(files["png"], responses, title=f"{context.experiment.title} ({context.scale.name} scale)")
    return Report("fig7", files, findings, rows)


def response_findings(responses: list[Responses]) -> list[str]:
    """Whether each ResNet's responses are smaller than its plain counterpart's, and whether the
    deeper ResNet's are smaller (Fig. 7), by the mean over layers of the response std."""
    by_model = {r.label: r for r in responses}
    findings = []
    for label, r in by_model.items():
        if not label.startswith("ResNet-"):
            continue
        twin = by_model.get("plain-" + label.removeprefix("ResNet-"))
        if twin is not None:
            seen = r.mean_std < twin.mean_std
            findings.append(
                f"{label}'s responses smaller than {twin.label}'s: {'observed' if seen else 'not observed'} "
                f"(mean std {r.mean_std:.4f} vs {twin.mean_std:.4f})"
            )
    resnets = sorted((r for r in responses if r.label.startswith("ResNet-")), key=lambda r: len(r.layers))
    if len(resnets) >= 2:
        seen = all(a.mean_std > b.mean_std for a, b in zip(resnets, resnets[1:]))
        chain = ", ".join(f"{r.label} {r.mean_std:.4f}" for r in resnets)
        findings.append(
            f"the deeper ResNet has smaller responses: {'observed' if seen else 'not observed'} "
            f"(mean std by depth: {chain})"
        )
    return findings


def runs_section(results: Sequence[RunResult]) -> str:
    lines = ["## Runs", "", "| network | seed | steps | seconds | run directory |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {network_label(r.model)} | {r.seed} | {r.steps:,} | {r.seconds:.0f} | `{r.run_dir}` |"
        )
    return "\n".join(lines) + "\n"
