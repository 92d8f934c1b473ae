"""The jobs the gate sandbox runs: each turns copies of verified bytes into a gate's answer.

This module runs only inside the sandbox child (`python -m workers.sandbox.jobs`).
It reads its inputs from the job directory, never from the registry, and holds
nothing it could leak: the worker gave it the bytes and the policy, no more.
"""

from __future__ import annotations

import sys
from pathlib import Path

from controlplane.errors import InvalidInput
from workers.sandbox.protocol import serve

MODEL, PRODUCTION, GOLDEN, PROGRAM = "model.onnx", "production.onnx", "golden.npz", "program.pt2"
CONVERTED, INT8 = "converted.onnx", "int8.onnx"


def _read(job_dir: Path, name: str) -> bytes:
    return (job_dir / name).read_bytes()


def _self_contained(model_bytes: bytes) -> bytes:
    # Checked at ingest too; again here because a derived model is made by another job.
    from registry.onnx_graph import refuse_external_data

    refuse_external_data(model_bytes)
    return model_bytes


def validation(job_dir: Path, params: dict) -> dict:
    from workers.gates.validation import run_validation

    try:
        model = _self_contained(_read(job_dir, MODEL))
    except InvalidInput as exc:
        return {"outcome": {"gate": "validation", "verdict": "fail", "summary": exc.detail,
                            "evidence": {"code": exc.code}}}
    outcome = run_validation(model, declared_signature=params.get("declared_signature"), policy=params["policy"])
    return {"outcome": outcome.to_dict()}


def convert_pt2(job_dir: Path, params: dict) -> dict:
    from workers.gates.conversion import convert_pt2_to_onnx

    try:
        onnx_bytes, parity = convert_pt2_to_onnx(_read(job_dir, PROGRAM), parity_atol=params["parity_atol"])
    except InvalidInput as exc:
        if exc.code != "conversion_parity_failed":
            raise
        return {"parity_failed": True, "parity": {"summary": exc.detail, **exc.context}}
    (job_dir / "out" / CONVERTED).write_bytes(onnx_bytes)
    return {"parity_failed": False, "parity": parity}


def quantization(job_dir: Path, params: dict) -> dict:
    from workers.gates.loading import parse_golden_set
    from workers.gates.quantization import quantize_int8

    model = _self_contained(_read(job_dir, MODEL))
    result = quantize_int8(model, parse_golden_set(_read(job_dir, GOLDEN)), params["policy"])
    if result.int8_bytes is not None:
        (job_dir / "out" / INT8).write_bytes(result.int8_bytes)
    return {"outcome": result.outcome.to_dict()}


def golden_set(job_dir: Path, params: dict) -> dict:
    from workers.gates.golden import evaluate_golden_set
    from workers.gates.loading import parse_golden_set

    model = _self_contained(_read(job_dir, MODEL))
    production = _self_contained(_read(job_dir, PRODUCTION)) if (job_dir / PRODUCTION).exists() else None
    outcome = evaluate_golden_set(model, parse_golden_set(_read(job_dir, GOLDEN)), production_bytes=production,
                                  policy=params["policy"])
    return {"outcome": outcome.to_dict()}


JOBS = {"validation": validation, "convert_pt2": convert_pt2, "quantization": quantization, "golden_set": golden_set}

if __name__ == "__main__":
    sys.exit(serve(JOBS))
