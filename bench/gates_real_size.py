"""The gates on real-size ImageNet models: each gate's wall time and peak memory, and golden-set throughput vs raw.

Builds ResNet-50, MobileNetV2 and EfficientNet-B0 (bench/vision_models.py,
random weights), exports them to ONNX, makes a 224x224 golden set labelled by
the model itself, and runs validation, int8 quantization and the golden-set
gate exactly as the sandbox child runs them (a job directory, `request.json`,
`workers.sandbox.protocol.serve`), in this process, without the sandbox's
isolation. The golden-set gate's images/s (the whole job: reading the files,
opening the session, inference, metrics, the JSON answer) is compared with raw
onnxruntime `session.run` over the same images, with the same session options,
providers and batch size, the two interleaved in the same run. The same job is
also timed in a fresh `python -m workers.sandbox.jobs` child, as the worker
starts it (without bubblewrap and prlimit): that adds the interpreter, the
imports and, on a GPU, a CUDA context, which the in-process figures share with
the raw session.

Imports only numpy, torch, onnx, onnxruntime and mlcp's plain-Python gate
modules (no Django), so it runs on a GPU machine with onnxruntime-gpu alone.
Run: .venv/bin/python bench/gates_real_size.py [--models resnet50,mobilenetv2] [--golden-size 256]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from bench import vision_models  # noqa: E402
from bench.machine import describe_machine  # noqa: E402
from registry.golden_sets import MAX_TOTAL_BYTES  # noqa: E402
from workers.gates.loading import preferred_providers, session_options  # noqa: E402
from workers.gates.measurement import track_peak_memory  # noqa: E402
from workers.gates.policy import resolve_gate_policy  # noqa: E402
from workers.sandbox import jobs  # noqa: E402
from workers.sandbox.protocol import REQUEST, RESULT, serve  # noqa: E402

GATES = ("validation", "quantization", "golden_set")
GOAL_RATIO = 0.9  # issue 13: the whole golden-set gate against raw onnxruntime (warm) on the same model and data
# The worker's default cap on a sandbox answer (MLCP_SANDBOX_RESULT_MAX_BYTES); an answer over it is a gate error.
SANDBOX_RESULT_CAP = 4 * 1024**2
IMAGE_BYTES = int(np.prod(vision_models.IMAGE_SHAPE)) * 4


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ model and golden set


def export_model(name: str, directory: Path) -> bytes:
    """The architecture with batch-norm statistics from random images, as ONNX with a dynamic batch."""
    model = vision_models.build(name)
    generator = torch.Generator().manual_seed(1)
    vision_models.calibrate_batch_norm(model, torch.randn(16, *vision_models.IMAGE_SHAPE, generator=generator))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: seconds instead of the dynamo exporter's tens of seconds for
        # ResNet-50, and it needs no onnxscript, which GPU images often lack.
        torch.onnx.export(
            model, (torch.zeros(1, *vision_models.IMAGE_SHAPE),), buffer, input_names=["input"],
            output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    model_bytes = buffer.getvalue()
    (directory / f"{name}.onnx").write_bytes(model_bytes)
    return model_bytes


def golden_images(count: int) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((count, *vision_models.IMAGE_SHAPE), dtype=np.float32)


def golden_set_npz(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The .npz the registry accepts: float32 `inputs`, integer `labels`, string `class_names` (no pickle)."""
    buffer = io.BytesIO()
    names = np.array([f"class_{index:03d}" for index in range(vision_models.NUM_CLASSES)])
    np.savez(buffer, inputs=images, labels=labels.astype(np.int64), class_names=names)
    return buffer.getvalue()


# ------------------------------------------------------------------ raw onnxruntime


class RawRunner:
    """Plain onnxruntime over the gate's session options, providers and batch size: the baseline."""

    def __init__(self, model_bytes: bytes, images: np.ndarray, batch_size: int):
        self.session = ort.InferenceSession(
            model_bytes, sess_options=session_options(), providers=preferred_providers()
        )
        self.input_name = self.session.get_inputs()[0].name
        self.batch_size = batch_size
        self.batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]

    @property
    def device(self) -> str:
        return self.session.get_providers()[0]

    def logits(self) -> np.ndarray:
        return np.concatenate([self.session.run(None, {self.input_name: batch})[0] for batch in self.batches])


# ------------------------------------------------------------------ gates, as the sandbox runs them


def run_job(job_dir: Path, job: str, params: dict) -> tuple[dict, float, int]:
    """(the job's answer, wall seconds, answer size in bytes) of one sandbox job run in this process."""
    (job_dir / "out").mkdir(exist_ok=True)
    (job_dir / REQUEST).write_text(json.dumps({"job": job, "params": params}))
    previous = os.getcwd()
    os.chdir(job_dir)  # serve() works in the current directory, as in the sandbox
    try:
        started = time.perf_counter()
        serve(jobs.JOBS)
        seconds = time.perf_counter() - started
    finally:
        os.chdir(previous)
    answer_bytes = (job_dir / RESULT).read_bytes()
    return json.loads(answer_bytes), seconds, len(answer_bytes)


def run_job_in_child(job_dir: Path, job: str, params: dict) -> tuple[dict, float, int]:
    """(answer, wall seconds, the child's peak RSS) of the job in a fresh `python -m workers.sandbox.jobs`.

    What the worker waits for, interpreter start, imports and (on a GPU) the CUDA context included;
    only bubblewrap and prlimit are left out.
    """
    (job_dir / "out").mkdir(exist_ok=True)
    (job_dir / REQUEST).write_text(json.dumps({"job": job, "params": params}))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT),
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(job_dir), "LANG": "C.UTF-8"}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "workers.sandbox.jobs"], cwd=job_dir, env=env,
                             stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, peak RSS included
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    return json.loads((job_dir / RESULT).read_bytes()), seconds, usage.ru_maxrss * 1024


def run_gate(job_dir: Path, gate: str, policy: dict) -> dict:
    """One gate's figures: verdict, summary, provider, wall time, peak memory and the gate's own timings."""
    with track_peak_memory() as memory:
        answer, seconds, answer_size = run_job(job_dir, gate, {"policy": policy})
    outcome = answer.get("outcome") or {}
    return {
        "ok": answer["ok"],
        "verdict": outcome.get("verdict", "error"),
        "summary": outcome.get("summary") or answer.get("detail", ""),
        "device": outcome.get("device", ""),
        "wall_s": seconds,
        "rss_peak_delta_bytes": memory.rss_peak_delta_bytes,
        "cuda_used_delta_bytes": memory.cuda_used_delta_bytes,
        "timings": outcome.get("timings", {}),
        "metrics": {k: v for k, v in (outcome.get("metrics") or {}).items() if not k.startswith("latency_b")},
        "latency_ms": (outcome.get("evidence") or {}).get("latency_ms"),
        "answer_bytes": answer_size,
    }


def golden_throughput(job_dir: Path, raw: RawRunner, model_bytes: bytes, images: np.ndarray, policy: dict,
                      repeats: int) -> dict:
    """Median images/s of the whole golden-set job and of raw onnxruntime, interleaved so load hits all alike.

    Two baselines: "raw", session.run on a session opened and warmed up beforehand (the goal's
    yardstick), and "raw_cold", a fresh session opened and run once, the least any job that loads
    the model itself can spend.
    """
    durations: dict[str, list[float]] = {"raw": [], "raw_cold": [], "gate": [], "gate_child": []}
    inference: list[float] = []
    for index in range(repeats):
        started = time.perf_counter()
        raw.logits()
        durations["raw"].append(time.perf_counter() - started)
        started = time.perf_counter()
        RawRunner(model_bytes, images, raw.batch_size).logits()
        durations["raw_cold"].append(time.perf_counter() - started)
        answer, seconds, _ = run_job(job_dir, "golden_set", {"policy": policy})
        durations["gate"].append(seconds)
        _, child_seconds, child_peak_rss = run_job_in_child(job_dir, "golden_set", {"policy": policy})
        durations["gate_child"].append(child_seconds)
        outcome = answer.get("outcome") or {}
        inference.append(outcome.get("timings", {}).get("inference_s", float("nan")))
        _progress(f"  pass {index + 1}/{repeats}: raw {durations['raw'][-1]:.2f} s, "
                  f"raw cold {durations['raw_cold'][-1]:.2f} s, gate {seconds:.2f} s, "
                  f"gate in a fresh process {durations['gate_child'][-1]:.2f} s")
    rates = {name: len(images) / statistics.median(times) for name, times in durations.items()}
    return {
        "raw_images_per_s": rates["raw"],
        "raw_cold_images_per_s": rates["raw_cold"],
        "gate_images_per_s": rates["gate"],
        "gate_child_images_per_s": rates["gate_child"],
        "gate_child_peak_rss_bytes": child_peak_rss,
        "gate_inference_images_per_s": len(images) / statistics.median(inference),
        "ratio": rates["gate"] / rates["raw"],
        "ratio_to_cold": rates["gate"] / rates["raw_cold"],
        "seconds": durations,
        "gate_device": outcome.get("device", ""),
        "gate_timings": outcome.get("timings", {}),
        "gate_inference_s": inference,
    }


def golden_breakdown(job_dir: Path, policy: dict) -> dict[str, float]:
    """Seconds of each step of the golden-set job, run one after the other as jobs.golden_set runs them."""
    from registry.onnx_graph import refuse_external_data
    from workers.gates.golden import evaluate_golden_set
    from workers.gates.loading import parse_golden_set
    from workers.sandbox.protocol import _jsonable

    steps: dict[str, float] = {}
    started = time.perf_counter()
    model_bytes, golden_bytes = (job_dir / jobs.MODEL).read_bytes(), (job_dir / jobs.GOLDEN).read_bytes()
    steps["read_files"] = time.perf_counter() - started
    started = time.perf_counter()
    refuse_external_data(model_bytes)
    steps["external_data_check"] = time.perf_counter() - started
    started = time.perf_counter()
    golden = parse_golden_set(golden_bytes)
    steps["parse_golden_set"] = time.perf_counter() - started
    started = time.perf_counter()
    outcome = evaluate_golden_set(model_bytes, golden, production_bytes=None, policy=policy)
    steps["evaluate_golden_set"] = time.perf_counter() - started
    steps.update({f"  {name}": value for name, value in outcome.timings.items() if name != "total_s"})
    started = time.perf_counter()
    answer = outcome.to_dict()
    steps["outcome_to_dict"] = time.perf_counter() - started
    started = time.perf_counter()
    json.dumps({"ok": True, "outcome": answer}, default=_jsonable)
    steps["answer_json"] = time.perf_counter() - started
    # What to_dict cost before it stopped using dataclasses.asdict, for the record.
    import dataclasses

    started = time.perf_counter()
    dataclasses.asdict(outcome)
    steps["(dataclasses.asdict, the former to_dict)"] = time.perf_counter() - started
    return steps


def bench_model(name: str, out: Path, golden_size: int, repeats: int, policy: dict, gates_to_run: list[str]) -> dict:
    job_dir = out / name
    job_dir.mkdir(parents=True, exist_ok=True)
    _progress(f"{name}: building and exporting to ONNX")
    model_bytes = export_model(name, out)
    (job_dir / jobs.MODEL).write_bytes(model_bytes)

    batch_size = policy["golden_set"]["batch_size"]
    images = golden_images(golden_size)
    raw = RawRunner(model_bytes, images, batch_size)
    _progress(f"{name}: labelling {golden_size} golden images with raw onnxruntime on {raw.device} (also the warm-up)")
    labels = raw.logits().argmax(axis=1)
    golden_bytes = golden_set_npz(images, labels)
    (job_dir / jobs.GOLDEN).write_bytes(golden_bytes)
    (out / f"{name}.golden.npz").write_bytes(golden_bytes)

    gates = {}
    for gate in gates_to_run:
        _progress(f"{name}: {gate} gate")
        gates[gate] = run_gate(job_dir, gate, policy)
        _progress(f"  {gates[gate]['verdict']} in {gates[gate]['wall_s']:.1f} s on {gates[gate]['device']}")
    _progress(f"{name}: golden-set gate vs raw onnxruntime, {repeats} interleaved passes")
    throughput = golden_throughput(job_dir, raw, model_bytes, images, policy, repeats)
    _progress(f"{name}: the golden-set job step by step")
    throughput["steps_s"] = golden_breakdown(job_dir, policy)
    return {
        "model": name,
        "parameters": vision_models.ARCHITECTURES[name][1],
        "onnx_bytes": len(model_bytes),
        "golden_images": golden_size,
        "golden_npz_bytes": len(golden_bytes),
        "distinct_labels": int(len(np.unique(labels))),
        "batch_size": batch_size,
        "raw_device": raw.device,
        "gates": gates,
        "golden_throughput": throughput,
    }


# ------------------------------------------------------------------ report


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1024**2:,.0f} MiB"


def print_report(results: list[dict], args) -> None:
    print(f"machine:      {describe_machine()}")
    print(f"onnxruntime:  {ort.__version__}, providers {ort.get_available_providers()}; torch {torch.__version__}")
    print(f"golden set:   {args.golden_size} images 3x224x224 float32, labels = the fp32 model's own predictions")
    for result in results:
        print()
        print(f"== {result['model']}: {result['parameters'] / 1e6:.1f} M parameters, "
              f"ONNX {result['onnx_bytes'] / 1e6:.0f} MB, "
              f"golden .npz {result['golden_npz_bytes'] / 1e6:.0f} MB ({result['distinct_labels']} distinct labels)")
        print(f"   {'gate':<13}{'verdict':<9}{'provider':<24}{'wall':>9}{'peak RSS':>12}{'CUDA':>10}{'answer':>10}")
        for gate, figures in result["gates"].items():
            print(f"   {gate:<13}{figures['verdict']:<9}{figures['device'] or '-':<24}{figures['wall_s']:>8.1f}s"
                  f"{_mib(figures['rss_peak_delta_bytes']):>12}{_mib(figures['cuda_used_delta_bytes']):>10}"
                  f"{figures['answer_bytes'] / 1024:>8.0f}KiB")
            if figures["verdict"] != "pass":
                # A random-weights model can fairly fail a gate (a latency budget, int8's accuracy loss): say why.
                print(f"     why: {figures['summary']}")
            if figures["answer_bytes"] > SANDBOX_RESULT_CAP:
                print(f"   !! {gate}'s answer is over the sandbox's default {_mib(SANDBOX_RESULT_CAP)} cap")
        quantization = result["gates"].get("quantization")
        if quantization is None:
            pass
        elif quantization["verdict"] in ("pass", "fail"):
            metrics = quantization["metrics"]
            print(f"   int8: speed-up {metrics.get('speed_ratio', float('nan')):.2f}x (fp32 p50 / int8 p50), "
                  f"accuracy drop {metrics.get('accuracy_drop', float('nan')):.3f}, "
                  f"size {metrics.get('size_ratio', float('nan')):.2f}x")
        else:
            print(f"   int8: {quantization['summary']}")
        latency = result["gates"].get("validation", {}).get("latency_ms") or {}
        for batch, stats in latency.items():
            print(f"   validation latency batch {batch}: p50 {stats['p50_ms']:.1f} ms, p95 {stats['p95_ms']:.1f} ms")
        golden = result["golden_throughput"]
        timings = golden["gate_timings"]
        print(f"   golden set, batch {result['batch_size']}, median of {args.repeats} interleaved passes "
              f"(raw on {result['raw_device']}, gate on {golden['gate_device']}):")
        print(f"     raw session.run (warm): {golden['raw_images_per_s']:8.1f} images/s")
        print(f"     raw, fresh session:     {golden['raw_cold_images_per_s']:8.1f} images/s  (open + one pass)")
        print(f"     whole golden-set gate:  {golden['gate_images_per_s']:8.1f} images/s  ({golden['ratio']:.2f}x raw, "
              f"{golden['ratio_to_cold']:.2f}x the fresh session)")
        print(f"     gate in a fresh process:{golden['gate_child_images_per_s']:8.1f} images/s  "
              f"({golden['gate_child_images_per_s'] / golden['raw_images_per_s']:.2f}x raw; "
              f"python -m workers.sandbox.jobs, no bubblewrap/prlimit; its peak RSS "
              f"{_mib(golden['gate_child_peak_rss_bytes'])})")
        print("     the job step by step: " + ", ".join(f"{k.strip()} {v:.3f} s" for k, v in golden["steps_s"].items()))
        print(f"     gate's inference part:  {golden['gate_inference_images_per_s']:8.1f} images/s  "
              f"(session load {timings.get('load_s', float('nan')):.2f} s "
              f"of {timings.get('total_s', float('nan')):.2f} s)")
        print(f"     goal: the whole gate >= {GOAL_RATIO}x raw: {'met' if golden['ratio'] >= GOAL_RATIO else 'NOT met'} "
              f"({golden['ratio']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(vision_models.ARCHITECTURES),
                        help="comma-separated, from: " + ", ".join(vision_models.ARCHITECTURES))
    parser.add_argument("--golden-size", type=int, default=256, help="golden images (224x224)")
    parser.add_argument("--gates", default=",".join(GATES),
                        help="gates timed one by one (the golden-set comparison always runs): " + ", ".join(GATES))
    parser.add_argument("--repeats", type=int, default=3, help="interleaved golden-set passes, gate and raw")
    parser.add_argument("--out", type=Path, default=Path("data/bench/gates_real_size"),
                        help="where the ONNX files, golden sets, job directories and figures go")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in vision_models.ARCHITECTURES]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(vision_models.ARCHITECTURES)}")
    largest = (MAX_TOTAL_BYTES - 1024**2) // IMAGE_BYTES  # room left for labels and names
    if not 1 <= args.golden_size <= largest:
        parser.error(f"--golden-size must be 1..{largest}: the registry caps a golden set at {_mib(MAX_TOTAL_BYTES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    policy = resolve_gate_policy(None)
    _progress(f"machine: {describe_machine()}; providers {preferred_providers()}")
    gates_to_run = [g.strip() for g in args.gates.split(",") if g.strip()]
    if any(g not in GATES for g in gates_to_run):
        parser.error(f"--gates: choose from {list(GATES)}")
    results = [bench_model(name, args.out, args.golden_size, args.repeats, policy, gates_to_run) for name in models]
    print_report(results, args)
    figures = {"machine": describe_machine(), "onnxruntime": ort.__version__, "torch": torch.__version__,
               "providers": ort.get_available_providers(), "policy": policy, "results": results}
    (args.out / "gates_real_size.json").write_text(json.dumps(figures, indent=2, default=float))
    print(f"\nfigures: {args.out / 'gates_real_size.json'}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
