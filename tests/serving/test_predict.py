"""Predictions, bad input, metrics and the fault switch of a running `mlcp serve`."""

import json
import time
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from tests.factories import tiny_onnx
from tests.serving import serve_signed
from devtools.reference_models import build_reference_model, golden_inputs_and_labels


def post(url, body, raw=False):
    """(status, JSON answer) of a POST; ``raw`` sends ``body`` bytes as they are."""
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def samples(server) -> dict:
    """Every sample on /metrics: {(name, frozenset(labels)): value}."""
    found = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def requests_by_code(server, track="stable") -> dict[str, float]:
    return {dict(labels)["code"]: value for (name, labels), value in samples(server).items()
            if name == "mlcp_model_requests_total" and dict(labels)["track"] == track}


def bucket(server, le: str) -> float:
    return next(v for (name, labels), v in samples(server).items()
                if name == "mlcp_model_request_duration_seconds_bucket" and dict(labels)["le"] == le)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    with serve_signed(tmp_path_factory.mktemp("tiny"), tiny_onnx(), model="tiny", version="7", track="canary",
                      extra_args=["--fault-seed", "1234"]) as server:
        yield server


@pytest.fixture(autouse=True)
def no_faults_left(request):
    yield
    if "tiny_server" in request.fixturenames:
        request.getfixturevalue("tiny_server").set_fault(error_rate=0, latency_ms=0)


def test_resnet_predictions_match_onnxruntime_on_the_same_model(tmp_path):
    reference = build_reference_model("resnet")
    inputs, labels = golden_inputs_and_labels()
    batch = inputs[:64]
    expected = ort.InferenceSession(reference.onnx_bytes, providers=["CPUExecutionProvider"]).run(
        None, {"input": batch})[0]
    with serve_signed(tmp_path, reference.onnx_bytes, model="resnet", version="1") as server:
        status, answer = post(f"{server.url}/v1/predict", {"inputs": batch.tolist()})
    assert status == 200
    np.testing.assert_allclose(np.array(answer["logits"], dtype=np.float32), expected, rtol=1e-4, atol=1e-4)
    assert answer["classes"] == expected.argmax(axis=1).tolist()
    # A trained CNN, not noise: most golden digits come out right.
    assert np.mean(np.array(answer["classes"]) == labels[:64]) > 0.8


@pytest.mark.parametrize("body, code", [
    (b"not json", "malformed_json"),
    (b"[1, 2]", "missing_inputs"),
    (b'{"inputs": [[1, 2, 3]]}', "wrong_shape"),
    (b'{"inputs": [1, 2, 3, 4]}', "wrong_shape"),
    (b'{"inputs": [[1, 2], [3, 4, 5, 6]]}', "malformed_inputs"),
    (b'{"inputs": [["a", "b", "c", "d"]]}', "malformed_inputs"),
    (b'{"inputs": [[1, 2, 3, NaN]]}', "non_finite_inputs"),
])
def test_malformed_input_is_a_400_counted_as_4xx(tiny_server, body, code):
    before = requests_by_code(tiny_server, "canary")
    status, answer = post(f"{tiny_server.url}/v1/predict", body, raw=True)
    after = requests_by_code(tiny_server, "canary")
    assert (status, answer["code"]) == (400, code) and answer["detail"]
    assert after["400"] == before["400"] + 1
    assert after["500"] == before["500"] and after["200"] == before["200"]


def test_metrics_count_requests_by_code_and_track_with_the_analysis_names(tiny_server):
    before = requests_by_code(tiny_server, "canary")
    for _ in range(5):
        assert post(f"{tiny_server.url}/v1/predict", {"inputs": [[0.1, 0.2, 0.3, 0.4]]})[0] == 200
    assert post(f"{tiny_server.url}/v1/predict", {"inputs": [[0.1]]})[0] == 400
    after = requests_by_code(tiny_server, "canary")
    assert after["200"] - before["200"] == 5 and after["400"] - before["400"] == 1
    found = samples(tiny_server)
    labels = {"model": "tiny", "version": "7", "track": "canary"}
    assert found[("mlcp_model_request_duration_seconds_bucket", frozenset({**labels, "le": "+Inf"}.items()))] \
        == sum(after.values())
    # Error series exist at 0 before the first error, so increase() counts the first one.
    assert found[("mlcp_model_requests_total", frozenset({**labels, "code": "500"}.items()))] == after["500"]
    assert requests_by_code(tiny_server, "stable") == {}


def predictions_by_class(server) -> dict[str, float]:
    return {dict(labels)["class"]: value for (name, labels), value in samples(server).items()
            if name == "mlcp_model_predictions_total"}


def test_predictions_are_counted_by_class_with_every_class_exported_from_start_up(tiny_server):
    before = predictions_by_class(tiny_server)
    n_classes = len(before)
    assert n_classes >= 2 and set(before) == {str(k) for k in range(n_classes)}  # at 0 before any prediction
    rows = [[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.5, 0.25], [0.0, 1.0, 1.0, 0.0]]
    status, answer = post(f"{tiny_server.url}/v1/predict", {"inputs": rows})
    assert status == 200
    after = predictions_by_class(tiny_server)
    moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    expected = {}
    for k in answer["classes"]:
        expected[str(k)] = expected.get(str(k), 0) + 1
    assert moved == expected


def test_never_class_fault_answers_the_runner_up_instead(tiny_server):
    rows = [[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.5, 0.25], [0.0, 1.0, 1.0, 0.0]] * 5
    _, answer = post(f"{tiny_server.url}/v1/predict", {"inputs": rows})
    dropped = answer["classes"][0]
    try:
        assert post(f"{tiny_server.url}/admin/fault", {"never_class": dropped})[1]["never_class"] == dropped
        status, faulty = post(f"{tiny_server.url}/v1/predict", {"inputs": rows})
        assert status == 200 and dropped not in faulty["classes"]
        assert faulty["logits"] == answer["logits"]  # the scores are the model's; only the answer moves
        for logits, k in zip(faulty["logits"], faulty["classes"]):
            assert k == sorted(range(len(logits)), key=lambda i: logits[i])[-2 if logits[dropped] == max(logits) else -1]
    finally:
        post(f"{tiny_server.url}/admin/fault", {"never_class": None})


def test_fault_switch_fails_about_the_configured_share(tiny_server):
    n, rate = 400, 0.3
    assert tiny_server.set_fault(error_rate=rate) == {"error_rate": rate, "latency_ms": 0.0, "never_class": None}
    statuses = [post(f"{tiny_server.url}/v1/predict", {"inputs": [[1, 0, 0, 1]]}) for _ in range(n)]
    failed = sum(1 for status, _ in statuses if status == 500)
    assert {a["code"] for s, a in statuses if s == 500} == {"injected_fault"}
    # A 1-in-a-million two-sided binomial bound: seeded draws never come near it.
    low, high = stats.binom.ppf([5e-7, 1 - 5e-7], n, rate)
    assert low <= failed <= high, failed


def test_latency_fault_moves_every_request_above_its_delay(tiny_server):
    tiny_server.set_fault(latency_ms=150)
    fast_before, all_before = bucket(tiny_server, "0.1"), bucket(tiny_server, "+Inf")
    for _ in range(4):
        assert post(f"{tiny_server.url}/v1/predict", {"inputs": [[1, 2, 3, 4]]})[0] == 200
    assert bucket(tiny_server, "0.1") == fast_before
    assert bucket(tiny_server, "+Inf") == all_before + 4


@pytest.mark.parametrize("body", [{"error_rate": 1.5}, {"latency_ms": -1}, {"error_rate": "lots"},
                                  {"never_class": -1}, {"never_class": "3"}])
def test_fault_switch_rejects_impossible_settings(tiny_server, body):
    status, answer = post(f"{tiny_server.url}/admin/fault", body)
    assert status == 400 and answer["code"] == "invalid_fault"


def test_health_and_unknown_routes(tiny_server):
    with urllib.request.urlopen(f"{tiny_server.url}/healthz", timeout=5) as response:
        assert json.load(response) == {"status": "ok"}
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{tiny_server.url}/v2/predict", timeout=5)
    assert raised.value.code == 404 and json.load(raised.value)["code"] == "not_found"


def test_a_body_over_the_limit_is_refused_unread_with_413(tiny_server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", tiny_server.port, timeout=10)
    connection.putrequest("POST", "/v1/predict")
    connection.putheader("Content-Length", str(1 << 30))  # announced, never sent
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and json.load(response)["code"] == "body_too_large"
    assert response.getheader("Connection") == "close"
    connection.close()


def test_traffic_generator_follows_the_weight_it_reads_and_its_bounds(tiny_server):
    from devtools.traffic import CANARY, STABLE, TrafficGenerator

    weight = {"now": 0.0}
    generator = TrafficGenerator(tiny_server.url, tiny_server.url, lambda: weight["now"], [[1, 2, 3, 4]],
                                 rate_per_s=200, max_requests=60, max_seconds=600, weight_refresh_s=0.0)
    with generator:
        while generator.report().sent < 20:
            time.sleep(0.01)
        weight["now"] = 1.0
        report = generator.wait()
    assert report.sent == 60 and report.count(status=200) == 60
    assert report.count(STABLE) >= 20 and report.count(CANARY) >= 20
    with pytest.raises(ValueError, match="loopback"):
        TrafficGenerator("http://10.0.0.1:80", tiny_server.url, lambda: 0.1, [[1, 2, 3, 4]])
