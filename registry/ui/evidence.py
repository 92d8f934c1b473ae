"""What each gate's stored evidence looks like on the version page: pictures first, then facts.

Reads the evidence dicts the gates write (workers/gates/{validation,quantization,golden}.py)
without importing the workers. Evidence from an older or crashed gate may lack
keys; such a gate is shown with its summary and raw evidence, never an error page.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
from dataclasses import dataclass, field

from django.utils.safestring import SafeString, mark_safe

from registry.models import GateResult
from registry.ui import charts

log = logging.getLogger(__name__)
_MAX_HEATMAP_CLASSES = 40


@dataclass
class Figure:
    title: str
    svg: SafeString
    caption: str = ""

    @property
    def width(self) -> int:
        """The chart's width in pixels, so its caption wraps to the chart rather than widening it."""
        found = re.search(r'<svg[^>]* width="(\d+)"', self.svg)
        return int(found.group(1)) if found else 640


@dataclass
class GatePanel:
    result: GateResult
    figures: list[Figure] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    table: dict | None = None
    raw: str = ""


def gate_panel(result: GateResult) -> GatePanel:
    """The figures and facts for one gate result; raw evidence only when its shape is unknown."""
    panel = GatePanel(result, raw=json.dumps(result.evidence, indent=2, sort_keys=True, default=str))
    draw = _DRAWERS.get(result.gate)
    if draw is None or result.verdict not in ("pass", "fail") or not result.evidence:
        return panel
    try:
        draw(result.evidence, panel)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError):
        log.warning("unexpected %s evidence on %s; showing it raw", result.gate, result.version_id, exc_info=True)
        panel.figures, panel.facts, panel.table = [], [], None
    return panel


def _svg(markup: str) -> SafeString:
    # charts.py escapes every piece of text it draws, so its output is safe markup.
    return mark_safe(markup)


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


# ------------------------------------------------------------- golden set

def _golden(evidence: dict, panel: GatePanel) -> None:
    names = evidence["class_names"]
    per_class = evidence["per_class"]
    recall = [c["recall"] for c in per_class]
    production = evidence.get("production")
    regressed = {c["index"]: c for c in (production or {}).get("regressed_classes", [])}
    floors = evidence.get("floors", {})
    panel.figures.append(Figure(
        "Recall per class" + (" vs production" if production else ""),
        _svg(charts.recall_chart(names, recall, production["recall"] if production else None,
                                 regressed=regressed, floor=floors.get("min_class_recall"))),
        ("Regressed classes (recall fell more than their limit against production) are drawn in red."
         if production else "No production version to compare with; the dashed line is the recall floor."),
    ))
    if len(names) <= _MAX_HEATMAP_CLASSES and "confusion_matrix" in evidence:
        panel.figures.append(Figure(
            "Confusion matrix", _svg(charts.confusion_heatmap(names, evidence["confusion_matrix"])),
            "Rows are the true class, columns the prediction; shade is the share of the true class. "
            "Blue is correct, red a mistake.",
        ))
    panel.facts += [("images", str(evidence["images"])), ("accuracy", _pct(evidence["accuracy"])),
                    ("calibration error (ECE)", f"{evidence['expected_calibration_error']:.3f}")]
    if production:
        test = production["mcnemar"]
        panel.facts += [
            ("production accuracy", _pct(production["accuracy"])
             + (f" (version {evidence['production_version']})" if evidence.get("production_version") else "")),
            ("McNemar exact p", (f"{test['p_value']:.3g} (α {test['alpha']:g}): "
                                 f"{test['candidate_only_wrong']} images only the candidate got wrong, "
                                 f"{test['candidate_only_right']} only it got right")),
        ]
    if evidence.get("golden_set"):
        panel.facts.append(("golden set", f"#{evidence['golden_set']}"))
    panel.problems = list(evidence.get("problems", []))
    prod_recall = production["recall"] if production else None
    panel.table = {
        "head": ["class", "support", "precision", "recall"] + (["production recall", "change"] if production else []),
        "rows": [
            {"flagged": c["index"] in regressed,
             "cells": [c["name"], c["support"], _pct(c["precision"]), _pct(c["recall"])]
             + ([_pct(prod_recall[c["index"]]), _change(c["recall"], prod_recall[c["index"]])] if production else [])}
            for c in per_class
        ],
    }
    top = _top_confusions(names, evidence)
    if top:
        panel.facts.append(("most frequent mistakes", "; ".join(top)))


def _change(after, before) -> str:
    if after is None or before is None:
        return "n/a"
    return f"{(after - before) * 100:+.1f} pts"


def _top_confusions(names, evidence: dict, limit: int = 5) -> list[str]:
    # `confusions` (the mistakes, most frequent first) since many-class sets stopped carrying the dense
    # matrix; outcomes stored before that have only `confusion_matrix`.
    if "confusions" in evidence:
        cells = [(i, j, count) for i, j, count in evidence["confusions"]]
    else:
        cells = [(i, j, count) for i, row in enumerate(evidence.get("confusion_matrix", []))
                 for j, count in enumerate(row)]
    # The sandbox's answer is checked for size and shape, not sense: a cell that names no class, or a right
    # answer, is not a mistake to show. Up to 4 MiB of cells: the top few without sorting them all.
    mistakes = [(i, j, count) for i, j, count in cells
                if all(type(v) is int for v in (i, j, count)) and i != j and count > 0
                and 0 <= i < len(names) and 0 <= j < len(names)]
    top = heapq.nsmallest(limit, mistakes, key=lambda cell: (-cell[2], cell[0], cell[1]))
    return [f"{names[i]} → {names[j]} ×{count}" for i, j, count in top]


# ------------------------------------------------------------- validation

def _validation(evidence: dict, panel: GatePanel) -> None:
    latency = evidence["latency_ms"]
    gated = evidence.get("latency_gated_batch_size")
    groups = [(f"batch {b}", latency[b]) for b in sorted(latency, key=int)]
    budget = evidence.get("latency_budget_p95_ms")
    panel.figures.append(Figure(
        "Latency by batch size",
        _svg(charts.latency_chart(groups, budget_ms=budget, budget_label=f"batch {gated}" if gated else "")),
        f"The p95 budget applies at batch {gated}." if gated else "",
    ))
    iterations = evidence.get("iterations", {})
    memory = evidence.get("memory", {})
    panel.facts += [
        ("timed iterations", f"{iterations.get('timed', '?')} after {iterations.get('warmup', '?')} warm-up"),
        ("peak memory increase", _bytes(memory.get("rss_peak_delta_bytes"))),
        ("inputs", _signature(evidence.get("signature", {}).get("inputs", []))),
        ("outputs", _signature(evidence.get("signature", {}).get("outputs", []))),
    ]
    if memory.get("cuda_used_delta_bytes") is not None:
        panel.facts.append(("GPU memory increase", _bytes(memory["cuda_used_delta_bytes"])))
    if evidence.get("converted_version"):
        panel.facts.append(("converted to ONNX as", f"version {evidence['converted_version']}"))
    panel.problems = list(evidence.get("signature_mismatches", []))
    panel.table = {
        "head": ["batch", "p50", "p95", "p99", "mean"],
        "rows": [{"flagged": False, "cells": [label.removeprefix("batch ")]
                  + [f"{stats.get(k, 0):.3f} ms" for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")]}
                 for label, stats in groups],
    }


def _signature(tensors) -> str:
    def dims(shape):
        return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"

    return ", ".join(f"{t['name']} {t.get('dtype')} {dims(t.get('shape', []))}" for t in tensors) or "n/a"


def _bytes(value) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


# ----------------------------------------------------------- quantization

def _quantization(evidence: dict, panel: GatePanel) -> None:
    per_class = evidence["per_class"]
    names = [c["name"] for c in per_class]
    deltas = [None if c["recall_drop"] is None else -c["recall_drop"] for c in per_class]
    panel.figures.append(Figure(
        "Recall change per class, int8 vs fp32", _svg(charts.delta_chart(names, deltas)),
        "Left of the line the int8 model lost recall on that class; right, it gained.",
    ))
    latency = evidence.get("latency_ms", {})
    if latency:
        panel.figures.append(Figure(
            f"Latency fp32 vs int8 at batch {evidence.get('latency_batch_size', '?')}",
            _svg(charts.latency_chart([(label, latency[label]) for label in ("fp32", "int8") if label in latency])),
        ))
    accuracy, size = evidence["accuracy"], evidence.get("size_bytes", {})
    panel.facts += [
        ("accuracy", (f"fp32 {_pct(accuracy['fp32'])}, int8 {_pct(accuracy['int8'])} "
                      f"(change {_change(accuracy['int8'], accuracy['fp32'])})")),
        ("size", f"{_bytes(size.get('fp32'))} → {_bytes(size.get('int8'))} ({evidence['size_ratio']:.0%})"),
        ("speed (fp32 p50 / int8 p50)", f"{evidence['speed_ratio']:.2f}×"),
        ("format", evidence.get("format", "")),
    ]
    if evidence.get("derived_version"):
        panel.facts.append(("int8 registered as", f"version {evidence['derived_version']}"))
    panel.table = {
        "head": ["class", "fp32 recall", "int8 recall", "change"],
        "rows": [{"flagged": (c["recall_drop"] or 0) > 0,
                  "cells": [c["name"], _pct(c["fp32_recall"]), _pct(c["int8_recall"]),
                            _change(c["int8_recall"], c["fp32_recall"])]} for c in per_class],
    }


_DRAWERS = {"golden_set": _golden, "validation": _validation, "quantization": _quantization}
