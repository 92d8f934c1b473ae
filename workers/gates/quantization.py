"""The quantization gate: an int8 version of the model, and proof of what it costs.

Static post-training quantization with onnxruntime (QDQ format, per-channel
weights), calibrated on the golden set's inputs; the int8 model is then scored
against its fp32 parent on the same golden set and timed with the same inputs.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from controlplane.errors import InvalidInput
from workers.gates.golden import classifier_scores, infer_golden_logits
from workers.gates.loading import GoldenSet, LoadedModel, open_session
from workers.gates.measurement import measure_latency
from workers.gates.outcome import GateOutcome

GATE = "quantization"
_CALIBRATION_BATCH = 32


@dataclasses.dataclass
class QuantizationResult:
    """The int8 model (None when quantization itself failed) and the gate's outcome on it."""

    int8_bytes: bytes | None
    outcome: GateOutcome


class _GoldenCalibrationReader(CalibrationDataReader):
    """Feeds the golden inputs to the calibrator, one batch per call."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch_size: int):
        self._batches = iter([{input_name: inputs[i : i + batch_size]} for i in range(0, len(inputs), batch_size)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantize_int8(model_bytes: bytes, golden: GoldenSet, policy: dict) -> QuantizationResult:
    """Quantize to int8 and judge the result against the fp32 parent on the golden set.

    Fails when overall accuracy drops more than `max_accuracy_drop` or any
    class's recall more than `max_class_recall_drop`; the size and speed
    ratios (int8 / fp32) are evidence, not criteria, since int8 can be slower
    on hardware without int8 kernels.
    """
    settings = policy["quantization"]
    started = time.perf_counter()
    try:
        parent = open_session(model_bytes)
        int8_bytes, preprocessed = _quantize(model_bytes, parent, golden)
        quantized_at = time.perf_counter()
        int8 = open_session(int8_bytes)
        comparison = _compare(parent, int8, golden, settings)
    except InvalidInput as exc:
        return QuantizationResult(None, GateOutcome.error(GATE, exc.detail, code=exc.code))
    except Exception as exc:  # the quantizer and onnxruntime raise many unrelated types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        summary = f"Quantization to int8 failed: {reason}."
        return QuantizationResult(None, GateOutcome.error(GATE, summary, code="quantization_failed"))
    comparison["evidence"].update(
        size_bytes={"fp32": len(model_bytes), "int8": len(int8_bytes)}, preprocessed=preprocessed
    )
    timings = {"quantize_s": quantized_at - started, "total_s": time.perf_counter() - started}
    outcome = _judge(comparison, len(int8_bytes) / len(model_bytes), settings, int8.device, timings)
    return QuantizationResult(int8_bytes, outcome)


def _quantize(model_bytes: bytes, parent: LoadedModel, golden: GoldenSet) -> tuple[bytes, bool]:
    # quantize_static only works on files; the directory goes whatever happens.
    with tempfile.TemporaryDirectory(prefix="mlcp-quantize-") as workdir:
        source, prepared, target = (Path(workdir) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(model_bytes)
        preprocessed = _preprocess(source, prepared)
        reader = _GoldenCalibrationReader(parent.input_name, golden.inputs, parent.batch_size_for(_CALIBRATION_BATCH))
        quantize_static(
            prepared if preprocessed else source,
            target,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        return target.read_bytes(), preprocessed


def _preprocess(source: Path, prepared: Path) -> bool:
    # Shape inference and BatchNorm folding make quantization both possible
    # for more ops and more accurate; a model the pre-processor cannot handle
    # is still worth quantizing as it is.
    try:
        quant_pre_process(source, prepared, skip_symbolic_shape=False)
        return True
    except Exception:
        return False


def _compare(parent: LoadedModel, int8: LoadedModel, golden: GoldenSet, settings: dict) -> dict:
    scores = {}
    for label, model in (("fp32", parent), ("int8", int8)):
        logits = infer_golden_logits(model, golden, batch_size=model.batch_size_for(64))
        scores[label] = classifier_scores(logits, golden.labels, len(golden.class_names), bins=10)
    batch = golden.inputs[: parent.batch_size_for(settings["latency_batch_size"])]
    latency = {
        label: measure_latency(
            model,
            {model.input_name: batch},
            warmup=settings["warmup_iterations"],
            iterations=settings["timed_iterations"],
        )
        for label, model in (("fp32", parent), ("int8", int8))
    }
    per_class = _per_class_deltas(scores["fp32"], scores["int8"], golden)
    evidence = {
        "accuracy": {"fp32": scores["fp32"].accuracy, "int8": scores["int8"].accuracy},
        "per_class": per_class,
        "latency_ms": latency,
        "latency_batch_size": len(batch),
        "format": "QDQ, per-channel int8 weights, int8 activations, MinMax calibration on the golden inputs",
    }
    return {"scores": scores, "latency": latency, "per_class": per_class, "evidence": evidence}


def _per_class_deltas(fp32, int8, golden: GoldenSet) -> list[dict]:
    rows = []
    for index, name in enumerate(golden.class_names):
        before, after = fp32.recall[index], int8.recall[index]
        drop = before - after if before is not None and after is not None else None
        rows.append({"index": index, "name": name, "fp32_recall": before, "int8_recall": after, "recall_drop": drop})
    return rows


def _judge(comparison: dict, size_ratio: float, settings: dict, device: str, timings: dict) -> GateOutcome:
    fp32, int8 = comparison["scores"]["fp32"], comparison["scores"]["int8"]
    accuracy_drop = fp32.accuracy - int8.accuracy
    speed_ratio = comparison["latency"]["fp32"]["p50_ms"] / comparison["latency"]["int8"]["p50_ms"]
    worst = max(
        (row for row in comparison["per_class"] if row["recall_drop"] is not None), key=lambda r: r["recall_drop"]
    )
    evidence = comparison["evidence"]
    evidence.update(size_ratio=size_ratio, speed_ratio=speed_ratio, accuracy_drop=accuracy_drop, worst_class=worst)
    metrics = {
        "size_ratio": size_ratio,
        "speed_ratio": speed_ratio,
        "accuracy_fp32": fp32.accuracy,
        "accuracy_int8": int8.accuracy,
        "accuracy_drop": accuracy_drop,
        "max_class_recall_drop": worst["recall_drop"],
    }
    if accuracy_drop > settings["max_accuracy_drop"]:
        verdict, summary = (
            "fail",
            (
                f"int8 loses {accuracy_drop:.1%} accuracy ({fp32.accuracy:.1%} to {int8.accuracy:.1%}), "
                f"over the {settings['max_accuracy_drop']:.1%} limit."
            ),
        )
    elif worst["recall_drop"] > settings["max_class_recall_drop"]:
        verdict, summary = (
            "fail",
            (
                f"int8 loses {worst['recall_drop']:.1%} recall on class {worst['index']} '{worst['name']}', "
                f"over the {settings['max_class_recall_drop']:.1%} per-class limit."
            ),
        )
    else:
        verdict, summary = (
            "pass",
            (
                f"int8 is {size_ratio:.0%} of the fp32 size and {speed_ratio:.2f}x its speed, "
                f"accuracy {int8.accuracy:.1%} vs {fp32.accuracy:.1%}, within the limits."
            ),
        )
    return GateOutcome(GATE, verdict, summary, metrics=metrics, evidence=evidence, device=device, timings=timings)
