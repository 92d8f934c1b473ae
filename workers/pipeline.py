"""The gate pipeline: which gate runs next for a version, and what its verdict does.

`run_gate` is the one domain function a Celery task calls. It is idempotent:
a gate that already has a verdict is not run again, so a redelivered task
(a worker killed mid-gate) converges on one result per gate per version.
Every gate first verifies the artifact, then hands exactly the verified bytes
to the sandbox (`workers.sandbox`): nothing uploaded is parsed or run here.
"""

import logging
import time
import traceback
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from controlplane.errors import InvalidInput, MlcpError
from registry import services
from registry.choices import ArtifactFormat, VersionStatus
from registry.gate_verdicts import DECIDED, GateVerdict
from registry.models import GateResult, ModelVersion
from workers.gates.outcome import GateOutcome, shallow_json
from workers.gates.policy import resolve_gate_policy
from workers.gates.pt2_archive import safe_pt2_archive
from workers.sandbox import jobs
from workers.sandbox.isolation import isolation_in_force
from workers.sandbox.runner import run_job

log = logging.getLogger(__name__)
INT8_DERIVATION = "int8-static-qdq"
CONVERTED_DERIVATION = "onnx-from-pt2"
# Infrastructure faults: the task retries them; they are never a gate's verdict.
TRANSIENT = (DatabaseError, ConnectionError, TimeoutError)


def gates_for(version: ModelVersion, policy: dict) -> list[str]:
    """The policy's gates; a derived int8 version is not quantized again.

    A .pt2 program only goes through validation, which converts it to ONNX
    and registers the conversion as a derived version: that ONNX version,
    the artifact that ships, carries the remaining gates.
    """
    if version.format == ArtifactFormat.TORCH_EXPORT:
        return ["validation"] if "validation" in policy["gates"] else []
    gates = list(policy["gates"])
    if version.derivation == INT8_DERIVATION and "quantization" in gates:
        gates.remove("quantization")
    return gates


def start_pipeline(version: ModelVersion, *, actor="gate-pipeline") -> list[str]:
    """Move a registered version to `gating` and create one pending row per gate."""
    policy = resolve_gate_policy(version.model.gate_policy)
    gates = gates_for(version, policy)
    with transaction.atomic():
        if version.status != VersionStatus.GATING:
            services.transition_version(version, VersionStatus.GATING, actor=actor, reason=f"gates: {', '.join(gates)}")
        for position, gate in enumerate(gates):
            GateResult.objects.get_or_create(version=version, gate=gate, defaults={"position": position})
        # A re-run after an error runs the errored gate again; decided gates keep their verdicts.
        for errored in GateResult.objects.filter(version=version, verdict=GateVerdict.ERROR):
            services.transition_gate(errored, GateVerdict.PENDING)
    return gates


def next_gate(version: ModelVersion) -> str | None:
    pending = version.gate_results.exclude(verdict__in=DECIDED).order_by("position").first()
    return pending.gate if pending else None


def run_gate(version_id: int, gate: str) -> GateResult | None:
    """Run one gate on one version (or return its existing verdict) and store the outcome.

    Each delivery is counted before the gate runs; a gate whose worker died
    `MLCP_GATE_MAX_DELIVERIES` times (a poison pill) is an error, not run again.
    Database and broker errors propagate, for the task to retry.
    """
    version = ModelVersion.objects.select_related("model", "blob").filter(pk=version_id).first()
    if version is None:
        log.warning("version %s is gone; gate %s not run", version_id, gate)
        return None
    result = GateResult.objects.get(version=version, gate=gate)
    if result.verdict not in (GateVerdict.PENDING, GateVerdict.RUNNING):
        return result  # decided, or errored and waiting for the gates to be re-run
    limit = settings.MLCP_GATE_MAX_DELIVERIES
    if result.verdict == GateVerdict.RUNNING and result.attempts >= limit:
        return record_outcome(result, GateOutcome.error(
            gate, f"{gate} was delivered {result.attempts} times and its worker died each time; "
                  "not running it again (re-run the gates to try once more)", code="worker_crashed"))
    if not services.transition_gate(result, GateVerdict.RUNNING, started_at=timezone.now(),
                                    attempts=result.attempts + 1):
        log.info("gate %s of %s was claimed by another delivery; not running it twice", gate, version)
        return GateResult.objects.get(pk=result.pk)
    policy = resolve_gate_policy(version.model.gate_policy)
    started = time.monotonic()
    try:
        model_bytes = services.read_verified_artifact(version)
        outcome = GATES[gate](version, model_bytes, policy)
    except TRANSIENT:
        raise
    except MlcpError as exc:
        outcome = GateOutcome.error(gate, f"{gate} could not run: {exc.detail}", code=exc.code, **exc.context)
    except Exception as exc:  # a gate bug must show as an error, never as a pass
        outcome = GateOutcome.error(gate, f"{gate} crashed: {type(exc).__name__}: {exc}",
                                    traceback=traceback.format_exc(limit=5))
    outcome.timings.setdefault("total_s", round(time.monotonic() - started, 4))
    if not outcome.isolation:
        outcome.isolation = isolation_in_force().name
    return record_outcome(result, outcome)


def record_time_limit(version_id: int, gate: str) -> GateResult:
    """The gate ran past its time limit: an error verdict, unless another delivery has decided it since."""
    result = GateResult.objects.get(version_id=version_id, gate=gate)
    if result.verdict != GateVerdict.RUNNING:
        return result
    return record_outcome(result, GateOutcome.error(gate, f"{gate} exceeded its time limit", code="time_limit"))


def record_outcome(result: GateResult, outcome: GateOutcome) -> GateResult:
    """Store the verdict of the delivery that claimed `result`; a later delivery that took it over wins instead."""
    recorded = services.transition_gate(
        result, outcome.verdict, summary=outcome.summary, metrics=outcome.metrics, evidence=outcome.evidence,
        device=outcome.device, timings=outcome.timings, isolation=outcome.isolation, finished_at=timezone.now())
    if not recorded:
        log.warning("gate %s of version %s was taken over by another delivery; its %s is not recorded",
                    result.gate, result.version_id, outcome.verdict)
    return GateResult.objects.get(pk=result.pk)


def conclude(version_id: int) -> str | None:
    """After a gate: reject on a fail, send back on an error, await approval when all passed.

    Returns the next gate to run, or None when the pipeline is over.
    """
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    if version.status != VersionStatus.GATING:
        return None
    results = list(version.gate_results.order_by("position"))
    failed = next((r for r in results if r.verdict == GateVerdict.FAIL), None)
    errored = next((r for r in results if r.verdict == GateVerdict.ERROR), None)
    if failed:
        services.transition_version(version, VersionStatus.REJECTED, actor="gate-pipeline",
                                    reason=f"{failed.gate} gate failed: {failed.summary}", gate=failed.gate)
        return None
    if errored:
        services.transition_version(version, VersionStatus.REGISTERED, actor="gate-pipeline",
                                    reason=f"{errored.gate} gate errored: {errored.summary}", gate=errored.gate)
        return None
    upcoming = next_gate(version)
    if upcoming is None:
        services.transition_version(version, VersionStatus.AWAITING_APPROVAL, actor="gate-pipeline",
                                    reason="all gates passed")
    return upcoming


# ------------------------------------------------------------------ gates
# Each gate gathers verified bytes here, where the database and the keys are,
# and parses, converts or runs them only through `run_job` in the sandbox.

def _sandboxed_outcome(gate: str, job: str, inputs: dict[str, bytes], params: dict,
                       outputs: tuple[str, ...] = ()) -> tuple[GateOutcome, dict[str, bytes]]:
    answer = run_job(job, inputs=inputs, params=params, outputs=outputs)
    if not answer.result["ok"]:
        outcome = GateOutcome.error(gate, f"{gate} could not measure the model: {answer.result.get('detail', '')}",
                                    code=str(answer.result.get("code", "sandbox_job_failed"))[:64])
    else:
        outcome = GateOutcome.from_sandbox(gate, answer.result.get("outcome"))
    outcome.isolation = answer.isolation.name
    return outcome, answer.outputs


def _validation(version: ModelVersion, model_bytes: bytes, policy: dict) -> GateOutcome:
    declared = version.graph_info.get("declared_signature")
    params = {"declared_signature": declared, "policy": policy}
    if version.format != ArtifactFormat.TORCH_EXPORT:
        return _sandboxed_outcome("validation", "validation", {jobs.MODEL: model_bytes}, params)[0]
    try:
        program = safe_pt2_archive(model_bytes)
    except InvalidInput as exc:
        # Not an error to retry: these bytes will never be loaded.
        return GateOutcome(gate="validation", verdict="fail", summary=f"Refused before loading: {exc.detail}",
                           evidence={"code": exc.code}, isolation="not loaded")
    converted, parity = _convert_pt2(version, program, policy)
    if converted is None:
        return GateOutcome(gate="validation", verdict="fail", summary=parity["summary"], evidence={"parity": parity})
    outcome = _sandboxed_outcome("validation", "validation",
                                 {jobs.MODEL: services.read_verified_artifact(converted)}, params)[0]
    outcome.evidence.update(parity=parity, converted_version=converted.number, converted_digest=converted.digest)
    outcome.summary = f"Converted to ONNX as {converted} with matching outputs. {outcome.summary}"
    return outcome


def _convert_pt2(version: ModelVersion, safe_program: bytes, policy: dict):
    """The registered ONNX conversion of a .pt2 version (made once), or (None, why) on a parity failure."""
    existing = ModelVersion.objects.filter(parent=version, derivation=CONVERTED_DERIVATION).first()
    if existing is not None:
        return existing, existing.graph_info.get("parity", {})
    answer = run_job("convert_pt2", inputs={jobs.PROGRAM: safe_program},
                     params={"parity_atol": policy["conversion"]["parity_atol"]}, outputs=(jobs.CONVERTED,))
    result = answer.result
    if not result["ok"]:
        raise MlcpError(str(result.get("detail", "conversion failed")),
                        code=str(result.get("code", "conversion_failed"))[:64])
    parity = result.get("parity") if isinstance(result.get("parity"), dict) else {}
    if not shallow_json(parity):
        raise MlcpError("the conversion answered with malformed parity evidence", code="sandbox_bad_result")
    if result.get("parity_failed"):
        return None, {"summary": str(parity.get("summary", "the conversion's outputs differ"))[:2000], **parity}
    if jobs.CONVERTED not in answer.outputs:
        raise MlcpError("the conversion produced no ONNX file", code="conversion_failed")
    # The converted file is as hostile as the upload: ingest parses it with the same caps.
    converted = services.ingest_bytes(
        version.model, answer.outputs[jobs.CONVERTED], version.artifact_name.rsplit(".", 1)[0] + ".onnx",
        services.VersionMetadata(parent_number=version.number, derivation=CONVERTED_DERIVATION,
                                 git_commit=version.git_commit, training_data_digest=version.training_data_digest,
                                 tags=version.tags),
        actor="gate-pipeline",
    )
    ModelVersion.objects.filter(pk=converted.pk).update(graph_info={**converted.graph_info, "parity": parity})
    return converted, parity


def _golden_set_bytes(version: ModelVersion):
    """The model's default golden set row and its verified bytes (parsed only in the sandbox)."""
    golden = version.model.default_golden_set
    if golden is None:
        raise MlcpError(f"model '{version.model.name}' has no golden set; push one with "
                        "`mlcp golden-set push`", code="no_golden_set")
    from registry import signing
    from registry.storage import default_store

    signing.verify_bundle(golden.signature_bundle, golden.digest)
    return golden, default_store().read_verified(golden.digest)


def _quantization(version: ModelVersion, model_bytes: bytes, policy: dict) -> GateOutcome:
    golden_row, golden_bytes = _golden_set_bytes(version)
    outcome, outputs = _sandboxed_outcome("quantization", "quantization",
                                          {jobs.MODEL: model_bytes, jobs.GOLDEN: golden_bytes}, {"policy": policy},
                                          outputs=(jobs.INT8,))
    outcome.evidence["golden_set"] = golden_row.number
    if outcome.verdict != "pass" or jobs.INT8 not in outputs:
        return outcome  # a failed quantization's int8 file is not worth registering
    derived = ModelVersion.objects.filter(parent=version, derivation=INT8_DERIVATION).first()
    if derived is None:
        derived = services.ingest_bytes(
            version.model, outputs[jobs.INT8], version.artifact_name.rsplit(".", 1)[0] + ".int8.onnx",
            services.VersionMetadata(parent_number=version.number, derivation=INT8_DERIVATION,
                                     git_commit=version.git_commit, training_data_digest=version.training_data_digest,
                                     tags={**version.tags, "precision": "int8"}),
            actor="gate-pipeline",
        )
    outcome.evidence["derived_version"] = derived.number
    outcome.evidence["derived_digest"] = derived.digest
    return outcome


def _golden(version: ModelVersion, model_bytes: bytes, policy: dict) -> GateOutcome:
    golden_row, golden_bytes = _golden_set_bytes(version)
    production = services.alias_target(version.model, "production")
    inputs = {jobs.MODEL: model_bytes, jobs.GOLDEN: golden_bytes}
    if production is not None and production.pk != version.pk:
        inputs[jobs.PRODUCTION] = services.read_verified_artifact(production)
    outcome, _ = _sandboxed_outcome("golden_set", "golden_set", inputs, {"policy": policy})
    outcome.evidence["golden_set"] = golden_row.number
    outcome.evidence["production_version"] = production.number if jobs.PRODUCTION in inputs else None
    return outcome


GATES: dict[str, Callable[[ModelVersion, bytes, dict], GateOutcome]] = {
    "validation": _validation,
    "quantization": _quantization,
    "golden_set": _golden,
}
