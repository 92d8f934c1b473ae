"""The approvers' web UI: who sees what, approve/reject through forms, and gate evidence drawn as SVG."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry import services
from registry.choices import VersionStatus
from registry.models import AuditEvent, GateResult, ModelVersion, RegisteredModel
from registry.ui import charts
from tests.factories import tiny_onnx

S = VersionStatus
VERSION_URL = "/models/resnet/versions/1/"


# ----------------------------------------------------------------- helpers

def _login(role: Role | None, username: str | None = None) -> Client:
    username = username or f"{role.value if role else 'nobody'}-ui"
    if role is None:
        get_user_model().objects.create_user(username)
    else:
        issue_token(username, role)
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def _register(model: RegisteredModel, seed: int = 0, **meta) -> ModelVersion:
    return services.ingest_bytes(model, tiny_onnx(seed), "model.onnx", services.VersionMetadata(**meta), actor="ci-bot")


def _walk(version: ModelVersion, *statuses) -> None:
    for status in statuses:
        services.transition_version(version, status, actor="gate-pipeline")


def _status(version: ModelVersion) -> str:
    return ModelVersion.objects.get(pk=version.pk).status


@pytest.fixture
def model(db):
    return RegisteredModel.objects.create(name="resnet", owner="vision-team")


@pytest.fixture
def awaiting(model):
    version = _register(model)
    _walk(version, S.GATING, S.AWAITING_APPROVAL)
    return version


@pytest.fixture
def viewer_ui(db):
    return _login(Role.VIEWER)


@pytest.fixture
def approver_ui(db):
    return _login(Role.APPROVER)


@pytest.fixture(scope="module")
def regressed_golden_outcome():
    """The golden-set gate's real outcome: resnet with class 3 broken, against the intact resnet."""
    from workers.gates import evaluate_golden_set, parse_golden_set, resolve_gate_policy
    from devtools.reference_models import build_reference_model, golden_set_npz_bytes

    good, broken = build_reference_model("resnet"), build_reference_model("resnet", broken_class=3)
    golden = parse_golden_set(golden_set_npz_bytes())
    return evaluate_golden_set(broken.onnx_bytes, golden, production_bytes=good.onnx_bytes,
                               policy=resolve_gate_policy({}))


@pytest.fixture(scope="module")
def passing_outcomes():
    """Real validation and quantization outcomes for the intact resnet (few timed iterations)."""
    from workers.gates import parse_golden_set, resolve_gate_policy
    from workers.gates.quantization import quantize_int8
    from workers.gates.validation import run_validation
    from devtools.reference_models import build_reference_model, golden_set_npz_bytes

    policy = resolve_gate_policy({"validation": {"warmup_iterations": 1, "timed_iterations": 5},
                                  "quantization": {"warmup_iterations": 1, "timed_iterations": 5}})
    model_bytes = build_reference_model("resnet").onnx_bytes
    golden = parse_golden_set(golden_set_npz_bytes())
    return [run_validation(model_bytes, declared_signature=None, policy=policy),
            quantize_int8(model_bytes, golden, policy).outcome]


def _store_outcome(version: ModelVersion, outcome, position: int = 0) -> GateResult:
    return GateResult.objects.create(version=version, gate=outcome.gate, position=position, verdict=outcome.verdict,
                                     summary=outcome.summary, metrics=outcome.metrics, evidence=outcome.evidence,
                                     device=outcome.device, timings=outcome.timings)


# ---------------------------------------------------------------- access

@pytest.mark.parametrize("url", ["/", "/models/resnet/", VERSION_URL])
def test_anonymous_user_is_redirected_to_login(client, awaiting, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_anonymous_approve_is_redirected_to_login_and_changes_nothing(client, awaiting):
    response = client.post(VERSION_URL + "approve", {"reason": "lgtm"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert _status(awaiting) == S.AWAITING_APPROVAL


def test_login_page_signs_in_a_viewer_who_is_not_staff(client, db):
    issue_token("vera", Role.VIEWER)
    user = get_user_model().objects.get(username="vera")
    user.set_password("s3cret-pass")
    user.save()
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "vera", "password": "s3cret-pass", "next": "/models/x/"})
    assert (response.status_code, response["Location"]) == (302, "/models/x/")


def test_pages_render_for_a_viewer(viewer_ui, awaiting):
    listing = viewer_ui.get("/")
    assert listing.status_code == 200
    assert b"resnet" in listing.content and b"vision-team" in listing.content
    assert b"Awaiting Approval" in listing.content
    detail = viewer_ui.get("/models/resnet/")
    assert detail.status_code == 200 and awaiting.digest[:12].encode() in detail.content
    page = viewer_ui.get(VERSION_URL)
    assert page.status_code == 200
    assert f"sha256:{awaiting.digest}".encode() in page.content


def test_signed_in_user_without_a_role_gets_403(awaiting):
    assert _login(None).get("/").status_code == 403


def test_unknown_model_or_version_is_404(viewer_ui, awaiting):
    assert viewer_ui.get("/models/nope/").status_code == 404
    assert viewer_ui.get("/models/resnet/versions/9/").status_code == 404


def test_viewer_sees_no_decision_forms_and_approver_does(viewer_ui, approver_ui, awaiting):
    assert b'action="/models/resnet/versions/1/approve"' not in viewer_ui.get(VERSION_URL).content
    page = approver_ui.get(VERSION_URL).content
    assert b'action="/models/resnet/versions/1/approve"' in page
    assert b'action="/models/resnet/versions/1/reject"' in page


# ---------------------------------------------------------------- decisions

def test_approver_approves_through_the_ui_and_the_reason_is_audited(approver_ui, awaiting):
    response = approver_ui.post(VERSION_URL + "approve", {"reason": "recall holds on every class"}, follow=True)
    assert response.status_code == 200
    assert b"resnet:1 approved." in response.content
    assert _status(awaiting) == S.APPROVED
    event = AuditEvent.objects.filter(action="version.status").first()
    assert (event.actor, event.from_state, event.to_state, event.reason) == (
        "approver-ui", "awaiting_approval", "approved", "recall holds on every class")


def test_viewer_posting_approve_gets_403_and_nothing_changes(viewer_ui, awaiting):
    audited = AuditEvent.objects.count()
    assert viewer_ui.post(VERSION_URL + "approve", {"reason": "sneaky"}).status_code == 403
    assert _status(awaiting) == S.AWAITING_APPROVAL
    assert AuditEvent.objects.count() == audited


def test_reject_without_reason_shows_the_error_and_changes_nothing(approver_ui, awaiting):
    audited = AuditEvent.objects.count()
    response = approver_ui.post(VERSION_URL + "reject", {"reason": "   "}, follow=True)
    assert response.status_code == 200
    assert b"Not rejected: a rejection needs a reason" in response.content
    assert _status(awaiting) == S.AWAITING_APPROVAL
    assert AuditEvent.objects.count() == audited


def test_reject_with_reason_rejects(approver_ui, awaiting):
    approver_ui.post(VERSION_URL + "reject", {"reason": "class three regressed"})
    version = ModelVersion.objects.get(pk=awaiting.pk)
    assert (version.status, version.status_reason) == (S.REJECTED, "class three regressed")


def test_approving_a_version_that_is_not_awaiting_approval_is_a_message_not_a_500(approver_ui, model):
    version = _register(model)
    _walk(version, S.GATING)
    response = approver_ui.post(VERSION_URL + "approve", {"reason": "hurry"}, follow=True)
    assert response.status_code == 200
    assert b"Not approved: resnet:1 is gating; only a version that is awaiting approval can be approved" in response.content
    assert _status(version) == S.GATING


def test_decision_forms_are_csrf_protected(awaiting):
    issue_token("strict-approver", Role.APPROVER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(username="strict-approver"))
    assert client.post(VERSION_URL + "approve", {"reason": "no token"}).status_code == 403
    assert _status(awaiting) == S.AWAITING_APPROVAL


# ------------------------------------------------------------------ verify

def test_verify_now_confirms_an_intact_version(viewer_ui, awaiting):
    page = viewer_ui.get(VERSION_URL + "?verify=1").content.decode()
    assert "✓ Verified now." in page and "TAMPERED" not in page


def test_verify_now_shows_tampering(viewer_ui, awaiting, isolated_artifacts):
    isolated_artifacts.overwrite(awaiting.digest, isolated_artifacts.read(awaiting.digest) + b"\x00")
    page = viewer_ui.get(VERSION_URL + "?verify=1").content.decode()
    assert "TAMPERED OR UNVERIFIABLE" in page and "is corrupt in storage" in page


# ---------------------------------------------------------- lineage, aliases

def test_model_page_shows_lineage_alias_history_and_audit(viewer_ui, model):
    parent = _register(model, seed=0)
    _register(model, seed=1, parent_number=1, derivation="int8-static-qdq")
    services.move_alias(model, "production", parent, actor="oncall", reason="first release")
    page = viewer_ui.get("/models/resnet/").content.decode()
    assert 'from <a href="/models/resnet/versions/1/">v1</a> (int8-static-qdq)' in page
    assert "first release" in page and "version.registered" in page
    assert 'production → v1' in viewer_ui.get("/").content.decode()


# ------------------------------------------------------------ gate evidence

def test_golden_set_chart_marks_the_regressed_class(viewer_ui, awaiting, regressed_golden_outcome):
    _store_outcome(awaiting, regressed_golden_outcome)
    page = viewer_ui.get(VERSION_URL).content.decode()
    assert page.count('class="row regressed"') == 1
    assert '<g class="row regressed" data-class="three">' in page
    assert '<g class="row" data-class="four">' in page
    # The figures come from the outcome: training numerics, hence the exact recall, differ between CPUs.
    regressed = regressed_golden_outcome.evidence["production"]["regressed_classes"][0]
    assert f"▼ {regressed['drop'] * 100:.1f} pts" in page
    three_as_eight = regressed_golden_outcome.evidence["confusion_matrix"][3][8]
    assert "Confusion matrix" in page and f"true three → predicted eight: {three_as_eight}" in page


def test_validation_and_quantization_evidence_are_drawn(viewer_ui, awaiting, passing_outcomes):
    for position, outcome in enumerate(passing_outcomes):
        _store_outcome(awaiting, outcome, position)
    page = viewer_ui.get(VERSION_URL).content.decode()
    assert "p95 budget 50 ms (batch 1)" in page
    assert "Latency fp32 vs int8 at batch 8" in page
    assert '<g class="row" data-class="three">' in page  # the int8 recall-change chart
    assert "Raw evidence" in page and page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3


def test_many_classes_list_their_most_frequent_mistakes_without_a_heatmap(viewer_ui, awaiting):
    """Past 40 classes the gate keeps only the mistakes; the page names the worst and draws no matrix."""
    names = [f"species {i}" for i in range(1000)]
    evidence = {"images": 12, "accuracy": 0.75, "expected_calibration_error": 0.1, "class_names": names,
                "per_class": [{"index": i, "name": n, "support": 0, "precision": None, "recall": None}
                              for i, n in enumerate(names)],
                # Out of order, and (from a sandbox that lies) a right answer and cells that name no class.
                "confusions": [[3, 4, 1], [5, 5, 9], [-1, 2, 8], [2, 1000, 8], [7, 900, 2], [1, 2, 1]]}
    GateResult.objects.create(version=awaiting, gate="golden_set", verdict="pass", summary="ok", evidence=evidence)
    page = viewer_ui.get(VERSION_URL).content.decode()
    assert "species 7 → species 900 ×2; species 1 → species 2 ×1; species 3 → species 4 ×1<" in page
    assert "Confusion matrix" not in page


def test_the_page_draws_the_matrix_wherever_the_gate_keeps_it_whole():
    from registry.ui.evidence import _MAX_HEATMAP_CLASSES
    from workers.gates.golden import DENSE_CONFUSION_MAX_CLASSES

    assert _MAX_HEATMAP_CLASSES == DENSE_CONFUSION_MAX_CLASSES


def test_gate_with_unexpected_evidence_shows_it_raw(viewer_ui, awaiting):
    GateResult.objects.create(version=awaiting, gate="golden_set", verdict="pass", summary="odd", evidence={"x": 1})
    page = viewer_ui.get(VERSION_URL)
    assert page.status_code == 200
    assert b"Raw evidence" in page.content and b"&quot;x&quot;: 1" in page.content


def test_class_names_are_escaped_on_the_page(viewer_ui, awaiting, regressed_golden_outcome):
    evidence = dict(regressed_golden_outcome.evidence)
    evidence["class_names"] = ["<script>alert(1)</script>"] + evidence["class_names"][1:]
    evidence["per_class"] = [dict(evidence["per_class"][0], name=evidence["class_names"][0]),
                             *evidence["per_class"][1:]]
    GateResult.objects.create(version=awaiting, gate="golden_set", verdict="fail", evidence=evidence)
    page = viewer_ui.get(VERSION_URL).content.decode()
    assert "<script>alert" not in page and page.count("<script") == 1  # only the shell's own live.js
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ------------------------------------------------------ finding and following

def test_models_can_be_searched_by_name_owner_or_description(viewer_ui, model):
    RegisteredModel.objects.create(name="fraud-scorer", owner="risk", description="card fraud")
    assert "fraud-scorer" not in viewer_ui.get("/?q=vision").content.decode()
    page = viewer_ui.get("/?q=FRAUD").content.decode()
    assert "fraud-scorer" in page and 'href="/models/resnet/"' not in page
    assert "No model matches" in viewer_ui.get("/?q=nothing-like-it").content.decode()


def test_versions_filter_by_status_and_tag(viewer_ui, model):
    tagged = _register(model, 1, tags={"team": "vision", "run": "42"})
    _register(model, 2)
    _walk(tagged, S.GATING, S.AWAITING_APPROVAL)

    def listed(query):
        page = viewer_ui.get(f"/models/resnet/?{query}").content.decode()
        return sorted(int(n) for n in __import__("re").findall(r'<strong>v(\d+)</strong>', page))

    assert listed("") == [1, 2]
    assert listed("status=awaiting_approval") == [1]
    assert listed("tag=team") == [1] and listed("tag=team%3Dvision") == [1] and listed("tag=team%3Dnlp") == []
    assert listed("status=bogus") == [1, 2]  # an unknown status filters nothing


def test_the_audit_trail_is_paged(viewer_ui, model):
    from registry.ui.pages import AUDIT_PAGE

    for n in range(AUDIT_PAGE + 5):
        services.record_audit("ci-bot", "model.noted", model_name=model.name, reason=f"note {n}")
    first = viewer_ui.get("/models/resnet/").content.decode()
    assert "page 1 of 2" in first and "older →" in first and f"note {AUDIT_PAGE + 4}" in first
    second = viewer_ui.get("/models/resnet/?page=2").content.decode()
    assert "page 2 of 2" in second and "note 0" in second and "← newer" in second


def test_versions_and_rollouts_link_both_ways_and_the_model_page_shows_the_one_in_flight(viewer_ui, resnet,
                                                                                        make_version):
    from rollouts import services as rollouts
    from tests.factories import set_target

    make_version(resnet, "deployed", production=True)
    rollout = rollouts.start_rollout(set_target(resnet), make_version(resnet, "approved"), actor="ci-bot")
    canary = viewer_ui.get("/models/resnet/versions/2/").content.decode()
    assert f'href="/rollouts/{rollout.pk}/"' in canary and "as the canary" in canary
    assert "as stable" in viewer_ui.get("/models/resnet/versions/1/").content.decode()
    model_page = viewer_ui.get("/models/resnet/").content.decode()
    assert "Rollout in flight:" in model_page and f'href="/rollouts/{rollout.pk}/"' in model_page
    assert "v1 → v2, pending" in model_page
    # The version list says which is production and which is rolling out.
    assert model_page.count('class="badge s-deployed"') == 1 and model_page.count('class="badge s-canary"') == 1


def test_a_derived_version_says_its_parent_was_rolled_back(viewer_ui, resnet, make_version):
    from rollouts import services as rollouts
    from rollouts.models import Rollout
    from tests.factories import set_target

    make_version(resnet, "deployed", production=True)
    parent = make_version(resnet, "approved")
    child = services.ingest_bytes(resnet, tiny_onnx(77), "model.onnx",
                                  services.VersionMetadata(parent_number=parent.number, derivation="int8"), actor="gate")
    rollout = rollouts.start_rollout(set_target(resnet), parent, actor="ci-bot")
    Rollout.objects.filter(pk=rollout.pk).update(phase="rolled_back", abort_reason="p95 doubled")
    page = viewer_ui.get(f"/models/resnet/versions/{child.number}/").content.decode()
    assert f"Its parent v{parent.number} was rolled back" in page and "p95 doubled" in page
    assert "This int8 version was made from it." in page


def test_candidate_and_production_side_by_side_with_changes_highlighted(viewer_ui, awaiting, resnet_pair):
    production, candidate = resnet_pair
    page = viewer_ui.get(f"/models/resnet/compare/?candidate={candidate.number}&production={production.number}")
    body = page.content.decode()
    assert page.status_code == 200
    assert '<tr class="changed">' in body and "-20.0 pts ▼" in body  # class b lost 20 points
    assert body.count('<tr class="changed">') == 2  # class b, and batch 1's p95; class a is unchanged
    assert "1.50×" in body and 'class="worse"' in body  # p95 half as slow again
    assert viewer_ui.get("/models/resnet/compare/?candidate=99").status_code == 404


@pytest.fixture
def resnet_pair(model, awaiting):
    """resnet v1 (awaiting, the fixture's) as production and v2 as candidate, with hand-written gate evidence."""
    production = awaiting
    candidate = _register(model, 5)
    for version, recall_b, p95 in ((production, 0.9, 2.0), (candidate, 0.7, 3.0)):
        GateResult.objects.create(version=version, gate="golden_set", verdict="pass", evidence={
            "accuracy": 0.9, "per_class": [{"name": "a", "recall": 0.8}, {"name": "b", "recall": recall_b}]})
        GateResult.objects.create(version=version, gate="validation", verdict="pass", position=1, evidence={
            "latency_ms": {"1": {"p50_ms": 1.0, "p95_ms": p95, "p99_ms": 4.0}}})
    return production, candidate


# ------------------------------------------------------------------ charts

EVIL = '<script>alert("x")</script>'


@pytest.mark.parametrize("svg", [
    charts.recall_chart([EVIL, "b"], [0.5, 1.0], [0.9, 1.0], regressed={0}, floor=0.7),
    charts.confusion_heatmap([EVIL, "b"], [[3, 1], [0, 4]]),
    charts.delta_chart([EVIL, "b"], [-0.02, 0.0], limit=0.05),
    charts.latency_chart([(EVIL, {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0})], budget_ms=5, budget_label=EVIL),
])
def test_charts_escape_all_text(svg):
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg


def test_recall_chart_highlights_only_regressed_classes():
    svg = charts.recall_chart(["cat", "dog"], [0.5, 0.9], [0.9, 0.9], regressed={0})
    assert '<g class="row regressed" data-class="cat">' in svg
    assert '<g class="row" data-class="dog">' in svg
    assert "▼ 40.0 pts" in svg


def test_latency_chart_draws_the_budget_and_flags_p95_over_it():
    groups = [("batch 1", {"p50_ms": 30, "p95_ms": 60, "p99_ms": 70}),
              ("batch 8", {"p50_ms": 80, "p95_ms": 90, "p99_ms": 99})]
    svg = charts.latency_chart(groups, budget_ms=50, budget_label="batch 1")
    assert "p95 budget 50 ms (batch 1)" in svg
    assert svg.count(f'fill="{charts.BAD}"/></g>') == 1  # batch 1's p95 bar, not batch 8's
    assert "log scale" not in svg


def test_latency_chart_uses_a_log_axis_when_values_span_decades():
    svg = charts.latency_chart([("batch 1", {"p50_ms": 0.02, "p95_ms": 0.09, "p99_ms": 0.13})], budget_ms=50)
    assert "log scale" in svg and "0.01 ms" in svg and "100 ms" in svg


def test_delta_chart_marks_classes_over_the_limit():
    svg = charts.delta_chart(["a", "b", "c"], [-0.08, 0.0, None], limit=0.05)
    assert '<g class="row over-limit" data-class="a">' in svg
    assert "-8.0 pts" in svg and "±0.0 pts" in svg and "n/a" in svg
