"""The validation gate: is this ONNX model well-formed, as declared, and fast enough?

Checks the graph (onnx.checker with shape inference), loads it on the best
provider, compares the declared signature with the real one, and measures
load time, latency percentiles per batch size and peak memory.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnx

from controlplane.errors import InvalidInput
from workers.gates.conversion import convert_pt2_to_onnx
from workers.gates.loading import LoadedModel, open_session
from workers.gates.measurement import (
    UnmeasurableModel,
    measure_latency,
    numpy_dtype,
    synthetic_feed,
    track_peak_memory,
)
from workers.gates.outcome import GateOutcome

__all__ = ["convert_pt2_to_onnx", "graph_signature", "run_validation"]

GATE = "validation"


def run_validation(model_bytes: bytes, *, declared_signature: dict | None, policy: dict) -> GateOutcome:
    """Validate an ONNX model against its declared signature and the policy's latency budget.

    `declared_signature` is {"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}
    with numpy dtype names and None (or a name) for dynamic dimensions; None
    skips the comparison. `policy` is a resolved gate policy.
    Fails on a signature mismatch or a batch-1 p95 above the budget; errors
    when the model cannot be checked, loaded or run.
    """
    settings = policy["validation"]
    started = time.perf_counter()
    try:
        _check_graph(model_bytes)
    except InvalidInput as exc:
        return GateOutcome.error(GATE, exc.detail, code=exc.code)
    checked = time.perf_counter()

    with track_peak_memory() as memory:
        try:
            model = open_session(model_bytes)
            actual = graph_signature(model)
            mismatches = signature_mismatches(declared_signature, actual) if declared_signature else []
            latency = _latency_by_batch(model, settings, declared_signature)
        except InvalidInput as exc:
            return GateOutcome.error(GATE, exc.detail, code=exc.code)
        except UnmeasurableModel as exc:
            return GateOutcome.error(GATE, f"The model cannot be benchmarked: {exc}.", code="unmeasurable_model")
        except Exception as exc:  # onnxruntime raises its own types at run time
            return GateOutcome.error(
                GATE, f"The model failed while running: {str(exc).splitlines()[0]}.", code="run_failed"
            )

    timings = {"check_s": checked - started, "load_s": model.load_seconds, "total_s": time.perf_counter() - started}
    return _outcome(model, actual, declared_signature, mismatches, latency, memory.as_evidence(), settings, timings)


def _check_graph(model_bytes: bytes) -> None:
    try:
        proto = onnx.load_model_from_string(model_bytes)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise InvalidInput(
            f"The artifact is not an ONNX model: it does not parse as an ONNX protobuf ({type(exc).__name__}).",
            code="malformed_onnx",
        ) from exc
    if not proto.graph.node and not proto.graph.output:
        # An empty byte string parses as an empty ModelProto; it is no model.
        raise InvalidInput("The artifact is not an ONNX model: it parses to an empty graph.", code="malformed_onnx")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise InvalidInput(
            f"The ONNX checker rejected the model: {str(exc).strip().splitlines()[0]}", code="onnx_check_failed"
        ) from exc


def graph_signature(model: LoadedModel) -> dict[str, list[dict[str, Any]]]:
    """The model's real inputs and outputs, in the declared-signature format."""

    def describe(nodes) -> list[dict[str, Any]]:
        return [
            {
                "name": node.name,
                "dtype": _dtype_name(node.type),
                "shape": [d if isinstance(d, int) else None for d in node.shape],
            }
            for node in nodes
        ]

    return {"inputs": describe(model.session.get_inputs()), "outputs": describe(model.session.get_outputs())}


def signature_mismatches(declared: dict, actual: dict) -> list[str]:
    """Every way the declared signature differs from the graph's, in words.

    A dimension declared dynamic must be dynamic in the graph; one declared
    fixed must match, or be dynamic (the graph accepts it).
    """
    problems = []
    for kind in ("inputs", "outputs"):
        if kind not in declared:
            continue
        want, have = declared[kind], actual[kind]
        if [t.get("name") for t in want] != [t["name"] for t in have]:
            problems.append(f"{kind} are {[t['name'] for t in have]}, declared {[t.get('name') for t in want]}")
            continue
        for wanted, real in zip(want, have):
            problems.extend(_tensor_mismatches(kind[:-1], wanted, real))
    return problems


def _tensor_mismatches(kind: str, wanted: dict, real: dict) -> list[str]:
    label = f"{kind} {real['name']!r}"
    problems = []
    if wanted.get("dtype") and _normalized_dtype(wanted["dtype"]) != real["dtype"]:
        problems.append(f"{label} has dtype {real['dtype']}, declared {wanted['dtype']}")
    shape = wanted.get("shape")
    if shape is None:
        return problems
    if len(shape) != len(real["shape"]):
        return problems + [f"{label} has rank {len(real['shape'])}, declared {len(shape)}"]
    for index, (declared_dim, real_dim) in enumerate(zip(shape, real["shape"])):
        # A dynamic graph dimension accepts whatever was declared; a fixed one must be declared as that size.
        if real_dim is not None and declared_dim != real_dim:
            declared_as = declared_dim if isinstance(declared_dim, int) else "dynamic"
            problems.append(f"{label} dimension {index} is {real_dim}, declared {declared_as}")
    return problems


def _latency_by_batch(model: LoadedModel, settings: dict, declared: dict | None) -> dict[str, dict[str, float]]:
    declared_dims = {t.get("name"): t.get("shape") for t in (declared or {}).get("inputs", [])}
    latency = {}
    for batch_size in settings["batch_sizes"]:
        feed = synthetic_feed(model, batch_size, fixed_dims=declared_dims)
        latency[str(batch_size)] = measure_latency(
            model, feed, warmup=settings["warmup_iterations"], iterations=settings["timed_iterations"]
        )
    return latency


def _outcome(model, actual, declared, mismatches, latency, memory, settings, timings) -> GateOutcome:
    budget = settings["latency_budget_p95_ms"]
    gated_batch = str(min(settings["batch_sizes"]))
    p95 = latency[gated_batch]["p95_ms"]
    metrics = {f"latency_b{b}_{k}": v for b, stats in latency.items() for k, v in stats.items()}
    metrics.update(load_s=model.load_seconds, rss_peak_delta_bytes=float(memory["rss_peak_delta_bytes"]))
    evidence = {
        "signature": actual,
        "declared_signature": declared,
        "signature_mismatches": mismatches,
        "latency_ms": latency,
        "latency_budget_p95_ms": budget,
        "latency_gated_batch_size": int(gated_batch),
        "iterations": {"warmup": settings["warmup_iterations"], "timed": settings["timed_iterations"]},
        "memory": memory,
    }
    if mismatches:
        verdict, summary = "fail", f"The model does not match its declared signature: {mismatches[0]}."
    elif p95 > budget:
        verdict, summary = "fail", f"p95 latency at batch {gated_batch} is {p95:.2f} ms, over the {budget:g} ms budget."
    else:
        verdict = "pass"
        summary = (
            f"Valid ONNX, matches its signature, p95 latency at batch {gated_batch} is {p95:.2f} ms "
            f"(budget {budget:g} ms) on {model.device}."
        )
    return GateOutcome(GATE, verdict, summary, metrics=metrics, evidence=evidence, device=model.device, timings=timings)


def _dtype_name(ort_type: str) -> str | None:
    try:
        return np.dtype(numpy_dtype(ort_type)).name
    except UnmeasurableModel:
        return None


def _normalized_dtype(name: str) -> str:
    # numpy spellings ("f4", "float32") compare equal; an unknown name stays as written and mismatches.
    try:
        return np.dtype(name).name
    except TypeError:
        return str(name)
