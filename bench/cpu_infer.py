"""The CPU target of docs/benchmarks.md: ResNet-50, batch 1, fp32 inference through
resnets.optimize, against torchvision eager and onnxruntime running torchvision's ONNX export,
and what each step buys; and the INT8 model `resnets export --int8` writes, run by onnxruntime.

    PYTHONPATH=src python bench/cpu_infer.py --out results/cpu_infer.json

Every candidate holds the same weights and is timed in the same process, round-robin (a few
calls of each candidate per round, many rounds) so that a busy or throttling machine slows all
of them alike; the median call is reported. Compilation happens before timing and is reported
apart: it is a one-off per process (and per input shape).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from resnets import create_model, fold_bn, optimize
from resnets.bench.runner import INT8_CALIBRATION_BATCHES, cpu_name
from resnets.export.int8 import quantize
from resnets.export.onnx import export_onnx, onnx_session

Candidate = Callable[[], Any]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_candidates(
    args: argparse.Namespace,
) -> tuple[dict[str, Candidate], dict[str, float], dict[str, float]]:
    """name -> zero-argument call in the order of the table; compile seconds and the largest
    output difference from torchvision's, per name."""
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.get_model(args.model, weights=None).eval()
    ours = create_model(args.model).eval()
    ours.load_state_dict(tv.state_dict())  # same architecture and names: the same network
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = tv(x)
    cands: dict[str, Candidate] = {}
    compile_s: dict[str, float] = {}
    errors: dict[str, float] = {}

    def add(name: str, fn: Candidate, compiled: bool = False) -> None:
        start = time.perf_counter()
        with torch.no_grad():
            out = fn()
        if compiled:
            compile_s[name] = time.perf_counter() - start
        out = torch.as_tensor(out[0] if isinstance(out, list) else out)
        errors[name] = (out - expected).abs().max().item()
        cands[name] = fn
        log(f"built {name}" + (f" (compiled in {compile_s[name]:.1f} s)" if compiled else ""))

    add("torchvision eager", lambda: tv(x))
    plain = optimize(ours, "infer", "cpu", compile=False, fold_bn=False, channels_last=False)
    add("ours eager", lambda: plain(x))
    folded = optimize(ours, "infer", "cpu", compile=False, channels_last=False)
    add("+ BN folded into the convs", lambda: folded(x))
    cl = optimize(ours, "infer", "cpu", compile=False)
    add("+ channels_last", lambda: cl(x_cl))
    if not args.no_compile:
        compiled = optimize(ours, "infer", "cpu", compile=True, compile_mode="default", freeze=False)
        add("+ torch.compile (inductor)", lambda: compiled(x_cl), compiled=True)
        torch._dynamo.reset()
        # freezing in the options too: it makes this a different backend for dynamo, whose cache
        # would otherwise hand back the unfrozen graph compiled above for the same architecture.
        frozen = torch.compile(
            fold_bn(ours).to(memory_format=torch.channels_last), options={"freezing": True}
        )

        def frozen_call() -> torch.Tensor:
            with torch._inductor.config.patch(freezing=True):
                return frozen(x_cl)

        add("+ freezing (oneDNN prepacked weights, fused ReLU/add)", frozen_call, compiled=True)
        torch._dynamo.reset()
        inductor = optimize(ours, "infer", "cpu", compile=True, compile_mode="default")
        add("+ C++ wrapper: optimize(compile_mode='default')", lambda: inductor(x_cl), compiled=True)
        fast = optimize(ours, "infer", "cpu")
        assert fast.config.compile_mode == "onednn-graph"
        add(
            "oneDNN Graph instead = ours, the default: optimize(model, 'infer', 'cpu')",
            lambda: fast(x_cl),
            compiled=True,
        )
    if not args.no_onnxruntime:
        workdir = tempfile.mkdtemp(prefix="resnets-cpu-infer-")
        path = os.path.join(workdir, f"{args.model}.onnx")
        export_onnx(tv, x, path)
        session = onnx_session(path)
        name, array = session.get_inputs()[0].name, x.numpy()
        add("onnxruntime (torchvision's ONNX export)", lambda: session.run(None, {name: array}))
        if not args.no_int8:
            # What `resnets export --int8` writes (the same export and quantize()), calibrated on
            # random inputs like bench's INT8 peer: this table measures speed, not accuracy.
            ours_fp32 = os.path.join(workdir, f"{args.model}-ours.onnx")
            int8_path = os.path.join(workdir, f"{args.model}-int8.onnx")
            export_onnx(ours, x, ours_fp32)
            generator = torch.Generator().manual_seed(1)
            calibration = [torch.randn(x.shape, generator=generator) for _ in range(INT8_CALIBRATION_BATCHES)]
            start = time.perf_counter()
            quantize(ours_fp32, int8_path, calibration, batch=None)
            log(f"quantized in {time.perf_counter() - start:.1f} s")
            int8 = onnx_session(int8_path)
            add(
                "onnxruntime INT8 (our export --int8: QDQ, per-channel)",
                lambda: int8.run(None, {name: array}),
            )
    if args.alternatives:
        with torch.no_grad():
            traced = torch.jit.trace(fold_bn(ours).to(memory_format=torch.channels_last), x_cl)
            script = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        add("alt: torch.jit.freeze + optimize_for_inference", lambda: script(x_cl))
        from torch.utils import mkldnn

        blocked = mkldnn.to_mkldnn(fold_bn(ours))
        add(
            "alt: torch.utils.mkldnn blocked layout",
            lambda: blocked.forward_head(blocked.forward_features(x.to_mkldnn()).to_dense()),
        )

        def inference_mode() -> torch.Tensor:
            with torch.inference_mode():
                return cl(x_cl)

        add("alt: channels_last under inference_mode", inference_mode)
    return cands, compile_s, errors


def time_round_robin(cands: dict[str, Candidate], rounds: int, per_round: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cands}
    with torch.no_grad():
        for fn in cands.values():
            for _ in range(3):
                fn()
        for r in range(rounds):
            for name, fn in cands.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - start) * 1000)
            if (r + 1) % max(1, rounds // 5) == 0:
                log(f"round {r + 1}/{rounds}")
    return times


def load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def markdown(data: dict[str, Any]) -> str:
    env, s = data["environment"], data["settings"]
    rows = data["rows"]
    ort = rows.get("onnxruntime (torchvision's ONNX export)", {}).get("median_ms")
    tv = rows["torchvision eager"]["median_ms"]
    lines = [
        f"### {s['model']}, batch {s['batch_size']}, {s['input_size']} px, fp32 inference, {env['cpu']}",
        "",
        f"torch {env['torch']}, torchvision {env['torchvision']}, onnxruntime {env.get('onnxruntime')}, "
        f"{env['threads']} threads; {s['rounds']} rounds x {s['per_round']} calls each, round-robin; "
        f"load average before/after {env['load_before']} / {env['load_after']}; {data['date']}",
        "",
        "| | median ms | best ms | vs previous | torchvision eager / this | onnxruntime / this | compile s | max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    previous = None
    for name, r in rows.items():
        ms = r["median_ms"]
        step = f"{previous / ms:.2f}x" if previous and not name.startswith(("onnxruntime", "alt:")) else ""
        vs_ort = f"{ort / ms:.2f}x" if ort else "-"
        compiled = f"{r['compile_s']:.1f}" if r.get("compile_s") else ""
        lines.append(
            f"| {name} | {ms:.1f} | {r['best_ms']:.1f} | {step} | {tv / ms:.2f}x | {vs_ort} | {compiled} | "
            f"{r['max_abs_diff']:.1e} |"
        )
        if not name.startswith(("onnxruntime", "alt:")):
            previous = ms
    lines += ["", f"Script wall time: {data['elapsed_s']:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", default=os.environ.get("RESNETS_BENCH_OUT"), help="JSON path (default: $RESNETS_BENCH_OUT)"
    )
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--per-round", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-onnxruntime", action="store_true")
    p.add_argument("--no-int8", action="store_true", help="skip the onnxruntime INT8 row")
    p.add_argument(
        "--alternatives", action="store_true", help="also time TorchScript freezing, mkldnn, inference_mode"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_before = load_average()
    cands, compile_s, errors = build_candidates(args)
    times = time_round_robin(cands, args.rounds, args.per_round)
    import torchvision

    env: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "load_before": load_before,
        "load_after": load_average(),
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    data: dict[str, Any] = {
        "suite": "cpu_infer",
        "command": " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": {
            name: {
                "median_ms": statistics.median(t),
                "best_ms": min(t),
                "compile_s": compile_s.get(name),
                "max_abs_diff": errors[name],
            }
            for name, t in times.items()
        },
        "elapsed_s": time.perf_counter() - start,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(data, f, indent=2)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
            f.write(markdown(data) + "\n")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
