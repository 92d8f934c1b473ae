"""Starting and steering rollouts checks every field: a malformed value is a 400 naming it, never a 500."""

import pytest

from rollouts import services
from rollouts.models import Rollout
from tests.factories import set_target

pytestmark = pytest.mark.django_db
START = {"model": "resnet", "version": 2, "namespace": "ml", "deployment": "resnet-server", "replicas": 4}


@pytest.fixture
def seeded(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    make_version(resnet)  # version 2, approved
    return set_target(resnet, {"namespace": "ml", "deployment": "resnet-server", "replicas": 4})


def _invalid(response, field: str):
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert body["code"] == "invalid_input", body
    assert field in body["fields"], body


BAD_STEPS = [
    "10,50,100",
    {"weights": [10, 100]},
    [0, 100],
    [10, 101],
    [True, 100],
    ["10", 100],
    [50, 25, 100],
    [{"weight": 10, "pause_s": 10**20}],
    [{"weight": 10, "pause_s": -1}],
    [{"weight": 10, "analysis": "no"}],
    [{"weight": 10, "wait": 5}],
    list(range(1, 102)),
]


@pytest.mark.parametrize("steps", BAD_STEPS, ids=range(len(BAD_STEPS)))
def test_rollout_steps_of_the_wrong_shape_or_size_are_a_400_invalid_strategy(ci, seeded, steps):
    response = ci.post("/api/v1/rollouts/", START | {"steps": steps}, format="json")
    assert response.status_code == 400, response.content[:500]
    assert response.json()["code"] == "invalid_strategy"
    assert not Rollout.objects.exists()


BAD_START_FIELDS = [
    ("pause_s", 10**20),
    ("pause_s", "soon"),
    ("analysis", "strict"),
    ("analysis", {"alpha": "abc"}),
    ("analysis", {"alpha": 2}),
    ("analysis", {"slo_target": 1}),
    ("analysis", {"min_requests": -5}),
    ("analysis", {"hold_budget_s": 10**20}),
    ("analysis", {"latency_threshold_ms": 0}),
    ("analysis", {"alpah": 0.05}),
    ("namespace", "Not_A_Namespace"),
    ("namespace", "n" * 64),
    ("namespace", ["ml"]),
    ("deployment", "d" * 254),
    ("deployment", ""),
    ("canary_service", "has spaces"),
    ("replicas", 10**9),
    ("replicas", 0),
    ("version", "two"),
    ("version", 2**40),
    ("model", "m" * 64),
    ("router", "istio"),
    ("approval_required", "perhaps"),
]


@pytest.mark.parametrize("field,value", BAD_START_FIELDS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_START_FIELDS)])
def test_rollout_start_field_of_the_wrong_type_range_or_size_is_a_400(ci, seeded, field, value):
    _invalid(ci.post("/api/v1/rollouts/", START | {field: value}, format="json"), field)
    assert not Rollout.objects.exists()


def test_rollout_start_with_well_formed_overrides_keeps_them(ci, seeded):
    body = START | {"steps": [{"weight": 20, "pause_s": 60, "analysis": False}, 100],
                    "analysis": {"alpha": 0.01, "min_requests": 50, "hold_budget_s": 900}}
    response = ci.post("/api/v1/rollouts/", body, format="json")
    assert response.status_code == 201, response.json()
    rollout = Rollout.objects.get()
    assert rollout.analysis["alpha"] == 0.01 and rollout.analysis["min_requests"] == 50
    assert rollout.analysis["hold_budget_s"] == 900
    assert [s["weight"] for s in rollout.strategy["steps"]] == [20, 100]


@pytest.mark.parametrize("action", ["pause", "abort"])
def test_rollout_control_reason_over_the_limit_is_a_400(oncall, seeded, action):
    rollout = services.start_rollout(seeded, seeded.versions.get(number=2), actor="ci",
                                     traffic={"namespace": "ml", "deployment": "resnet-server"})
    _invalid(oncall.post(f"/api/v1/rollouts/{rollout.pk}/{action}", {"reason": "r" * 2001}, format="json"), "reason")
    _invalid(oncall.post(f"/api/v1/rollouts/{rollout.pk}/{action}", {"reason": ["a", "list"]}, format="json"),
             "reason")
    rollout.refresh_from_db()
    assert rollout.phase == "pending"


def test_rollback_reason_of_the_wrong_type_is_a_400(oncall, seeded):
    _invalid(oncall.post("/api/v1/models/resnet/rollback", {"reason": {"why": "bad"}}, format="json"), "reason")
    assert not Rollout.objects.exists()


@pytest.mark.parametrize("query,code", [("at=2024-02-30T00:00:00Z", "invalid_time"),
                                        ("at=2024-03-01T12:00:00Z&step_duration_s=" + "9" * 30, "invalid_input"),
                                        ("at=2024-03-01T12:00:00Z&canary_version=-1", "invalid_input"),
                                        ("at=2024-03-01T12:00:00Z&stable_version=1e3", "invalid_input")])
def test_analysis_replay_with_an_impossible_parameter_is_a_400(viewer, seeded, query, code):
    response = viewer.get(f"/api/v1/models/resnet/analysis?{query}")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == code


@pytest.mark.parametrize("at,utc", [("2024-03-01T12:00:00-18:37", "2024-03-02T06:37:00+00:00"),
                                    ("2024-03-01T12:00:00+23:59", "2024-02-29T12:01:00+00:00"),
                                    ("2024-03-01 12:00", "2024-03-01T12:00:00+00:00")])
def test_analysis_replay_reads_the_instant_in_utc(viewer, seeded, monkeypatch, at, utc):
    # Python reads offsets up to 23:59, PostgreSQL stores only up to 15:59: sent on as written, the
    # rollout lookup by instant was a 500 there (found by tests/controlplane/test_openapi_fuzz.py).
    monkeypatch.setattr("rollouts.metrics.PrometheusMetricsProvider._query", lambda self, *args: None)
    response = viewer.get("/api/v1/models/resnet/analysis",
                          {"at": at, "canary_version": 2, "stable_version": 1, "step_duration_s": 2**31 - 1})
    assert response.status_code == 200, response.content[:300]
    assert response.json()["at"] == utc


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+05:00", "0128-12-13T04:37:54Z", "1969-12-31T23:59:59Z",
                                "9999-12-31T23:59:59-05:00"])
def test_analysis_replay_at_an_instant_no_window_fits_around_is_a_400(viewer, seeded, at):
    # Windows of up to 2**31 s before `at`, or an offset past year 1 or 9999, overflowed datetime arithmetic.
    response = viewer.get("/api/v1/models/resnet/analysis",
                          {"at": at, "canary_version": 2, "stable_version": 1, "step_duration_s": 2**31 - 1})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid_time"
