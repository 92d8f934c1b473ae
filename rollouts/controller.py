"""The rollout controller: level-triggered, one idempotent step per rollout per tick.

Each tick, for every active rollout, it reads what the database wants
(`RolloutState`), what the cluster and Prometheus say (`Observed`), asks the
pure `plan()` for one `Action`, and `apply()`s it: database first (by
compare-and-set, so an on-call change made meanwhile wins), cluster second
(idempotent "ensure" calls, so a crash between the two is repaired next tick).
Nothing lives only in memory: a new `Controller` resumes mid-step.

Work that needs no metrics (starting, promoting, retreating) runs in a lane of
worker threads of its own, so an analysis stuck on Prometheus never delays a
rollback; within a lane the rollout that waited longest goes first. Every
write is fenced by the controller lease (`rollouts.lease`): a controller that
lost it, or cannot renew it, writes nothing more.
"""

from __future__ import annotations

import enum
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from concurrent import futures
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from controlplane.errors import IllegalTransition, InvalidInput, MlcpError
from k8s import (CanarySpec, ClusterObjectMissing, DeploymentWorkloads, RouterTarget, RouteState, TrafficRouter,
                 build_router, connect)
from rollouts import services
from rollouts.analysis import Verdict
from rollouts.choices import ACTIVE, Phase
from rollouts.circuit import MetricsCircuit
from rollouts.history import AnalysisRecord, record_analyses, record_analysis
from rollouts.lease import (LEASE_PK, FencedCluster, Grant, LeaseKeeper, LeaseLost, acquire_lease, acting_under,
                            check_fence, release_lease, require_grant)
from rollouts.liveness import observe_tick
from rollouts.metrics import MetricsUnavailable, TickAnalysis, analysed_steps_of, analyze_tick
from rollouts.models import ControllerLease, Rollout
from rollouts.strategy import Step

log = logging.getLogger(__name__)
ACTOR = services.CONTROLLER


# ------------------------------------------------------------ plain values

@dataclass(frozen=True)
class RolloutState:
    """What the database wants, as plain values."""

    id: int
    phase: str
    current_step: int
    steps: tuple[Step, ...]
    traffic: RouterTarget
    canary_version: str
    stable_version: str | None = None
    step_started_at: datetime | None = None
    deadline_at: datetime | None = None

    @property
    def step(self) -> Step:
        return self.steps[min(self.current_step, len(self.steps) - 1)]

    @classmethod
    def of(cls, rollout: Rollout) -> "RolloutState":
        return cls(id=rollout.pk, phase=rollout.phase, current_step=rollout.current_step,
                   steps=services.steps_of(rollout), traffic=RouterTarget.from_json(rollout.traffic),
                   canary_version=str(rollout.version.number),
                   stable_version=str(rollout.stable_version.number) if rollout.stable_version_id else None,
                   step_started_at=rollout.step_started_at, deadline_at=rollout.deadline_at)


@dataclass(frozen=True)
class AnalysisOutcome:
    verdict: Verdict
    reason: str
    evidence: dict


@dataclass(frozen=True)
class Observed:
    """What the cluster and Prometheus said this tick. Errors are text, not exceptions."""

    now: datetime
    route: RouteState | None = None
    canary_version: str | None = None
    canary_ready: bool = False
    analysis: AnalysisOutcome | None = None
    metrics_error: str = ""
    cluster_error: str = ""


class Do(enum.StrEnum):
    NOTHING = "nothing"
    HOLD = "hold"
    START = "start"  # pending -> progressing at step 0
    ENSURE_STEP = "ensure_step"  # canary and weights as the current step wants
    NEXT_STEP = "next_step"
    BEGIN_PROMOTION = "begin_promotion"
    PROMOTE = "promote"  # the stable takes the canary's template; then production moves
    ROLL_BACK = "roll_back"
    ABORT = "abort"
    RETREAT = "retreat"  # all traffic to stable, canary to zero, then the end phase


@dataclass(frozen=True)
class Action:
    do: Do
    rollout_id: int
    phase: str  # the phase the plan saw: apply acts only if it still holds
    step: int
    reason: str = ""
    to_step: int | None = None
    analysis: AnalysisOutcome | None = None


# --------------------------------------------------------------- the plan

def plan(state: RolloutState, observed: Observed) -> Action:
    """The one next action for `state`, given what was `observed`. No I/O."""
    def act(do, reason="", **kw):
        return Action(do, state.id, state.phase, state.current_step, reason, **kw)

    if state.phase == Phase.PENDING:
        return act(Do.BEGIN_PROMOTION, "the only step is 100%") if state.steps[0].promotes else act(Do.START)
    if state.phase == Phase.PROMOTING:
        return act(Do.PROMOTE)
    if state.phase == Phase.ROLLING_BACK:
        return act(Do.RETREAT)
    if state.phase != Phase.PROGRESSING:
        return act(Do.NOTHING)

    step, index = state.step, state.current_step
    overdue = state.deadline_at is not None and observed.now >= state.deadline_at

    def hold(reason, analysis=None):
        if overdue:
            return act(Do.ABORT, f"step {index + 1} ({step.weight}%) did not pass by its deadline "
                                 f"{state.deadline_at:%Y-%m-%d %H:%M:%S}Z: {reason}", analysis=analysis)
        return act(Do.HOLD, reason, analysis=analysis)

    if observed.cluster_error:
        return hold(f"Kubernetes API: {observed.cluster_error}")
    if step.promotes:
        return act(Do.BEGIN_PROMOTION)
    if (observed.canary_version != state.canary_version
            or observed.route != build_router(state.traffic, None).expected(step.weight)):
        return act(Do.ENSURE_STEP, f"set step {index + 1}: {step.weight}% to the canary")
    if not observed.canary_ready:
        return hold("waiting for the canary's pods to be ready")
    analysis = observed.analysis
    if step.analysis:
        if analysis is None:
            return hold(f"no analysis: {observed.metrics_error or 'not run'}")
        if analysis.verdict == Verdict.FAIL:
            return act(Do.ROLL_BACK, f"analysis failed at step {index + 1} ({step.weight}%): {analysis.reason}",
                       analysis=analysis)
        if analysis.verdict == Verdict.INVALID:
            # The canary does not get the share it was set to: nothing it shows may promote it.
            return hold(f"analysis invalid: {analysis.reason}", analysis)
        if analysis.verdict != Verdict.PASS:
            return hold(f"analysis inconclusive: {analysis.reason}", analysis)
    pause_until = (state.step_started_at or observed.now) + timedelta(seconds=step.pause_s)
    if observed.now < pause_until:
        return act(Do.HOLD, f"step {index + 1} ({step.weight}%) holds until {pause_until:%H:%M:%S}Z"
                   + (" (analysis passes)" if step.analysis else ""), analysis=analysis)
    nxt = index + 1
    if state.steps[nxt].promotes:
        return act(Do.BEGIN_PROMOTION, f"step {index + 1} ({step.weight}%) passed; promoting", to_step=nxt,
                   analysis=analysis)
    return act(Do.NEXT_STEP, f"step {index + 1} ({step.weight}%) passed; step {nxt + 1}: {state.steps[nxt].weight}%",
               to_step=nxt, analysis=analysis)


# ---------------------------------------------------------- the controller

# Waits on a tick's {future: rollout id}; returns (done, not done) futures, as
# `concurrent.futures.wait` does.
WaitForRollouts = Callable[[dict[futures.Future, int]], tuple[set[futures.Future], set[futures.Future]]]


# Phases whose next step needs no metrics: they run in a lane of their own, so a
# rollback never queues behind an analysis waiting on Prometheus.
NEEDS_NO_METRICS = frozenset({Phase.PENDING, Phase.PROMOTING, Phase.ROLLING_BACK})


class _Lane:
    """A fixed set of worker threads for one kind of work, fed in the order it is submitted.

    Daemon threads: one stuck in a call at shutdown must not hold the process
    (and with it the lease's release); whatever it does afterwards is fenced.
    """

    def __init__(self, name: str, workers: int) -> None:
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        for number in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, fn, *args) -> futures.Future:
        future: futures.Future = futures.Future()
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            future, fn, args = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # the future carries it to whoever waits
                future.set_exception(exc)


class _Stopping(Exception):
    """The controller is shutting down: a step not yet begun is not begun."""


class Controller:
    """Reconciles every active rollout against one cluster and one metrics provider."""

    def __init__(self, cluster, provider, *, max_workers: int = 4, rollout_timeout_s: float = 60.0,
                 fetcher_image: str | None = None, wait_for_rollouts: WaitForRollouts | None = None,
                 lease: LeaseKeeper | None = None, batch_analysis: bool = True) -> None:
        self.cluster = cluster
        self.provider = provider
        # Every cluster call, each retry included, first checks the lease its thread acts under.
        self.workloads = DeploymentWorkloads(FencedCluster.around(cluster),
                                             **({"fetcher_image": fetcher_image} if fetcher_image else {}))
        self.max_workers = max_workers
        # Progressing rollouts observed together: one Deployment list per namespace and one
        # Prometheus query per (instant, lookback) for all of them (`_reconcile_batch`), where the
        # provider can read in batches (asked on the first tick that has a progressing rollout).
        self.batch_analysis = batch_analysis
        self._provider_batches: bool | None = None
        self.rollout_timeout_s = rollout_timeout_s
        self.lease = lease
        # How a tick waits for its rollouts' threads; tests put a condition in
        # place of the wall-clock budget, which would make them depend on how
        # fast the machine is.
        self.wait_for_rollouts = wait_for_rollouts or self._wait_up_to_the_timeout
        self._lock = threading.Lock()
        self._lanes: tuple[_Lane, _Lane] | None = None
        self._in_flight: set[tuple[str, int]] = set()  # (lane, rollout id)
        self._queued: set[futures.Future] = set()
        self._last_turn: dict[int, float] = {}  # rollout id -> monotonic time its last reconcile ended
        # One step applied at a time per rollout, across lanes; `stop()` waits for those under way.
        self._rollout_locks: dict[int, threading.Lock] = {}
        self._applying = threading.Condition()
        self._steps_under_way = 0
        self._stopping = False

    @classmethod
    def from_settings(cls, **kwargs) -> "Controller":
        cluster = connect(settings.MLCP_K8S_HOST or None, kubeconfig=settings.KUBECONFIG or None)
        return cls(cluster, MetricsCircuit(services.metrics_provider()), **kwargs)

    # --- the loop ---------------------------------------------------------

    def tick(self, now: datetime | None = None, *, grant: Grant | None = None) -> dict[int, str]:
        """Reconcile every active, unpaused rollout once; {rollout id: what happened}.

        The rollout that waited longest goes first (then the one whose state is
        oldest), not the lowest id. `now` fixes every rollout's instant (tests
        drive time so); otherwise each takes its own when its turn comes, so the
        last of many is not judged on a stale one. Writes are fenced by `grant`,
        or by this controller's lease keeper's; raises `LeaseLost` without one.
        """
        grant = grant or self._grant()
        rows = list(Rollout.objects.filter(phase__in=ACTIVE - {Phase.PAUSED})
                    .values_list("pk", "phase", "updated_at"))
        with self._lock:
            rows.sort(key=lambda row: (self._last_turn.get(row[0], 0.0), row[2], row[0]))
        if self.max_workers <= 0:
            with acting_under(grant):
                return {pk: self._turn(pk, now) for pk, _, _ in rows}
        fast, analysis = self._start_lanes()
        results: dict[int, str] = {}
        pending: dict[futures.Future, int] = {}
        batch: list[tuple[int, futures.Future]] = []
        for pk, phase, _ in rows:
            lane = fast if phase in NEEDS_NO_METRICS else analysis
            with self._lock:
                if (lane.name, pk) in self._in_flight:
                    results[pk] = "still running from an earlier tick"
                    continue
                self._in_flight.add((lane.name, pk))
                if phase == Phase.PROGRESSING and self._batching():
                    future = futures.Future()  # settled by the batch below
                    batch.append((pk, future))
                else:
                    future = lane.submit(self._reconcile_in_thread, pk, now, grant)
                self._queued.add(future)
            future.add_done_callback(functools.partial(self._landed, lane.name, pk))
            pending[future] = pk
        if batch:
            analysis.submit(self._reconcile_batch, batch, now, grant)
        done, not_done = self.wait_for_rollouts(pending)
        for future in done:
            results[pending[future]] = "cancelled" if future.cancelled() else future.result()
        for future in not_done:
            # It goes on in its lane; the next tick skips it until it lands.
            results[pending[future]] = f"timed out after {self.rollout_timeout_s:.0f}s (still running)"
            log.info("rollout %s: reconcile still running after %ss", pending[future], self.rollout_timeout_s)
        return results

    def _grant(self) -> Grant | None:
        if self.lease is None:
            return None
        grant = self.lease.grant()
        if grant is None:
            raise LeaseLost(f"{self.lease.holder} does not hold the controller lease")
        return grant

    def _start_lanes(self) -> tuple[_Lane, _Lane]:
        if self._lanes is None:
            self._lanes = (_Lane("no-metrics", self.max_workers), _Lane("analysis", self.max_workers))
        return self._lanes

    def _landed(self, lane: str, pk: int, future: futures.Future) -> None:
        with self._lock:
            self._in_flight.discard((lane, pk))
            self._queued.discard(future)

    def _wait_up_to_the_timeout(self, pending: dict[futures.Future, int]) -> tuple[set, set]:
        return futures.wait(pending, timeout=self.rollout_timeout_s)

    def _reconcile_in_thread(self, pk: int, now: datetime | None, grant: Grant | None) -> str:
        try:
            close_old_connections()
            with acting_under(grant):
                return self._turn(pk, now)
        finally:
            connection.close()

    # --- many progressing rollouts at once ------------------------------------

    def _batching(self) -> bool:
        if not self.batch_analysis:
            return False
        if self._provider_batches is None:
            self._provider_batches = _batches(self.provider)
        return self._provider_batches

    def _reconcile_batch(self, batch: list[tuple[int, futures.Future]], now: datetime | None,
                         grant: Grant | None) -> None:
        """Reconcile progressing rollouts together, settling each one's future as it is done.

        One query reads them all, one list per namespace their Deployments, and
        one Prometheus query per (instant, lookback) every arm of every analysis;
        all share one instant, so rollouts whose steps began at the same tick
        share their windows' instants too. A rollout whose next step needs no
        metrics, or that must roll back, gets its own reconcile in the analysis
        lane at once; the holds are written together, and only where they change
        something (plus the analysis history). A batch never holds up the other
        lane, where every on-call rollback and every retreat runs.
        """
        futures_by_pk = {pk: future for pk, future in batch if future.set_running_or_notify_cancel()}
        if not futures_by_pk:
            return
        try:
            close_old_connections()
            with acting_under(grant):
                self._observe_and_plan_batch(futures_by_pk, now, grant)
        except BaseException as exc:  # every rollout still waiting hears of it
            log.exception("batch of %s rollouts failed", len(futures_by_pk))
            for pk, future in futures_by_pk.items():
                if not future.done():
                    future.set_result(f"error: {exc.__class__.__name__}")
                    self._mark_turn(pk)
        finally:
            connection.close()

    def _observe_and_plan_batch(self, futures_by_pk: dict[int, futures.Future], now: datetime | None,
                                grant: Grant | None) -> None:
        rollouts = {r.pk: r for r in Rollout.objects.select_related("model", "version", "stable_version")
                    .filter(pk__in=list(futures_by_pk), phase=Phase.PROGRESSING)}
        for pk in set(futures_by_pk) - set(rollouts):  # moved on since the tick listed it
            self._settle(futures_by_pk, pk, self._delegate(pk, now, grant))
        clock = _Phases()
        states = {pk: RolloutState.of(rollout) for pk, rollout in rollouts.items()}
        clock.lap("read")
        listed = self.workloads.listed({state.traffic.namespace for state in states.values()})
        clock.lap("listed")
        instant = now or timezone.now()
        analyses: dict[int, TickAnalysis] = {}
        observed: dict[int, Observed] = {}
        waiting: list[tuple[Action, Rollout]] = []  # holds that need no metrics: written before asking
        for pk, state in states.items():
            observed[pk], analyses_for = self._observe_cluster(rollouts[pk], state, instant, listed)
            if analyses_for is not None:
                analyses[pk] = analyses_for
                continue
            action = plan(state, observed[pk])
            if action.do == Do.HOLD:
                waiting.append((action, rollouts[pk]))
            else:
                self._act(futures_by_pk, pk, action, instant, grant)
        if waiting:
            for pk, outcome in self._apply_holds(waiting, instant).items():
                self._settle(futures_by_pk, pk, outcome)
        clock.lap("planned")
        if not analyses:
            return
        reports = self.provider.observe_many(list({a.request for a in analyses.values()}))
        clock.lap("metrics")
        holds: list[tuple[Action, Rollout]] = []
        for pk, analysis in analyses.items():
            result = reports[analysis.request]
            if isinstance(result, MetricsUnavailable):
                seen = replace(observed[pk], metrics_error=f"Prometheus unavailable: {result.detail}")
            else:
                report = analysis.judge(result)
                seen = replace(observed[pk], analysis=AnalysisOutcome(report.verdict, report.reason,
                                                                      report.evidence()))
            action = plan(states[pk], seen)
            if action.do == Do.HOLD:
                holds.append((action, rollouts[pk]))
            else:  # a rollback, a next step, a promotion: each on its own, at once
                self._act(futures_by_pk, pk, action, instant, grant)
        clock.lap("judged")
        if holds:
            outcomes = self._apply_holds(holds, instant)
            for pk, outcome in outcomes.items():
                self._settle(futures_by_pk, pk, outcome)
        clock.lap("written")
        log.info("batch of %s rollouts (%s analysed): %s", len(rollouts), len(analyses), clock)

    def _observe_cluster(self, rollout: Rollout, state: RolloutState, now: datetime, listed):
        """(what the cluster says, the analysis to run or None), from the tick's Deployment listing."""
        traffic = state.traffic
        try:
            stable = listed.read_stable(traffic.namespace, traffic.deployment)
            canary = listed.read_canary(traffic.namespace, traffic.deployment)
            route = build_router(traffic, listed).observe()
        except MlcpError as exc:
            return Observed(now, cluster_error=exc.detail), None
        observed = Observed(now, route=route, canary_version=canary.version if canary else None,
                            canary_ready=bool(canary and canary.ready))
        step = state.step
        if not (step.analysis and observed.canary_ready and observed.canary_version == state.canary_version
                and not step.promotes and observed.route == build_router(traffic, None).expected(step.weight)):
            return observed, None  # plan() decides without metrics
        analysis = TickAnalysis.of(services.analysis_of(rollout).config, rollout.model.name, state.canary_version,
                                   state.stable_version or stable.version or "none", step=step, traffic=traffic,
                                   step_started_at=state.step_started_at, now=now,
                                   analysed_steps=analysed_steps_of(state.steps))
        return observed, analysis

    def _act(self, futures_by_pk, pk: int, action: Action, now: datetime, grant: Grant | None) -> None:
        """Apply one planned action in a reconcile of its own, at once: a rollback or an abort in the lane
        that needs no metrics, anything else in the analysis lane (it never waits on metrics either)."""
        fast, analysis = self._start_lanes()
        lane = fast if action.do in (Do.ROLL_BACK, Do.ABORT) else analysis
        inner = lane.submit(self._apply_in_thread, action, now, grant)
        inner.add_done_callback(lambda done: self._settle(
            futures_by_pk, pk, "cancelled" if done.cancelled() else done.result()))

    def _delegate(self, pk: int, now: datetime | None, grant: Grant | None) -> str:
        with acting_under(grant):
            return self.reconcile(pk, now)

    def _apply_in_thread(self, action: Action, now: datetime, grant: Grant | None) -> str:
        try:
            close_old_connections()
            with acting_under(grant):
                return self._guarded(action.rollout_id, lambda: self._apply_step(action, now))
        finally:
            connection.close()

    def _apply_step(self, action: Action, now: datetime) -> str:
        with self._step(action.rollout_id):
            return self.apply(action, now)

    def _apply_holds(self, holds: list[tuple[Action, Rollout]], now: datetime) -> dict[int, str]:
        """Write many holds at once: a message only where it changed, the analyses in one insert.

        Each hold is still compare-and-set: a rollout whose phase or step
        changed since it was read (on-call, the other lane) is superseded.
        """
        try:
            require_grant()
            with self._applying:
                if self._stopping:
                    return {action.rollout_id: "stopped" for action, _ in holds}
                self._steps_under_way += 1
            try:
                return self._write_holds(holds, now)
            finally:
                with self._applying:
                    self._steps_under_way -= 1
                    self._applying.notify_all()
        except LeaseLost as exc:
            log.info("%s holds: %s; nothing written", len(holds), exc)
            return {action.rollout_id: "lease lost" for action, _ in holds}
        except DatabaseError as exc:
            log.warning("%s holds: database error, retried next tick: %s", len(holds), exc)
            return {action.rollout_id: "error: database" for action, _ in holds}

    def _write_holds(self, holds: list[tuple[Action, Rollout]], now: datetime) -> dict[int, str]:
        current = {pk: (phase, step) for pk, phase, step in Rollout.objects.filter(
            pk__in=[action.rollout_id for action, _ in holds]).values_list("pk", "phase", "current_step")}
        outcomes, runs = {}, []
        said: dict[tuple[str, int], dict[int, str]] = {}  # (phase, step) -> {rollout id: new message}
        for action, rollout in holds:
            if current.get(action.rollout_id) != (action.phase, action.step):
                outcomes[action.rollout_id] = "superseded"
                continue
            outcomes[action.rollout_id] = "hold"
            if action.analysis is not None:
                # A hold decides nothing: it is compacted with its step's others in time.
                runs.append(AnalysisRecord(action.rollout_id, action.step, at=now, verdict=action.analysis.verdict,
                                           reason=action.analysis.reason, evidence=action.analysis.evidence,
                                           decisive=False))
            if rollout.message != action.reason[:2000]:
                said.setdefault((action.phase, action.step), {})[action.rollout_id] = action.reason[:2000]
        if runs:
            record_analyses(runs)
        for (phase, step), messages in said.items():
            _say_many(phase, step, messages)
        return outcomes

    def _settle(self, futures_by_pk, pk: int, outcome: str) -> None:
        self._mark_turn(pk)
        future = futures_by_pk[pk]
        if not future.done():
            future.set_result(outcome)

    def _mark_turn(self, pk: int) -> None:
        with self._lock:
            self._last_turn[pk] = time.monotonic()

    def _turn(self, pk: int, now: datetime | None) -> str:
        try:
            return self.reconcile(pk, now)
        finally:
            with self._lock:
                self._last_turn[pk] = time.monotonic()

    def cancel_queued(self, *_lost_generation) -> None:
        """Drop every reconcile still queued (on losing the lease, on shutdown); those running meet the fence."""
        with self._lock:
            queued = list(self._queued)
        for future in queued:
            future.cancel()

    def refuse_new_steps(self) -> None:
        """From now on no step begins; those under way go on. Safe in a signal handler.

        The handler runs in the main thread between two bytecodes, possibly while
        that thread holds `_applying`, so it takes no lock: a bool's assignment
        is atomic, and `_step` reads it under the lock before every step.
        """
        self._stopping = True

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Begin no new step, drop queued work, and wait up to `timeout_s` for the steps being applied to end.

        An analysis still waiting on Prometheus is not waited for: it finds the
        controller stopping before it could apply anything. True if every step ended.
        """
        with self._applying:
            self._stopping = True
        self.cancel_queued()
        with self._applying:
            return self._applying.wait_for(lambda: self._steps_under_way == 0, timeout=timeout_s)

    @contextmanager
    def _step(self, pk: int):
        """Apply one rollout's step alone: not while another lane applies one to it, nor once stopping."""
        require_grant()  # a controller frozen or cut off since it observed stops here, before any write
        with self._applying:
            if self._stopping:
                raise _Stopping()
            self._steps_under_way += 1
        with self._lock:
            rollout_lock = self._rollout_locks.setdefault(pk, threading.Lock())
        try:
            with rollout_lock:
                yield
        finally:
            with self._applying:
                self._steps_under_way -= 1
                self._applying.notify_all()

    def reconcile(self, pk: int, now: datetime | None = None) -> str:
        """Observe, plan and apply one action for rollout `pk`; never raises."""
        def observe_plan_apply() -> str:
            at = now or timezone.now()  # this rollout's own instant, not the tick's
            rollout = services.get_rollout(pk)
            state = RolloutState.of(rollout)
            action = plan(state, self.observe(rollout, state, at))
            with self._step(pk):
                return self.apply(action, at)
        return self._guarded(pk, observe_plan_apply)

    def _guarded(self, pk: int, work: Callable[[], str]) -> str:
        """`work()` for rollout `pk`, its errors said on the rollout and returned as text; never raises."""
        try:
            return work()
        except LeaseLost as exc:
            log.info("rollout %s: %s; nothing written", pk, exc)
            return "lease lost"
        except _Stopping:
            return "stopped"
        except MlcpError as exc:
            # Transient (API down, conflicts): said on the rollout, retried next tick.
            log.info("rollout %s: %s", pk, exc.detail)
            try:
                self._say(pk, None, f"retrying: {exc.detail}")
            except (LeaseLost, DatabaseError):
                pass
            return f"error: {exc.code}"
        except DatabaseError as exc:
            # A locked or unreachable database: each write is one transaction, so nothing is half done.
            log.warning("rollout %s: database error, retried next tick: %s", pk, exc)
            return "error: database"
        except Exception:  # one broken rollout must not stop the others
            log.exception("rollout %s: reconcile failed", pk)
            return "error: unexpected"

    # --- observing --------------------------------------------------------

    def observe(self, rollout: Rollout, state: RolloutState, now: datetime) -> Observed:
        """Cluster state and, when it can decide anything, the step's analysis."""
        if state.phase != Phase.PROGRESSING:
            return Observed(now)
        traffic = state.traffic
        try:
            stable = self.workloads.read_stable(traffic.namespace, traffic.deployment)
            canary = self.workloads.read_canary(traffic.namespace, traffic.deployment)
            route = self._router(traffic).observe()
        except MlcpError as exc:
            return Observed(now, cluster_error=exc.detail)
        observed = Observed(now, route=route, canary_version=canary.version if canary else None,
                            canary_ready=bool(canary and canary.ready))
        step = state.step
        if not (step.analysis and observed.canary_ready and observed.canary_version == state.canary_version):
            return observed
        try:
            report = analyze_tick(self.provider, services.analysis_of(rollout).config, rollout.model.name,
                                  state.canary_version, state.stable_version or stable.version or "none",
                                  step=step, traffic=traffic, step_started_at=state.step_started_at, now=now,
                                  analysed_steps=analysed_steps_of(state.steps))
        except MetricsUnavailable as exc:
            return replace(observed, metrics_error=f"Prometheus unavailable: {exc.detail}")
        outcome = AnalysisOutcome(report.verdict, report.reason, report.evidence())
        return replace(observed, analysis=outcome)

    # --- applying ---------------------------------------------------------

    def apply(self, action: Action, now: datetime | None = None) -> str:
        """Carry out `action`; 'superseded' if the rollout changed since it was planned."""
        now = now or timezone.now()
        rollout = services.get_rollout(action.rollout_id)
        if rollout.phase != action.phase or rollout.current_step != action.step:
            return "superseded"
        if action.analysis is not None:
            # A hold that passes or waits decides nothing: it is compacted with its step's others in time.
            decisive = action.do != Do.HOLD or action.analysis.verdict == Verdict.FAIL
            record_analysis(rollout.pk, action.step, at=now, verdict=action.analysis.verdict,
                            reason=action.analysis.reason, evidence=action.analysis.evidence, decisive=decisive)
        try:
            return self._apply(action, rollout, now)
        except IllegalTransition as exc:
            if exc.code == "concurrent_change":
                return "superseded"
            raise
        except (ClusterObjectMissing, InvalidInput) as exc:
            # Permanent: a missing stable Deployment, an object the API refuses.
            return self._give_up(rollout, f"cannot continue: {exc.detail}", now)

    def _apply(self, action: Action, rollout: Rollout, now: datetime) -> str:
        do = action.do
        if do == Do.NOTHING:
            return "nothing"
        if do == Do.HOLD:
            self._say(rollout.pk, rollout.phase, action.reason)
            return "hold"
        if do == Do.START:
            services.transition_rollout(rollout, Phase.PROGRESSING, actor=ACTOR, now=now,
                                        reason="canary started", **services.step_start_fields(rollout, 0, now))
            self._ensure_step(rollout)
            return "started"
        if do == Do.ENSURE_STEP:
            self._ensure_step(rollout)
            return "ensured step"
        if do == Do.NEXT_STEP:
            services.advance_step(rollout, action.to_step, actor=ACTOR, reason=action.reason, now=now,
                                  evidence=_verdict_evidence(action))
            self._ensure_step(rollout)
            return f"step {action.to_step + 1}"
        if do == Do.BEGIN_PROMOTION:
            last = len(services.steps_of(rollout)) - 1
            services.transition_rollout(rollout, Phase.PROMOTING, actor=ACTOR, now=now, reason=action.reason,
                                        evidence=_verdict_evidence(action), current_step=last,
                                        step_started_at=now, deadline_at=None, message="")
            return "promoting"
        if do == Do.PROMOTE:
            return self._promote(rollout, now)
        if do in (Do.ROLL_BACK, Do.ABORT):
            outcome = Phase.ROLLED_BACK if do == Do.ROLL_BACK else Phase.ABORTED
            services.transition_rollout(rollout, Phase.ROLLING_BACK, actor=ACTOR, now=now, reason=action.reason,
                                        evidence=action.analysis.evidence if action.analysis else {},
                                        retreat_phase=outcome, abort_reason=action.reason)
            # Rolling back is not left for the next tick: a failing canary serves users now.
            return self._retreat(rollout, now)
        if do == Do.RETREAT:
            return self._retreat(rollout, now)
        raise AssertionError(f"unknown action {do}")

    def _ensure_step(self, rollout: Rollout) -> None:
        traffic = RouterTarget.from_json(rollout.traffic)
        weight = services.steps_of(rollout)[rollout.current_step].weight
        router = self._router(traffic)
        self.workloads.ensure_canary(traffic.namespace, traffic.deployment, _canary_spec(rollout),
                                     router.canary_replicas(weight))
        router.route(weight)

    def _promote(self, rollout: Rollout, now: datetime) -> str:
        traffic = RouterTarget.from_json(rollout.traffic)
        ns, name = traffic.namespace, traffic.deployment
        router = self._router(traffic)
        canary = self.workloads.read_canary(ns, name)
        if canary is None or canary.version != str(rollout.version.number):
            # An immediate rollback has no canary yet: it gets all the pods at once.
            self.workloads.ensure_canary(ns, name, _canary_spec(rollout), router.canary_replicas(100))
        if not router.promote(str(rollout.version.number)):
            self._say(rollout.pk, rollout.phase, "waiting for the stable Deployment to roll out the new version")
            return "promoting"
        services.finish_promotion(rollout, now=now)
        return "succeeded"

    def _retreat(self, rollout: Rollout, now: datetime) -> str:
        traffic = RouterTarget.from_json(rollout.traffic)
        self._router(traffic).route(0)
        self.workloads.scale_canary_to_zero(traffic.namespace, traffic.deployment)
        evidence = {"route": "all traffic to stable", "canary_replicas": 0}
        services.finish_retreat(rollout, now=now, evidence=evidence)
        return rollout.phase

    def _give_up(self, rollout: Rollout, reason: str, now: datetime) -> str:
        rollout.refresh_from_db()
        if rollout.phase in (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED):
            services.transition_rollout(rollout, Phase.ROLLING_BACK, actor=ACTOR, now=now, reason=reason,
                                        retreat_phase=Phase.ABORTED, abort_reason=reason)
            try:
                return self._retreat(rollout, now)
            except (ClusterObjectMissing, InvalidInput) as exc:
                reason = f"{reason}; retreat failed too: {exc.detail}"
        if rollout.phase in (Phase.ROLLING_BACK, Phase.PROMOTING):
            services.fail(rollout, reason=reason, now=now)
        return rollout.phase

    def _router(self, traffic: RouterTarget) -> TrafficRouter:
        return build_router(traffic, self.workloads)

    @staticmethod
    def _say(pk: int, phase: str | None, message: str, *, step: int | None = None) -> None:
        """Keep what the controller last saw on the rollout, written only when it changed."""
        rows = Rollout.objects.filter(pk=pk).exclude(message=message[:2000])
        if phase is not None:
            rows = rows.filter(phase=phase)
        if step is not None:
            rows = rows.filter(current_step=step)
        if not rows.exists():
            return
        with transaction.atomic():
            check_fence()
            rows.update(message=message[:2000])


class _Phases:
    """Seconds spent in each phase of a batch, for the log: where a slow tick spends its time."""

    def __init__(self) -> None:
        self._last, self._cpu, self._laps = time.monotonic(), time.process_time(), []

    def lap(self, name: str) -> None:
        # Wall and this process's CPU seconds (all threads): on a busy machine they part ways.
        now, cpu = time.monotonic(), time.process_time()
        self._laps.append(f"{name} {now - self._last:.2f}s (cpu {cpu - self._cpu:.2f}s)")
        self._last, self._cpu = now, cpu

    def __str__(self) -> str:
        return ", ".join(self._laps)


def _say_many(phase: str, step: int, messages: dict[int, str], chunk: int = 500) -> None:
    """`Controller._say` for many rollouts in one phase and step: one fenced transaction per `chunk`, each row
    written only if it is still in that phase and step (the caller sends only messages that changed).

    The rows go as one parameterised UPDATE executed many times, not through the ORM: a CASE/WHEN over
    500 rows cost Django more CPU to build (3 s at 10,000 rollouts) than the database took to run it."""
    quote = connection.ops.quote_name
    column = {name: quote(Rollout._meta.get_field(name).column) for name in ("message", "phase", "current_step")}
    sql = (f"UPDATE {quote(Rollout._meta.db_table)} SET {column['message']} = %s "
           f"WHERE {quote(Rollout._meta.pk.column)} = %s AND {column['phase']} = %s "
           f"AND {column['current_step']} = %s")
    pks = sorted(messages)
    for begin in range(0, len(pks), chunk):
        with transaction.atomic():
            check_fence()
            with connection.cursor() as cursor:
                cursor.executemany(sql, [(messages[pk], pk, str(phase), step) for pk in pks[begin:begin + chunk]])


def _batches(provider) -> bool:
    """Whether `provider` reads many rollouts' observations in one batch (`observe_many`)."""
    batches = getattr(provider, "batches", None)
    return batches if isinstance(batches, bool) else callable(getattr(provider, "observe_many", None))


def _canary_spec(rollout: Rollout) -> CanarySpec:
    base = f"{settings.MLCP_PUBLIC_URL.rstrip('/')}/api/v1/models/{rollout.model.name}/versions/{rollout.version.number}"
    return CanarySpec(model=rollout.model.name, version=str(rollout.version.number), uri=f"{base}/artifact",
                      digest=rollout.version.digest, signature_uri=f"{base}/signature", rollout_id=str(rollout.pk))


def _verdict_evidence(action: Action) -> dict:
    if action.analysis is None:
        return {}
    return {"verdict": action.analysis.verdict.value, "analysis_reason": action.analysis.reason}


# ------------------------------------------------------------------ lease
# The lease and its fence live in rollouts.lease; acquire_lease and
# release_lease are imported above for the callers that knew them here.

# -------------------------------------------------------------- heartbeat
# Written by the lease holder only, so the web can tell whether any controller
# acts (rollouts.liveness) and /metrics can show how long ticks take.

def tick_holding_lease(controller: Controller, holder: str, *, ttl_s: float) -> dict[int, str] | None:
    """Take or renew the lease and, under it, tick once with a heartbeat; None when another controller holds it.

    For one-off ticks (`runcontroller --once`, demos, tests): writes are fenced
    by the lease row. The long-running loop keeps its lease with a `LeaseKeeper`
    instead, so the lease's lifetime never depends on how long a tick takes.
    """
    generation = acquire_lease(holder, ttl_s=ttl_s)
    if generation is None:
        return None
    return tick_with_heartbeat(controller, Grant(holder, generation))


def tick_with_heartbeat(controller: Controller, grant: Grant) -> dict[int, str]:
    """Tick once under `grant`, recording when it started and finished on the lease row."""
    started_at = timezone.now()
    begin_tick(grant.holder, started_at)
    clock = time.monotonic()
    results = controller.tick(grant=grant)
    finish_tick(grant.holder, finished_at=timezone.now(), duration_s=time.monotonic() - clock,
                reconciled=len(results))
    return results


def begin_tick(holder: str, now: datetime) -> bool:
    """Say a tick started at `now`; False if `holder` no longer holds the lease."""
    return bool(ControllerLease.objects.filter(pk=LEASE_PK, holder=holder).update(tick_started_at=now))


def finish_tick(holder: str, *, finished_at: datetime, duration_s: float, reconciled: int) -> bool:
    """Record a finished tick: when, how long, how many rollouts, and one more observation in the histogram."""
    row = ControllerLease.objects.filter(pk=LEASE_PK, holder=holder).values("tick_buckets").first()
    if row is None:
        return False
    # Read-modify-write of the buckets is safe: only the holder writes them, one tick at a time.
    return bool(ControllerLease.objects.filter(pk=LEASE_PK, holder=holder).update(
        tick_finished_at=finished_at, tick_duration_s=duration_s, rollouts_reconciled=reconciled,
        tick_count=F("tick_count") + 1, tick_seconds_sum=F("tick_seconds_sum") + duration_s,
        tick_buckets=observe_tick(row["tick_buckets"], duration_s)))
