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
from django.utils.html import escape

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
from rollouts.ui.pages import analysis_ticks, observed_share
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
# A query with a `<` in it that answers the same as the default (`or` an always-empty vector): the `<`
# must reach the page escaped.
GUARDED = PromQLTemplates().counters + " or vector(0) < 0"


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


def _check(run: AnalysisRun, name: str) -> dict:
    return next(c for c in run.evidence["checks"] if c["check"] == name)


def _svg_titled(page: str, title: str) -> str:
    """The first (desktop) drawing of the chart whose <title> starts with `title`."""
    at = page.index(f"<title>{title}")
    return page[page.rindex("<svg", 0, at):page.index("</svg>", at)]


# ----------------------------------------------------------------- reading

def test_pages_render_for_a_viewer(viewer_ui, story):
    s = story()
    assert s.rollout.phase == Phase.ROLLED_BACK
    listing = viewer_ui.get("/rollouts/")
    assert listing.status_code == 200
    body = listing.content.decode()
    assert f'href="/rollouts/{s.rollout.pk}/"' in body and "story" in body
    assert "rolled back" in body and "✗ fail" in body  # phase and the last verdict
    stopped = s.rollout.current_step
    assert f"step {stopped + 1} of 4 · {(10, 25, 50, 100)[stopped]}%" in body  # where it stopped, numbered from 1

    detail = viewer_ui.get(f"/rollouts/{s.rollout.pk}/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert 'aria-current="step"' in page and "ended here" in page
    rolled_back = s.rollout.events.get(new=Phase.ROLLING_BACK)
    assert escape(rolled_back.reason) in page and rolled_back.reason.startswith("analysis failed")  # the timeline
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
    # The canary starts thin, runs clean for a while, then degrades and fails once.
    assert verdicts[0] != "pass" and "pass" in verdicts and verdicts[-1] == "fail"
    assert verdicts.count("fail") == 1

    page = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    svg = _svg_titled(page, "Analysis history: burn rate")
    ticks = re.findall(r'<g class="tick v-(\w+)" data-verdict="\w+" data-at="([\d:]+)"', svg)
    assert [v for v, _ in ticks] == verdicts
    assert [at for _, at in ticks] == [f"{r.at:%H:%M:%S}" for r in runs]
    assert svg.count('class="fail-mark"') == 1
    # Each pair's threshold and the other two lines, read from the stored evidence.
    assert "14.4× · " in svg and "6× · " in svg
    rollback_at = _check(runs[-1], "canary_vs_stable_errors")["rollback_at_bayes_factor"]
    assert f"roll back ≥ {rollback_at:g}" in svg and "SLO p95 250 ms" in svg
    # One burn point per pair and window for every tick that had enough traffic to judge.
    judged = sum(1 for r in runs if _check(r, "burn_rate")["pairs"][0]["long_burn_rate"] is not None)
    assert len(re.findall(r'data-series="burn-0-long"', svg)) == judged < len(runs)
    assert len(re.findall(r'data-series="p95-canary"', svg)) >= len(runs) - 2
    failed = runs[-1]
    assert f"Analysis failed at {failed.at:%H:%M:%S} UTC (step {failed.step + 1})" in page


def test_last_analysis_lists_its_queries_and_escapes_them(viewer_ui, story):
    s = story("guarded", templates=PromQLTemplates(counters=GUARDED))
    last = AnalysisRun.objects.filter(rollout=s.rollout).order_by("-at").first()
    assert all(" or vector(0) < 0" in q["query"] for q in last.evidence["queries"])

    page = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    assert " or vector(0) &lt; 0" in page
    assert "vector(0) < 0" not in page
    assert '<code class="query">last_over_time({__name__=~&quot;mlcp_model_requests_total' in page
    assert 'model=&quot;guarded&quot;' in page
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


def test_roll_back_now_names_its_target_and_asks_for_confirmation(oncall_ui, live):
    page = oncall_ui.get("/rollouts/models/resnet/").content.decode()
    assert "Roll back resnet to v1" in page and f"rollout #{live.pk}" in page
    assert 'name="confirm" value="v1" required' in page

    response = oncall_ui.post("/rollouts/models/resnet/rollback", {"reason": "", "confirm": "v1"}, follow=True)
    assert any("Not rolled back" in m and "needs a reason" in m for m in _messages(response))
    response = oncall_ui.post("/rollouts/models/resnet/rollback", {"reason": "p95 doubled"}, follow=True)
    assert any("Not rolled back: confirm that resnet goes back to v1" in m for m in _messages(response))
    assert _fresh(live).phase == Phase.PENDING

    response = oncall_ui.post("/rollouts/models/resnet/rollback", {"reason": "p95 doubled", "confirm": "v1"},
                              follow=True)
    assert response.redirect_chain[-1][0] == f"/rollouts/{live.pk}/"
    rollout = _fresh(live)
    assert (rollout.phase, rollout.retreat_phase, rollout.abort_reason) == (
        Phase.ROLLING_BACK, Phase.ROLLED_BACK, "p95 doubled")
    assert RolloutEvent.objects.filter(rollout=live).last().actor == "alice"


def test_roll_back_with_nothing_to_roll_back_is_a_message(oncall_ui, resnet, make_version):
    make_version(resnet, "deployed", production=True)
    page = oncall_ui.get("/rollouts/models/resnet/").content.decode()
    assert "Nothing to roll back to: no earlier shippable version than v1" in page
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
    assert f"Rolled back:</strong> {s.rollout.abort_reason[:60]}" in page


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


def test_latency_axis_fits_fast_models_and_names_a_far_slo():
    svg = charts.analysis_history_chart([_tick(canary_p95_ms=3.2, stable_p95_ms=1.4)])
    assert "SLO p95 250 ms ↑ far above this scale" in svg and 'class="off-scale"' in svg
    assert ">500<" not in svg  # the axis is not stretched to twice the SLO


def test_an_empty_burn_panel_says_no_data():
    thin = _tick("inconclusive", pairs=[{"long_s": 50.0, "short_s": 30.0, "threshold": 14.4, "long": None,
                                         "short": None}])
    assert "no data: too few canary requests to judge burn rate" in charts.analysis_history_chart([thin])


def test_narrow_drawing_keeps_text_at_11_px_or_more():
    svg = charts.analysis_history_chart([_tick(), _tick("fail")], steps=[{"weight": 10}], frame=charts.NARROW)
    sizes = {float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)}
    assert min(sizes) >= 11 and 'width="340"' in svg
    assert "step 1 · 10%" in svg  # steps are numbered from 1


def test_the_minimum_gap_rule_is_named_when_it_saves_a_ratio():
    from rollouts.ui.pages import check_rule

    rule = check_rule({"check": "latency_p95", "verdict": "pass", "threshold_ms": 250, "max_ratio_to_stable": 1.5,
                       "min_gap_ms": 5, "ratio_to_stable": 3.0, "canary_p95_ms": 3.0, "stable_p95_ms": 1.0})
    assert "minimum-gap rule" in rule and "3.00× is over 1.5×" in rule and "within the 5 ms minimum gap" in rule


# ----------------------------------------------------------------- filters, live pages, words

def _pending_after(story, resnet, make_version):
    """The story, then (so the story's controller never ticks it) a pending rollout of resnet."""
    s = story()
    make_version(resnet, "deployed", production=True)
    return s, services.start_rollout(set_target(resnet), make_version(resnet), actor="ci-bot")


def test_rollouts_filter_by_phase_model_and_start_date(viewer_ui, story, resnet, make_version):
    s, live = _pending_after(story, resnet, make_version)

    def listed(query):
        page = viewer_ui.get(f"/rollouts/?{query}").content.decode()
        return sorted(int(pk) for pk in re.findall(r'data-rollout="(\d+)"', page))

    assert listed("") == sorted([s.rollout.pk, live.pk])
    assert listed("phase=active") == [live.pk] and listed("phase=rolled_back") == [s.rollout.pk]
    assert listed("model=STO") == [s.rollout.pk]
    assert listed("since=2024-05-01&until=2024-05-01") == [s.rollout.pk]  # the story started on T0's day
    assert listed("until=2020-01-01") == [] and "No rollout matches" in viewer_ui.get("/rollouts/?until=2020-01-01").content.decode()
    assert listed("since=not-a-date&phase=nonsense") == sorted([s.rollout.pk, live.pk])


def test_an_active_rollout_page_asks_to_be_polled_and_an_ended_one_does_not(viewer_ui, story, resnet, make_version):
    s, live = _pending_after(story, resnet, make_version)
    assert 'data-poll="3000"' in viewer_ui.get(f"/rollouts/{live.pk}/").content.decode()
    ended = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    assert "data-poll" not in ended.split("<body", 1)[1].split(">", 1)[0]
    for region in ("rollout-state", "controls-region", "rollout-timeline", "controller-liveness"):
        assert f'id="{region}" data-live' in ended


def test_the_rollout_page_draws_traffic_and_states_each_rule(viewer_ui, story):
    s = story()
    page = viewer_ui.get(f"/rollouts/{s.rollout.pk}/").content.decode()
    traffic = _svg_titled(page, "Canary share of traffic over time")
    observed = [observed_share(r.evidence) for r in AnalysisRun.objects.filter(rollout=s.rollout)]
    assert traffic.count('class="point observed"') == sum(1 for v in observed if v is not None) > 0
    assert 'class="intended"' in traffic and "step 1" in traffic
    assert page.count("Rule: ") == len(AnalysisRun.objects.filter(rollout=s.rollout).order_by("-at").first()
                                       .evidence["checks"])
    assert "Counted in this step&#x27;s window" in page or "Counted in this step's window" in page
    assert "stable <a" in page and "→ canary <a" in page  # the direction traffic moves


def test_observed_share_falls_back_to_the_request_counts_of_both_arms():
    evidence = {"step_window_s": 300.0, "queries": [{"name": "canary.requests.300s", "value": 30.0},
                                                     {"name": "stable.requests.300s", "value": 270.0}]}
    assert observed_share(evidence) == pytest.approx(0.1)
    assert observed_share({"checks": [{"check": "traffic_split", "observed_share": 0.25}]}) == 0.25
    assert observed_share({}) is None and observed_share("junk") is None
