"""The gate pipeline end to end: a real Redis, a real Celery worker process, real trained models."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu.pools
import pytest
import redis

from controlplane.celery import app as celery_app
from devtools.reference_models import build_reference_model, golden_set_npz_bytes
from registry import services
from registry.choices import VersionStatus
from registry.models import GateResult, ModelVersion, RegisteredModel
from registry.storage import default_store
from tests.support.celery_worker import celery_worker
from tests.support.webserver import server_env
from workers.pipeline import INT8_DERIVATION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BROKEN_CLASS = 3
SETTLED = {VersionStatus.AWAITING_APPROVAL, VersionStatus.APPROVED, VersionStatus.REJECTED}


@pytest.fixture(scope="session")
def celery_on_test_redis(redis_url):
    """Point this process's Celery app at the test Redis once for the session."""
    celery_app.conf.broker_url = redis_url
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu.pools.reset()  # pools cached for the old URL must not be reused
    return redis_url


@pytest.fixture
def broker(celery_on_test_redis):
    # Each test starts on an empty broker: messages left by an earlier test's versions must not
    # reach this test's worker (the database reuses their ids).
    redis.Redis.from_url(celery_on_test_redis).flushdb()
    yield celery_on_test_redis
    redis.Redis.from_url(celery_on_test_redis).flushdb()


def _wait_for(predicate, what: str, deadline_s: float = 300):
    # Bounded waiting for another process; the bound is generous and never a speed assertion.
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def _settled(version: ModelVersion) -> ModelVersion:
    def check():
        version.refresh_from_db()
        errored = version.status == VersionStatus.REGISTERED and version.status_reason
        return (version.status in SETTLED or errored) and version
    return _wait_for(check, f"{version} to leave gating")


@pytest.fixture
def digits_model(transactional_db):
    model = RegisteredModel.objects.create(name="digits", class_labels=[str(i) for i in range(10)])
    staged = default_store().stage()
    staged.write(golden_set_npz_bytes())
    services.register_golden_set(model, staged, actor="test")
    return RegisteredModel.objects.get(pk=model.pk)


def _register(model, reference, name="digits.onnx") -> ModelVersion:
    return services.ingest_bytes(model, reference.onnx_bytes, name, services.VersionMetadata(), actor="ci")


def test_good_model_passes_every_gate_and_its_int8_version_is_signed(broker, digits_model):
    with celery_worker(broker):
        version = _settled(_register(digits_model, build_reference_model("resnet")))
        assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
        results = {r.gate: r for r in version.gate_results.all()}
        assert {g: r.verdict for g, r in results.items()} == {
            "validation": "pass", "quantization": "pass", "golden_set": "pass"}
        assert results["validation"].device in ("CPUExecutionProvider", "CUDAExecutionProvider")
        derived = ModelVersion.objects.get(parent=version, derivation=INT8_DERIVATION)
        assert results["quantization"].evidence["derived_version"] == derived.number
        assert services.verify_version(derived).ok
        derived = _settled(derived)
        assert set(derived.gate_results.values_list("gate", flat=True)) == {"validation", "golden_set"}


def test_regressed_model_is_rejected_by_the_golden_set_naming_the_broken_class(broker, digits_model):
    good = build_reference_model("resnet")
    broken = build_reference_model("resnet", broken_class=BROKEN_CLASS)
    assert abs(good.accuracy - broken.accuracy) < 0.15  # overall accuracy alone would not catch it
    production = _register(digits_model, good, "good.onnx")
    for status in (VersionStatus.GATING, VersionStatus.AWAITING_APPROVAL, VersionStatus.APPROVED,
                   VersionStatus.CANARY, VersionStatus.DEPLOYED):
        services.transition_version(production, status, actor="test")
    services.move_alias(digits_model, "production", production, actor="test")
    GateResult.objects.filter(version=production).delete()
    celery_app.control.purge()  # production's own gates were queued at registration; it is set up by hand here
    with celery_worker(broker):
        version = _settled(_register(digits_model, broken, "regressed.onnx"))
    assert version.status == VersionStatus.REJECTED
    golden = version.gate_results.get(gate="golden_set")
    assert golden.verdict == "fail"
    assert "golden_set gate failed" in version.status_reason
    assert f"'{BROKEN_CLASS}'" in golden.summary or f"class {BROKEN_CLASS}" in golden.summary
    assert golden.evidence["production_version"] == production.number
    assert str(BROKEN_CLASS) in json.dumps(golden.evidence)


def test_worker_killed_mid_gate_reruns_it_to_exactly_one_result(broker, digits_model):
    # Enough timed iterations that validation is still running when the worker is killed.
    digits_model.gate_policy = {"gates": ["validation"], "validation": {"timed_iterations": 1000}}
    digits_model.save()
    with celery_worker(broker) as first:
        version = _register(digits_model, build_reference_model("mobilenet"))
        # The worker runs at most one gate at a time; wait for this version's validation to be mid-run.
        _wait_for(lambda: GateResult.objects.filter(version=version, gate="validation", verdict="running").exists(),
                  "validation to start")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert GateResult.objects.get(version=version, gate="validation").verdict == "running"
    with celery_worker(broker):
        version = _settled(version)
    results = list(GateResult.objects.filter(version=version))
    assert [(r.gate, r.verdict) for r in results] == [("validation", "pass")]
    assert results[0].attempts == 2


def test_pt2_program_is_converted_with_parity_and_its_onnx_carries_the_gates(broker, digits_model):
    from workers.pipeline import CONVERTED_DERIVATION
    from devtools.reference_models import export_pt2_bytes, load_reference_module

    pt2 = export_pt2_bytes(load_reference_module("resnet"))
    with celery_worker(broker):
        version = services.ingest_bytes(digits_model, pt2, "digits.pt2",
                                        services.VersionMetadata(format="pt2"), actor="ci")
        version = _settled(version)
        assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
        validation = version.gate_results.get(gate="validation")
        assert validation.evidence["parity"]["passed"] is True
        converted = ModelVersion.objects.get(parent=version, derivation=CONVERTED_DERIVATION)
        assert validation.evidence["converted_version"] == converted.number
        assert converted.input_signature[0]["name"] == "input"
        converted = _settled(converted)
    assert converted.status == VersionStatus.AWAITING_APPROVAL, converted.status_reason
    assert set(converted.gate_results.values_list("gate", flat=True)) == {"validation", "quantization", "golden_set"}


def test_mlcp_push_wait_prints_the_final_version_with_its_gates(broker, digits_model, tmp_path):
    from controlplane.accounts import issue_token
    from controlplane.roles import Role
    from tests.support.webserver import gunicorn_server

    model_file = tmp_path / "digits.onnx"
    model_file.write_bytes(build_reference_model("efficientnet").onnx_bytes)
    token = issue_token("ci-bot", Role.CI)
    with celery_worker(broker), gunicorn_server(CELERY_BROKER_URL=broker) as (base_url, _):
        result = subprocess.run([sys.executable, "-m", "cli.main", "--url", base_url, "--token", token,
                                 "--json", "push", "digits", str(model_file), "--wait", "--timeout", "300"],
                                capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "awaiting_approval"
    assert [(g["gate"], g["verdict"]) for g in final["gates"]] == [
        ("validation", "pass"), ("quantization", "pass"), ("golden_set", "pass")]


def test_a_gate_that_cannot_run_is_an_error_never_a_pass_and_can_be_rerun(broker, transactional_db):
    model = RegisteredModel.objects.create(name="no-golden", gate_policy={"gates": ["validation", "golden_set"]})
    with celery_worker(broker):
        version = _settled(_register(model, build_reference_model("resnet")))
        assert version.status == VersionStatus.REGISTERED
        assert "golden_set gate errored" in version.status_reason
        golden = version.gate_results.get(gate="golden_set")
        assert golden.verdict == "error" and "no golden set" in golden.summary
        staged = default_store().stage()
        staged.write(golden_set_npz_bytes())
        services.register_golden_set(model, staged, actor="test")
        services.request_gates(version, actor="test")
        _wait_for(lambda: GateResult.objects.get(version=version, gate="golden_set").verdict in ("pass", "fail"),
                  "the golden_set gate to run again")
        version = _settled(version)
    assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
    results = {r.gate: r for r in version.gate_results.all()}
    assert (results["validation"].verdict, results["validation"].attempts) == ("pass", 1)
    assert (results["golden_set"].verdict, results["golden_set"].attempts) == ("pass", 2)


def test_a_pickled_pt2_runs_nothing_is_rejected_as_unsafe_and_push_wait_fails(broker, digits_model, tmp_path):
    from controlplane.accounts import issue_token
    from controlplane.roles import Role
    from tests.support.webserver import gunicorn_server
    from tests.workers.hostile import with_pickled_weight
    from devtools.reference_models import export_pt2_bytes, load_reference_module

    sentinel = tmp_path / "pwned"  # the worker runs as root: a command that ran anywhere in it could write here
    program = tmp_path / "digits.pt2"
    program.write_bytes(with_pickled_weight(export_pt2_bytes(load_reference_module("resnet")), f"touch {sentinel}"))
    token = issue_token("ci-bot", Role.CI)
    with celery_worker(broker), gunicorn_server(CELERY_BROKER_URL=broker) as (base_url, _):
        pushed = subprocess.run([sys.executable, "-m", "cli.main", "--url", base_url, "--token", token,
                                 "--json", "push", "digits", str(program), "--format", "pt2", "--wait",
                                 "--timeout", "300"], capture_output=True, text=True, timeout=400)
    assert pushed.returncode != 0, pushed.stdout
    assert not sentinel.exists()
    version = ModelVersion.objects.get(model=digits_model, artifact_name="digits.pt2")
    assert version.status == VersionStatus.REJECTED, version.status_reason
    validation = version.gate_results.get(gate="validation")
    assert (validation.verdict, validation.evidence["code"]) == ("fail", "unsafe_archive")
    assert "use_pickle" in validation.summary
    assert not ModelVersion.objects.filter(parent=version).exists()  # nothing was converted


def test_every_gate_result_records_the_sandbox_it_ran_in(broker, digits_model):
    digits_model.gate_policy = {"gates": ["validation", "golden_set"]}
    digits_model.save()
    with celery_worker(broker):
        version = _settled(_register(digits_model, build_reference_model("resnet")))
    assert {(r.gate, r.isolation) for r in version.gate_results.all()} == {
        ("validation", "bubblewrap"), ("golden_set", "bubblewrap")}


def test_a_gate_whose_worker_dies_on_every_delivery_ends_as_worker_crashed(broker, digits_model):
    # The sandbox keeps a model from killing its worker; what still can (the node's OOM killer, a
    # driver crash on a GPU node) is stood in for by this test killing the worker mid-gate.
    deliveries = 2
    # Long enough that each delivery is seen running before it is killed (a default validation can end
    # between two looks).
    digits_model.gate_policy = {"gates": ["validation"], "validation": {"timed_iterations": 5000}}
    digits_model.save()
    version = None
    for delivery in range(1, deliveries + 1):
        with celery_worker(broker, MLCP_GATE_MAX_DELIVERIES=str(deliveries)) as worker:
            version = version or _register(digits_model, build_reference_model("mobilenet"))
            _wait_for(lambda: GateResult.objects.filter(version=version, gate="validation", verdict="running",
                                                        attempts=delivery).exists(), f"delivery {delivery}")
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    with celery_worker(broker, MLCP_GATE_MAX_DELIVERIES=str(deliveries)):
        version = _settled(version)
    result = GateResult.objects.get(version=version, gate="validation")
    assert (result.verdict, result.evidence["code"], result.attempts) == ("error", "worker_crashed", deliveries)
    assert version.status == VersionStatus.REGISTERED and "worker died" in version.status_reason


def test_a_worker_without_a_strong_sandbox_refuses_to_start(broker):
    refused = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "controlplane.celery", "worker", "-Q", "gates", "--pool", "solo"],
        cwd=ROOT, env=server_env(CELERY_BROKER_URL=broker, MLCP_GATE_SANDBOX="scrubbed"),
        capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "MLCP_GATE_SANDBOX_ALLOW_WEAK" in refused.stderr
