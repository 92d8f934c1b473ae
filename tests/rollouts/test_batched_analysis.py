"""Many rollouts' analyses read in one batch: the same numbers, evidence and verdicts as one rollout at a time,
and a slow batch never delays a rollback."""

import threading
from concurrent import futures
from datetime import timedelta

import pytest

from k8s import Cluster, RetryPolicy
from rollouts import services
from rollouts.analysis import AnalysisConfig
from rollouts.circuit import MetricsCircuit
from rollouts.controller import Controller
from rollouts.metrics import (MetricsUnavailable, ObservationRequest, PrometheusMetricsProvider, TickAnalysis,
                              analyze_tick, observation_request)
from rollouts.strategy import Step
from k8s import RouterTarget
from tests.rollouts.test_controller_loop import T, _progressing

STEP = timedelta(minutes=10)


def _requests(split, incident):
    """Both recorded rollouts at a few instants, some sharing their windows' instants, one arm never deployed."""
    config = AnalysisConfig()
    at_split, at_incident = split.start + timedelta(minutes=15), incident.start + timedelta(minutes=25)
    return [
        observation_request(config, split.model, split.canary_version, split.stable_version, at_split, STEP),
        observation_request(config, split.model, split.canary_version, split.stable_version, at_split, STEP,
                            step_started_at=at_split - timedelta(minutes=4)),
        observation_request(config, incident.model, incident.canary_version, incident.stable_version, at_incident,
                            STEP),
        observation_request(config, incident.model, incident.canary_version, "never-deployed", at_incident, STEP),
    ]


@pytest.mark.parametrize("models_per_query, concurrent_batches", [(1000, 2), (1, 1), (1, 3)],
                         ids=["default", "a query per model, one at a time", "a query per model, three at a time"])
def test_a_batch_reads_what_each_rollout_reads_alone(prometheus, split_rollout, recorded_incident, models_per_query,
                                                     concurrent_batches):
    provider = PrometheusMetricsProvider(prometheus.url, timeout_s=5, concurrent_batches=concurrent_batches,
                                         models_per_query=models_per_query)
    requests = _requests(split_rollout, recorded_incident)
    batched = provider.observe_many(requests)
    for request in requests:
        alone, together = request.observe_with(provider), batched[request]
        assert [q.name for q in together.queries] == [q.name for q in alone.queries]
        assert [q.query for q in together.queries] == [q.query for q in alone.queries]  # replayable evidence
        for a, b in zip(alone.queries, together.queries):
            assert b.value == pytest.approx(a.value) and (a.raw is None) == (b.raw is None)
        for arm_alone, arm_together in ((alone.canary, together.canary), (alone.stable, together.stable)):
            assert arm_together.windows.keys() == arm_alone.windows.keys()
            for window, counted in arm_alone.windows.items():
                if counted is None:
                    assert arm_together.windows[window] is None
                    continue
                got = arm_together.windows[window]
                assert got.requests == pytest.approx(counted.requests) and got.errors == pytest.approx(counted.errors)
                assert got.latency_buckets == pytest.approx(counted.latency_buckets)
                assert got.classes == pytest.approx(counted.classes)
    assert batched[requests[3]].stable.step is None  # no series is no data, in a batch too


def test_a_batched_tick_analysis_judges_as_analyze_tick(prometheus, recorded_incident):
    provider = PrometheusMetricsProvider(prometheus.url, timeout_s=5)
    incident = recorded_incident
    traffic = RouterTarget.from_json({"namespace": "ml", "deployment": "fraud", "replicas": 10})
    step = Step(weight=10, pause_s=600, analysis=True)
    for minutes in (15, 25, 35):  # before, at and after the incident's onset
        now = incident.start + timedelta(minutes=minutes)
        kwargs = dict(step=step, traffic=traffic, step_started_at=incident.start, now=now)
        alone = analyze_tick(provider, AnalysisConfig(), incident.model, incident.canary_version,
                             incident.stable_version, **kwargs)
        analysis = TickAnalysis.of(AnalysisConfig(), incident.model, incident.canary_version,
                                   incident.stable_version, **kwargs)
        batched = analysis.judge(provider.observe_many([analysis.request])[analysis.request])
        assert (batched.verdict, batched.reason) == (alone.verdict, alone.reason)


def test_a_failed_batch_fails_only_the_requests_that_needed_it(prometheus, split_rollout, recorded_incident):
    class FailingAtOneInstant(PrometheusMetricsProvider):
        def _post_query(self, query, instant):
            if round(instant) == round(doomed.at.timestamp()):
                raise MetricsUnavailable("injected")
            return super()._post_query(query, instant)

    requests = _requests(split_rollout, recorded_incident)
    doomed = requests[2]
    results = FailingAtOneInstant(prometheus.url, timeout_s=5).observe_many(requests)
    assert isinstance(results[doomed], MetricsUnavailable) and isinstance(results[requests[3]], MetricsUnavailable)
    assert not isinstance(results[requests[0]], MetricsUnavailable)


def test_a_dead_prometheus_costs_one_failed_query_per_instant_not_one_per_part_of_it():
    """Two models analysed at one instant, a query per model: the first to fail fails its instant, and the rest
    of that instant's parts are not sent (each would wait out its own timeout on a hung server)."""
    class Dead(PrometheusMetricsProvider):
        sent: list = []

        def _post_query(self, query, instant):
            self.sent.append(instant)
            raise MetricsUnavailable("injected: connection refused")

    config = AnalysisConfig()
    requests = [observation_request(config, model, "2", "1", T, STEP) for model in ("model-a", "model-b")]
    provider = Dead("http://127.0.0.1:9", timeout_s=5, concurrent_batches=1, models_per_query=1)
    results = provider.observe_many(requests)
    assert all(isinstance(result, MetricsUnavailable) for result in results.values())
    instants = {instant for _, _, named in provider._arm_reads(requests[0]) for instant in named.values()}
    assert sorted(provider.sent) == sorted(instants)  # one per instant, where there are two parts of each


class HangingBatch:
    """A Prometheus whose batched read hangs until released."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def observe(self, *args, **kwargs):
        raise AssertionError("a batching controller reads in batches")

    def observe_many(self, requests):
        self.entered.set()
        self.release.wait()
        return {request: MetricsUnavailable("released") for request in requests}


@pytest.mark.django_db(transaction=True)
def test_a_slow_prometheus_batch_does_not_delay_a_rollback(make_version, kube_emulator):
    """Two rollouts analysed in one batch that hangs on Prometheus; on-call rolls one back, and the next tick
    retreats it at once, in the lane that needs no metrics, while the batch still hangs."""
    cluster = Cluster(kube_emulator.api_client(), retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    namespace, rollouts = _progressing(make_version, cluster, ("batch-a", "batch-b"))
    provider = HangingBatch()

    def until_the_batch_hangs(pending):
        assert provider.entered.wait(timeout=120), "the batch never reached Prometheus"
        return futures.wait(pending, timeout=0)
    controller = Controller(cluster, MetricsCircuit(provider), max_workers=1, wait_for_rollouts=until_the_batch_hangs)
    assert controller._batching()
    for rollout in rollouts.values():
        controller._ensure_step(rollout)
    kube_emulator.settle_deployments(namespace, "batch-a", "batch-a-canary", "batch-b", "batch-b-canary")
    a, b = rollouts["batch-a"], rollouts["batch-b"]
    try:
        first = controller.tick(T + timedelta(seconds=60))
        assert first[a.pk].startswith("timed out") and first[b.pk].startswith("timed out")
        services.rollback(a.model, reason="pager", actor="oncall")
        controller.wait_for_rollouts = lambda pending: futures.wait(pending)
        second = controller.tick(T + timedelta(seconds=61))
        assert second == {a.pk: "rolled_back", b.pk: "still running from an earlier tick"}
        assert not provider.release.is_set()  # the batch still hangs
        assert kube_emulator.object("apps/v1/deployments", namespace, "batch-a-canary")["spec"]["replicas"] == 0
    finally:
        provider.release.set()
        cluster.close()
