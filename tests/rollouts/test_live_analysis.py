"""The analysis on live parts (real `mlcp serve` processes, a real Prometheus
scraping them every second, the controller ticking): a canary that never
predicts one class is rolled back by the class-mix check alone, and a
backtest of a recorded rollout decides what the controller decided, at the
same ticks.
"""

import pytest

from devtools.embedded.prometheus import prometheus_server
from devtools.live_rollout import LIVE_ANALYSIS_WITH_CLASSES, never_predict
from devtools.reference_models import build_reference_model, golden_inputs_and_labels
from devtools.traffic import TrafficGenerator
from registry.models import RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.metrics import PrometheusMetricsProvider
from rollouts.models import AnalysisRun
from tests.factories import set_target
from tests.rollouts.test_live_rollouts import PODS, RATE_PER_S, ROLLOUT_TIMEOUT_S, Live

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
DROPPED = 3


@pytest.fixture(scope="module")
def prometheus():
    with prometheus_server(scrape_interval_s=1.0) as server:
        yield server


@pytest.fixture(scope="module")
def same_model():
    """The same trained model as stable and canary: they predict alike until the canary's fault switch says."""
    data = build_reference_model("resnet").onnx_bytes
    return data, data


def start(s: Live, analysis: dict, pause_s: int):
    set_target(s.model, {"namespace": s.namespace, "deployment": s.deployment, "replicas": PODS})
    steps = [{"weight": w, "pause_s": pause_s} for w in (10, 25, 50)] + [100]
    s.rollout = services.start_rollout(s.model, s.v2, actor="ci-bot", steps=steps, analysis=analysis)
    inputs, _ = golden_inputs_and_labels()
    budget_s = 2 * ROLLOUT_TIMEOUT_S
    s.traffic = TrafficGenerator(s.stable.url, s.canary.url, s.split, inputs, rate_per_s=RATE_PER_S,
                                 max_requests=int(RATE_PER_S * budget_s), max_seconds=budget_s, workers=4).start()


def test_canary_that_never_predicts_one_class_is_rolled_back_by_the_class_mix(
        same_model, kube_emulator, prometheus, tmp_path):
    s = Live("live-dropped-class", same_model, kube_emulator, prometheus, tmp_path)
    flipped = []

    def drop_a_class_once_the_canary_passes(rollout):
        # Once errors and latency have passed on the canary's own traffic, it silently stops
        # predicting a class: every answer still a 200, as fast as before.
        last = AnalysisRun.objects.filter(rollout=rollout).order_by("-pk").first()
        checks = {c["check"]: c["verdict"] for c in last.evidence["checks"]} if last else {}
        if not flipped and checks.get("latency_p95") == checks.get("canary_vs_stable_errors") == "pass":
            never_predict(s.canary, DROPPED)
            flipped.append(rollout.current_step)

    try:
        start(s, LIVE_ANALYSIS_WITH_CLASSES, pause_s=60)  # long steps: the fault lands in step 0
        rollout = s.drive(between_ticks=drop_a_class_once_the_canary_passes)
    finally:
        s.close()

    assert flipped == [0], "\n".join(s.lines)
    assert rollout.phase == Phase.ROLLED_BACK and rollout.current_step == 0, "\n".join(s.lines)
    failed = AnalysisRun.objects.get(rollout=rollout, verdict="fail")
    verdicts = {c["check"]: c["verdict"] for c in failed.evidence["checks"]}
    assert verdicts["class_mix"] == "fail", "\n".join(s.lines)
    assert verdicts["canary_vs_stable_errors"] == "pass", verdicts
    # The burn rate may not have enough requests in its long window yet on a busy machine, nor the latency
    # check in its window once it slid past the tick that passed it (inconclusive, seen once in a plain run);
    # neither may be what failed the canary.
    assert verdicts["burn_rate"] in ("pass", "inconclusive"), verdicts
    assert verdicts["latency_p95"] in ("pass", "inconclusive"), (verdicts, "\n".join(s.lines))
    class_mix = next(c for c in failed.evidence["checks"] if c["check"] == "class_mix")
    assert class_mix["moved"]  # named: the dropped class, or the runner-up that took its answers
    dropped = next(row for row in class_mix["classes"] if row["class"] == str(DROPPED))
    assert dropped["stable"] > 0 and dropped["canary_share"] < dropped["stable_share"] and dropped["residual"] < 0
    assert "class mix" in rollout.events.get(new=Phase.ROLLING_BACK).reason


def test_backtest_of_a_recorded_rollout_decides_as_the_controller_did_at_the_same_ticks(
        same_model, kube_emulator, prometheus, tmp_path):
    # Queries evaluated 2 s (two scrapes) back, so the backtest reads exactly the samples the controller read.
    analysis = {**LIVE_ANALYSIS_WITH_CLASSES, "evaluation_delay_s": 2}
    s = Live("live-backtested", same_model, kube_emulator, prometheus, tmp_path)
    try:
        start(s, analysis, pause_s=8)
        rollout = s.drive(between_ticks=lambda r: r.current_step == 1 and never_predict(s.canary, DROPPED))
    finally:
        s.close()
    runs = list(AnalysisRun.objects.filter(rollout=rollout).order_by("at", "pk"))
    assert runs and rollout.phase in (Phase.ROLLED_BACK, Phase.SUCCEEDED), "\n".join(s.lines)
    first_step = rollout.events.filter(new=Phase.PROGRESSING, step=0).earliest("at").at

    result = services.backtest(RegisteredModel.objects.get(pk=s.model.pk), first_step, runs[-1].at,
                               ticks=[r.at for r in runs], provider=PrometheusMetricsProvider(prometheus.url))

    analysed = [t for t in result.ticks if t.verdict is not None]
    assert [(t.at, t.step, t.verdict) for t in analysed] == [(r.at, r.step, r.verdict) for r in runs], \
        "\n".join(s.lines)
    for tick, run in zip(analysed, runs):
        assert tick.checks == {c["check"]: c["verdict"] for c in run.evidence["checks"]}
    expected = {Phase.ROLLED_BACK: "rolled_back", Phase.SUCCEEDED: "promoted"}[rollout.phase]
    assert (result.outcome, result.decided_at) == (expected, runs[-1].at)
