"""The on-call rollout UI: who sees and does what, the analysis history drawn from real AnalysisRun rows.

The rollouts here are driven by the real controller (kmock emulator for the
cluster, a real Prometheus holding recorded traffic), so the evidence the pages
read has exactly the shape the controller stores.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from controlplane.accounts import issue_token
from devtools.embedded.prometheus import (
    TrafficPhase,
    arm_traffic,
    prometheus_server,
)
from controlplane.roles import Role
from registry.choices import VersionStatus
from rollouts import services
from rollouts.choices import Phase
from rollouts.controller import Controller
from rollouts.metrics import PrometheusMetricsProvider, PromQLTemplates
from rollouts.models import AnalysisRun, Rollout, RolloutEvent
from rollouts.ui import charts
from rollouts.ui.pages import analysis_ticks
from tests.factories import set_target
from tests.rollouts.conftest import FAST, SLOW
from tests.rollouts.test_controller_scenarios import (  # noqa: F401 (fixture)
    T0,
    TICK,
    Scenario,
    _minutes,
    cluster,
)

pytestmark = pytest.mark.django_db
MEDIUM = {0.05: 0.2, 0.1: 0.5, 0.25: 0.97, 0.5: 1.0, 1.0: 1.0, float("inf"): 1.0}
# A real PromQL filter ("drop an absurd p95"): its `<` must reach the page escaped.
GUARDED_P95 = ("histogram_quantile(0.95, sum by (le) "
               "(rate(mlcp_model_request_duration_seconds_bucket{$selector}[$window]))) < 60")


@pytest.fixture(scope="module")
def recorded():
    """One story per model: the canary starts thin (inconclusive), runs clean, then degrades and fails."""
    canary = [TrafficPhase(_minutes(2), 1.0, 0.0, FAST), TrafficPhase(_minutes(7), 20.0, 0.0, FAST),
              TrafficPhase(_minutes(8), 20.0, 0.002, MEDIUM), TrafficPhase(_minutes(90), 20.0, 0.06, SLOW)]
    samples = []
    for model in ("story", "guarded"):
        samples += arm_traffic(model, "2", "canary", T0 - timedelta(seconds=15), canary)
        samples += arm_traffic(model, "1", "stable", _minutes(-15), [TrafficPhase(_minutes(90), 80.0, 0.0, FAST)])
    with prometheus_server(backfill=samples) as server:
        yield server


@pytest.fixture
def story(make_version, cluster, kube_emulator, recorded):  # noqa: F811
    """Runs model `name`'s rollout through the real controller until it stops; returns the Scenario."""
    def run(name="story", templates=None, until=None):
        provider = PrometheusMetricsProvider(recorded.url, timeout_s=5, templates=templates)
        s = Scenario(name, make_version, cluster, kube_emulator)
        s.start(now=T0)
        s.run(Controller(cluster, provider, max_workers=0), T0, until or _minutes(30))
        return s
    return run


def _login(role: Role, username: str | None = None) -> Client:
    username = username or f"{role.value}-ui"
    issue_token(username, role)
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


@pytest.fixture
def viewer_ui(db):
    return _login(Role.VIEWER)


@pytest.fixture
def oncall_ui(db):
    return _login(Role.ONCALL, "alice")


@pytest.fixture
def live(resnet, make_version):
    """A rollout of resnet v2 beside production v1, pending (nothing has ticked yet)."""
    make_version(resnet, "deployed", production=True)
    return services.start_rollout(set_target(resnet), make_version(resnet), actor="ci-bot")


def _fresh(rollout) -> Rollout:
    return Rollout.objects.get(pk=rollout.pk)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# ----------------------------------------------------------------- reading

def test_pages_render_for_a_viewer(viewer_ui, story):
    s = story()
    assert s.rollout.phase == Phase.ROLLED_BACK
    listing = viewer_ui.get("/rollouts/")
    assert listing.status_code == 200
    body = listing.content.decode()
    assert f'href="/rollouts/{s.rollout.pk}/"' in body and "story" in body
    assert "rolled back" in body and "✗ fail" in body  # phase and the last verdict
    assert "2/4 · 25%" in body  # where it stopped: step 1 of 4

    detail = viewer_ui.get(f"/rollouts/{s.rollout.pk}/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert 'aria-current="step"' in page and "ended here" in page
    assert "analysis failed at step 1 (25%)" in page  # the timeline's rollback event
    assert "<svg" in page and "Queries and values" in page
    assert 'id="controls"' not in page and "rollouts/models/story/rollback" not in page  # viewers only read

    model_page = viewer_ui.get("/rollouts/models/story/")
    assert model_page.status_code == 200 and "Roll back story" not in model_page.content.decode()
    assert viewer_ui.get("/rollouts/999999/").status_code == 404
    assert viewer_ui.get("/rollouts/models/nope/").status_code == 404


def test_registry_pages_link_to_rollouts(viewer_ui, resnet):
    page = viewer_ui.get("/models/resnet/").content.decode()
    assert 'href="/rollouts/models/resnet/"' in page and 'href="/rollouts/"' in page


def test_anonymous_users_are_sent_to_login(live):
    anonymous = Client()
    for url in ("/rollouts/", f"/rollouts/{live.pk}/", "/rollouts/models/resnet/"):
        response = anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    response = anonymous.post(f"/rollouts/{live.pk}/abort", {"reason": "x"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert _fresh(live).phase == Phase.PENDING


def test_burn_rate_history_has_one_column_per_analysis_and_marks_the_failing_tick(viewer_ui, story):
    s = story()
    runs = list(AnalysisRun.objects.filter(rollout=s.rollout).order_by("at"))
    verdicts = [r.verdict for r in runs]
    assert verdicts[0] == "inconclusive" and "pass" in verdicts and verdicts[-1] == "fail"
    assert verdicts.count("fail") == 1

    page = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    svg = page[page.index("<svg"):page.index("</svg>")]
    ticks = re.findall(r'<g class="tick v-(\w+)" data-verdict="\w+" data-at="([\d:]+)"', svg)
    assert [v for v, _ in ticks] == verdicts
    assert [at for _, at in ticks] == [f"{r.at:%H:%M:%S}" for r in runs]
    assert svg.count('class="fail-mark"') == 1
    # Each pair's threshold and the other two lines, read from the stored evidence.
    assert "14.4× · " in svg and "6× · " in svg
    assert "roll back ≥ 20" in svg and "SLO p95 250 ms" in svg
    # One burn point per pair and window for every tick that had enough traffic to judge.
    judged = sum(1 for r in runs if r.evidence["checks"][0]["pairs"][0]["long_burn_rate"] is not None)
    assert len(re.findall(r'data-series="burn-0-long"', svg)) == judged < len(runs)
    assert len(re.findall(r'data-series="p95-canary"', svg)) >= len(runs) - 2
    failed = runs[-1]
    assert f"Analysis failed at {failed.at:%H:%M:%S} (step 1)" in page


def test_last_analysis_lists_its_queries_and_escapes_them(viewer_ui, story):
    s = story("guarded", templates=PromQLTemplates(p95=GUARDED_P95))
    last = AnalysisRun.objects.filter(rollout=s.rollout).order_by("-at").first()
    assert any(q["query"].endswith(") < 60") for q in last.evidence["queries"])

    page = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    assert "))) &lt; 60</code>" in page
    assert ") < 60" not in page
    assert '<code class="query">sum(increase(mlcp_model_requests_total{model=&quot;guarded&quot;' in page
    for q in last.evidence["queries"]:
        assert f"<code>{q['name']}</code>" in page


# ----------------------------------------------------------------- on-call

def test_oncall_pause_resume_and_abort_through_the_ui(oncall_ui, live):
    url = f"/rollouts/{live.pk}/"
    page = oncall_ui.get(url).content.decode()
    assert 'id="controls"' in page and "csrfmiddlewaretoken" in page

    response = oncall_ui.post(url + "pause", {"reason": "waiting for the traffic peak"}, follow=True)
    assert response.status_code == 200 and _fresh(live).phase == Phase.PAUSED
    assert f"Rollout {live.pk} paused." in _messages(response)
    oncall_ui.post(url + "resume", {"reason": ""})
    assert _fresh(live).phase == Phase.PROGRESSING

    response = oncall_ui.post(url + "abort", {"reason": "  <b>wrong</b> traffic config  "}, follow=True)
    rollout = _fresh(live)
    assert (rollout.phase, rollout.retreat_phase) == (Phase.ROLLING_BACK, Phase.ABORTED)
    assert rollout.abort_reason == "<b>wrong</b> traffic config"
    event = RolloutEvent.objects.filter(rollout=live).last()
    assert (event.new, event.actor, event.reason) == (Phase.ROLLING_BACK, "alice", "<b>wrong</b> traffic config")
    body = response.content.decode()
    assert "&lt;b&gt;wrong&lt;/b&gt; traffic config" in body and "<b>wrong</b>" not in body


def test_abort_without_a_reason_changes_nothing_and_says_why(oncall_ui, live):
    response = oncall_ui.post(f"/rollouts/{live.pk}/abort", {"reason": "   "}, follow=True)
    assert response.status_code == 200
    assert _fresh(live).phase == Phase.PENDING and live.events.count() == 1
    assert any("not aborted" in m and "say why" in m for m in _messages(response))


def test_illegal_control_is_a_message_not_an_error(oncall_ui, live):
    response = oncall_ui.post(f"/rollouts/{live.pk}/resume", {}, follow=True)
    assert response.status_code == 200 and _fresh(live).phase == Phase.PENDING
    assert any("not resumed" in m and "not paused" in m for m in _messages(response))


@pytest.mark.parametrize("action", ["pause", "resume", "abort"])
def test_a_viewer_cannot_steer_a_rollout(viewer_ui, live, action):
    response = viewer_ui.post(f"/rollouts/{live.pk}/{action}", {"reason": "I am only looking"})
    assert response.status_code == 403
    assert _fresh(live).phase == Phase.PENDING and live.events.count() == 1


def test_a_viewer_cannot_roll_back(viewer_ui, live):
    assert viewer_ui.post("/rollouts/models/resnet/rollback", {"reason": "x"}).status_code == 403
    assert _fresh(live).phase == Phase.PENDING


def test_controls_need_post_and_a_csrf_token(live):
    client = _login(Role.ONCALL)
    assert client.get(f"/rollouts/{live.pk}/abort").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.get(username="oncall-ui"))
    assert strict.post(f"/rollouts/{live.pk}/abort", {"reason": "no token"}).status_code == 403
    assert _fresh(live).phase == Phase.PENDING


def test_roll_back_now_from_the_models_rollouts(oncall_ui, live):
    page = oncall_ui.get("/rollouts/models/resnet/").content.decode()
    assert "Roll back resnet" in page and f"rollout #{live.pk}" in page

    response = oncall_ui.post("/rollouts/models/resnet/rollback", {"reason": ""}, follow=True)
    assert any("Not rolled back" in m and "needs a reason" in m for m in _messages(response))
    assert _fresh(live).phase == Phase.PENDING

    response = oncall_ui.post("/rollouts/models/resnet/rollback", {"reason": "p95 doubled"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/rollouts/{live.pk}/"
    rollout = _fresh(live)
    assert (rollout.phase, rollout.retreat_phase, rollout.abort_reason) == (
        Phase.ROLLING_BACK, Phase.ROLLED_BACK, "p95 doubled")
    assert RolloutEvent.objects.filter(rollout=live).last().actor == "alice"


def test_roll_back_with_nothing_to_roll_back_is_a_message(oncall_ui, resnet, make_version):
    make_version(resnet, "deployed", production=True)
    response = oncall_ui.post("/rollouts/models/resnet/rollback", {"reason": "bad"}, follow=True)
    assert response.status_code == 200
    assert any("Not rolled back" in m and "no earlier" in m for m in _messages(response))
    assert not Rollout.objects.exists()


def test_admin_holds_the_oncall_controls(live):
    admin = _login(Role.ADMIN)
    admin.post(f"/rollouts/{live.pk}/pause", {"reason": ""})
    assert _fresh(live).phase == Phase.PAUSED


def test_rolled_back_version_status_reads_on_the_page(viewer_ui, story):
    s = story()
    s.v2.refresh_from_db()
    assert s.v2.status == VersionStatus.ROLLED_BACK
    page = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    assert "Rolled back:</strong> analysis failed at step 1" in page


# ----------------------------------------------------------------- the chart, pure

def _tick(verdict="pass", **over):
    tick = {"at": "12:00:00", "step": 0, "verdict": verdict, "reason": "every check passed",
            "pairs": [{"long_s": 50.0, "short_s": 30.0, "threshold": 14.4, "long": 0.5, "short": 0.2},
                      {"long_s": 300.0, "short_s": 30.0, "threshold": 6.0, "long": 0.4, "short": 0.2}],
            "bf": 1.0, "log10_bf": 0.0, "bf_rollback": 20.0, "bf_pass": 1.0,
            "canary_p95_ms": 90.0, "stable_p95_ms": 85.0, "latency_threshold_ms": 250.0}
    return tick | over


def test_chart_without_analyses_says_so():
    assert "no analysis has run yet" in charts.analysis_history_chart([])


def test_chart_escapes_every_text():
    svg = charts.analysis_history_chart([_tick("fail", reason='canary <script>alert("x")</script> & co', at="<t>")])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp; co" in svg and "&lt;t&gt;" in svg


def test_chart_clips_outliers_and_keeps_their_numbers():
    huge = _tick("fail", bf=7.8e81, log10_bf=81.9, pairs=[{"long_s": 50.0, "short_s": 30.0, "threshold": 14.4,
                                                            "long": 1000.0, "short": 900.0}])
    svg = charts.analysis_history_chart([_tick(), huge])
    assert svg.count('class="point clipped"') == 3  # two burn windows and the Bayes factor
    assert "burns 1000×" in svg and "Bayes factor 7.8e+81" in svg


def test_chart_tolerates_evidence_without_numbers():
    odd = {"at": "12:01:00", "step": 0, "verdict": "inconclusive", "reason": "no data",
           "pairs": [{"long": None, "short": float("nan"), "threshold": "x"}], "bf": None, "log10_bf": None,
           "canary_p95_ms": None, "stable_p95_ms": None}
    svg = charts.analysis_history_chart([odd, {"verdict": "pass"}])
    assert svg.count('class="tick ') == 2 and 'class="point' not in svg


def test_ticks_from_evidence_an_older_controller_wrote():
    runs = [AnalysisRun(step=0, at=T0, verdict="inconclusive", reason="", evidence={}),
            AnalysisRun(step=0, at=T0 + TICK, verdict="pass", reason="", evidence={"checks": ["junk", {"check": 1}]})]
    ticks = analysis_ticks(runs)
    assert [t["pairs"] for t in ticks] == [[], []]
    assert "<svg" in charts.analysis_history_chart(ticks)


# ----------------------------------------------------------------- for a look

@pytest.mark.skipif(not __import__("os").environ.get("MLCP_UI_SNAPSHOT_DIR"),
                    reason="set MLCP_UI_SNAPSHOT_DIR to write the pages as HTML (CSS inlined) for a browser")
def test_write_pages_for_a_look(story, resnet, make_version):
    import os
    from pathlib import Path

    out = Path(os.environ["MLCP_UI_SNAPSHOT_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    css = (Path(__file__).parents[2] / "ui/static/ui/ui.css").read_text()
    s = story()
    make_version(resnet, "deployed", production=True)
    live = services.start_rollout(set_target(resnet), make_version(resnet), actor="ci-bot")
    oncall = _login(Role.ONCALL, "alice")
    pages = {"detail": f"/rollouts/{s.rollout.pk}/", "list": "/rollouts/", "model": "/rollouts/models/story/",
             "live": f"/rollouts/{live.pk}/"}
    for name, url in pages.items():
        html = oncall.get(url).content.decode()
        html = re.sub(r'<link rel="stylesheet"[^>]*>', f"<style>{css}</style>", html)
        (out / f"{name}.html").write_text(html)
