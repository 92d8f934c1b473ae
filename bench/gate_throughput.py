"""Golden-set gate throughput against raw onnxruntime, same model, same data, same run.

Tells whether the gate's inference path (batching, output checks) or its full
evaluation (session load, metrics, verdict) costs anything beyond
`session.run` itself. Run: .venv/bin/python bench/gate_throughput.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from bench.machine import describe_machine  # noqa: E402
from devtools import reference_models  # noqa: E402
from workers.gates import evaluate_golden_set, open_session, parse_golden_set, resolve_gate_policy  # noqa: E402
from workers.gates.golden import infer_golden_logits  # noqa: E402
from workers.gates.loading import GoldenSet  # noqa: E402


def _enlarged(golden: GoldenSet, copies: int) -> GoldenSet:
    # 540 images run in milliseconds; repeating them gives timings above timer noise.
    return GoldenSet(
        np.concatenate([golden.inputs] * copies), np.concatenate([golden.labels] * copies), golden.class_names
    )


def _images_per_second(runs: dict, images: int, repeats: int) -> dict[str, float]:
    """Median images/s of each run, the runs interleaved so that load from
    elsewhere on the machine hits them all alike."""
    durations = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm up allocators and kernels outside the timing
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            durations[name].append(time.perf_counter() - started)
    return {name: images / statistics.median(times) for name, times in durations.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet", choices=reference_models.ARCHITECTURES)
    parser.add_argument("--copies", type=int, default=20, help="golden set repetitions per timed pass")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    model_bytes = reference_models.build_reference_model(args.arch).onnx_bytes
    golden = _enlarged(parse_golden_set(reference_models.golden_set_npz_bytes()), args.copies)
    policy = resolve_gate_policy(None)
    batch_size = policy["golden_set"]["batch_size"]

    gate_model = open_session(model_bytes)
    # Raw runs use the gate's own session: one thread pool, one set of options,
    # so the comparison is of the code path alone. Two sessions would have
    # their spinning intra-op threads compete for the cores.
    raw_session = gate_model.session
    raw_input = raw_session.get_inputs()[0].name
    batches = [golden.inputs[i : i + batch_size] for i in range(0, len(golden), batch_size)]

    def raw_run():
        for batch in batches:
            raw_session.run(None, {raw_input: batch})

    rates = _images_per_second(
        {
            "raw": raw_run,
            "inference": lambda: infer_golden_logits(gate_model, golden, batch_size=batch_size),
            "full_gate": lambda: evaluate_golden_set(model_bytes, golden, production_bytes=None, policy=policy),
        },
        len(golden),
        args.repeats,
    )
    raw, inference, full_gate = rates["raw"], rates["inference"], rates["full_gate"]

    print(f"machine:      {describe_machine()}")
    print(f"onnxruntime:  {ort.__version__}, providers {ort.get_available_providers()}, ran on {gate_model.device}")
    print(f"model:        {args.arch} reference, {len(model_bytes)} bytes")
    print(f"data:         {len(golden)} images, batch {batch_size}, median of {args.repeats} interleaved passes")
    print(f"raw session.run:                {raw:12,.0f} images/s")
    print(f"gate inference path:            {inference:12,.0f} images/s  ({inference / raw:.2f}x raw)")
    print(f"full evaluate_golden_set:       {full_gate:12,.0f} images/s  ({full_gate / raw:.2f}x raw)")
    print("(the full gate also opens its own session and computes every metric on each pass)")


if __name__ == "__main__":
    main()
