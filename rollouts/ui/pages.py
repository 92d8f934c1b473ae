"""What each rollout page shows, read in one call per page; nothing here changes state.

`analysis_ticks` turns stored `AnalysisRun.evidence` (the shape of
`rollouts.metrics.AnalysisReport.evidence()`) into the plain values the chart
draws. Evidence from an older controller may lack keys: such a tick is drawn
with gaps, never an error page.

Steps are stored from 0 and shown from 1 (`number`); a rollout reads stable →
canary, the direction traffic moves. Pages of an active rollout ask the
browser to poll them (`poll_ms`): the shell's script swaps their live regions.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.safestring import mark_safe

from controlplane.errors import MlcpError
from registry import services as registry
from rollouts import services
from rollouts.choices import ACTIVE, TERMINAL, Control, Phase, RolloutKind, allowed_controls
from rollouts.liveness import controller_liveness
from rollouts.models import AnalysisRun, Rollout
from rollouts.ui import charts

LIST_ROWS = 200
POLL_MS = 3000  # how often a page of an active rollout asks again; a controller tick is 5 s by default
MAX_TICKS = 400  # the newest analyses drawn; a 5 s controller tick makes many
CHECK_LABELS = {"burn_rate": "burn rate", "canary_vs_stable_errors": "canary vs stable errors",
                "latency_p95": "latency", "traffic_split": "traffic split", "class_mix": "predicted-class mix"}


# ---------------------------------------------------------------- lists

def rollouts_overview(model=None, *, query: dict | None = None, now=None) -> dict:
    """The newest rollouts (of `model`, or all), each with its current step and last analysis verdict.

    `query` filters them (the list's form): `phase` (a phase, or "active"), `model` (part of a name) and
    `since`/`until` (dates, YYYY-MM-DD, of the start). `controller_warning` is set when a listed rollout is
    active and no controller acts on it.
    """
    last = AnalysisRun.objects.filter(rollout=OuterRef("pk")).order_by("-at", "-id")
    rows = (Rollout.objects.select_related("model", "version", "stable_version")
            .annotate(last_verdict=Subquery(last.values("verdict")[:1]),
                      last_analysis_at=Subquery(last.values("at")[:1])))
    if model is not None:
        rows = rows.filter(model=model)
    filters = _filters(query or {})
    rows = rows.filter(filters["q"])
    total = rows.count()
    listed = [_row(r) for r in rows[:LIST_ROWS]]
    return {"rows": listed, "total": total, "shown": min(total, LIST_ROWS), "filters": filters["shown"],
            "filtered": bool(filters["shown"]), "phases": Phase.choices,
            "controller_warning": _controller_warning(any(r["active"] for r in listed), now),
            "poll_ms": POLL_MS}  # a list keeps polling: a rollout may start at any time


def _filters(query) -> dict:
    """A Q for the list's form, and the values it understood (anything unreadable is ignored, not an error)."""
    q, shown = Q(), {}
    phase = str(query.get("phase", "")).strip()
    if phase == "active":
        q &= Q(phase__in=ACTIVE)
    elif phase in Phase.values:
        q &= Q(phase=phase)
    if phase == "active" or phase in Phase.values:
        shown["phase"] = phase
    name = str(query.get("model", "")).strip()[:100]
    if name:
        q &= Q(model__name__icontains=name)
        shown["model"] = name
    for key, lookup, end_of_day in (("since", "created_at__gte", False), ("until", "created_at__lt", True)):
        day = _date(query.get(key))
        if day is not None:
            at = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
            q &= Q(**{lookup: at + timedelta(days=1) if end_of_day else at})
            shown[key] = day.isoformat()
    return {"q": q, "shown": shown}


def _date(value):
    try:
        return datetime.strptime(str(value or "").strip(), "%Y-%m-%d").date()
    except ValueError:
        return None


def _controller_warning(active: bool, now) -> str:
    return controller_liveness(now).warning if active else ""


def _row(rollout: Rollout) -> dict:
    steps = _steps(rollout)
    current = steps[rollout.current_step] if 0 <= rollout.current_step < len(steps) else None
    return {"rollout": rollout, "steps": steps, "current": current, "active": rollout.phase in ACTIVE,
            "last_verdict": getattr(rollout, "last_verdict", None),
            "last_analysis_at": getattr(rollout, "last_analysis_at", None)}


def _steps(rollout: Rollout) -> list[dict]:
    try:
        parsed = services.steps_of(rollout)
    except MlcpError:
        return []
    return [{"index": i, "number": i + 1, "weight": s.weight, "pause_s": s.pause_s, "analysis": s.analysis,
             "promotes": s.promotes} for i, s in enumerate(parsed)]


def model_rollouts_page(name: str, *, query: dict | None = None, now=None) -> dict:
    """A model's rollouts, what is in production, whether one is in flight, and where "roll back now" goes."""
    model = registry.get_model(name)
    page = rollouts_overview(model, query=query, now=now)
    production = registry.alias_target(model, services.PRODUCTION)
    in_flight = in_flight_rollout(model)
    page.update({"model": model, "production": production, "in_flight": in_flight,
                 **rollback_target(model, in_flight, production)})
    return page


def rollback_target_of(model) -> dict:
    """`rollback_target` for a model as it stands now."""
    return rollback_target(model, in_flight_rollout(model), registry.alias_target(model, services.PRODUCTION))


def in_flight_rollout(model) -> Rollout | None:
    """The model's active rollout, if any (there is at most one: a database constraint)."""
    return (Rollout.objects.select_related("version", "stable_version")
            .filter(model=model, phase__in=ACTIVE).first())


def rollback_target(model, in_flight, production) -> dict:
    """What `services.rollback` would do now, in words for the form: `rollback_to` (the version traffic goes
    back to, or None) and `rollback_blocked` (why it cannot, or '')."""
    if in_flight is not None:
        if in_flight.kind == RolloutKind.ROLLBACK:
            return {"rollback_to": None, "rollback_blocked": f"rollout #{in_flight.pk} is already a rollback"}
        if in_flight.phase == Phase.PROMOTING:
            return {"rollback_to": None, "rollback_blocked": f"rollout #{in_flight.pk} is promoting; "
                                                             "roll back once it has succeeded"}
        return {"rollback_to": in_flight.stable_version, "rollback_blocked": ""}
    if production is None:
        return {"rollback_to": None, "rollback_blocked": "no version is in production"}
    previous = services.previous_production(model, production)
    if previous is None:
        return {"rollback_to": None, "rollback_blocked": f"no earlier shippable version than v{production.number}"}
    return {"rollback_to": previous, "rollback_blocked": ""}


# ---------------------------------------------------------------- detail

def rollout_page(pk, *, now=None) -> dict:
    """One rollout: its steps, timeline, analysis history drawn, the last analysis's queries, and
    (`controller_warning`) whether it is active with no controller acting on it."""
    rollout = services.get_rollout(pk)
    steps = _steps(rollout)
    total_runs = rollout.analysis_runs.count()
    runs = list(rollout.analysis_runs.order_by("-at", "-id")[:MAX_TICKS])[::-1]
    ticks = analysis_ticks(runs)
    last = runs[-1] if runs else None
    failing = [t for t in ticks if t["verdict"] == "fail"]
    active = rollout.phase in ACTIVE
    controls = allowed_controls(rollout.phase, rollout.kind)
    events = list(rollout.events.all())
    traffic = _traffic(rollout, steps, events, runs, now)
    return {
        "rollout": rollout,
        "model": rollout.model,
        "steps": steps,
        "current": steps[rollout.current_step] if 0 <= rollout.current_step < len(steps) else None,
        "active": active,
        "terminal": rollout.phase in TERMINAL,
        "events": events,
        "runs": runs,
        "total_runs": total_runs,
        # charts.py escapes every text it draws, so its output is safe markup.
        "chart": mark_safe(charts.analysis_history_chart(ticks, steps=steps)),
        "chart_narrow": mark_safe(charts.analysis_history_chart(ticks, steps=steps, frame=charts.NARROW)),
        "traffic_chart": mark_safe(charts.traffic_chart(**traffic)),
        "traffic_chart_narrow": mark_safe(charts.traffic_chart(**traffic, frame=charts.NARROW)),
        "first_failure": failing[0] if failing else None,
        "last_run": last,
        "last_checks": _checks(last.evidence) if last else [],
        "last_queries": _queries(last.evidence) if last else [],
        "can_pause": Control.PAUSE in controls,
        "can_resume": Control.RESUME in controls,
        "can_abort": Control.ABORT in controls,
        "is_rollback": rollout.kind == RolloutKind.ROLLBACK,
        "can_rollback": Control.ROLLBACK in controls,
        "controller_warning": _controller_warning(active, now),
        "poll_ms": POLL_MS if active else 0,
    }


# ---------------------------------------------------------------- traffic

# The canary's weight each phase leaves it at; a phase not listed keeps the step's weight.
_PHASE_WEIGHT = {Phase.PENDING: 0, Phase.PROMOTING: 100, Phase.SUCCEEDED: 100, Phase.ROLLING_BACK: 0,
                 Phase.ROLLED_BACK: 0, Phase.ABORTED: 0}


def _traffic(rollout, steps, events, runs, now) -> dict:
    """Arguments for `charts.traffic_chart`: the weight asked for, from the events (the controller records
    each step's weight), and the share served, from each analysis's request counts of both arms."""
    intended, starts = [], []
    for event in events:
        weight = _PHASE_WEIGHT.get(event.new)
        if weight is None:
            weight = _num((event.evidence or {}).get("weight")) if isinstance(event.evidence, dict) else None
            if weight is None and event.step is not None and event.step < len(steps):
                weight = steps[event.step]["weight"]
        if weight is None:
            continue
        if event.new == Phase.PROGRESSING and event.step is not None and event.old != Phase.PAUSED:
            starts.append((event.at, f"step {event.step + 1}"))
        if not intended or intended[-1][1] != weight:
            intended.append((event.at, float(weight)))
    observed = []
    for run in runs:
        share = observed_share(run.evidence)
        if share is not None:
            observed.append((run.at, 100 * share, f"{run.at:%H:%M:%S} UTC: the canary served {share:.1%} of requests "
                                                  f"in step {run.step + 1}'s window"))
    times = [at for at, _ in intended] + [at for at, *_ in observed]
    start = min(times + [rollout.created_at])
    end = rollout.finished_at or max(times + [now or timezone.now()])
    return {"intended": intended, "observed": observed, "start": start, "end": max(end, start), "steps": starts}


def observed_share(evidence) -> float | None:
    """The canary's share of requests in an analysis's step window: the error check's `canary_share`, or
    the requests queries of both arms over that window; None when neither was recorded."""
    if not isinstance(evidence, dict):
        return None
    checks = {c.get("check"): c for c in evidence.get("checks") or [] if isinstance(c, dict)}
    for name, key in (("traffic_split", "observed_share"), ("canary_vs_stable_errors", "canary_share"),
                      ("latency_p95", "canary_share")):
        share = _num(checks.get(name, {}).get(key))
        if share is not None:
            return share
    window = _num(evidence.get("step_window_s"))
    values = {q.get("name"): _num(q.get("value")) for q in evidence.get("queries") or [] if isinstance(q, dict)}
    if window is None:
        return None
    canary, stable = values.get(f"canary.requests.{window:.0f}s"), values.get(f"stable.requests.{window:.0f}s")
    if canary is None or stable is None or canary + stable <= 0:
        return None
    return canary / (canary + stable)


def _num(value):
    return charts._num(value)


def analysis_ticks(runs) -> list[dict]:
    """Plain values per AnalysisRun (oldest first) for `charts.analysis_history_chart`."""
    return [_tick(run) for run in runs]


def _tick(run: AnalysisRun) -> dict:
    evidence = run.evidence if isinstance(run.evidence, dict) else {}
    checks = {c.get("check"): c for c in evidence.get("checks") or [] if isinstance(c, dict)}
    burn = checks.get("burn_rate", {})
    errors = checks.get("canary_vs_stable_errors", {})
    latency = checks.get("latency_p95", {})
    pairs = [{"long_s": p.get("long_s"), "short_s": p.get("short_s"), "threshold": p.get("threshold"),
              "long": p.get("long_burn_rate"), "short": p.get("short_burn_rate"), "verdict": p.get("verdict")}
             for p in burn.get("pairs") or [] if isinstance(p, dict)]
    return {
        "id": run.pk,
        "at": f"{run.at:%H:%M:%S}",
        "step": run.step,
        "verdict": run.verdict,
        "reason": run.reason,
        "pairs": pairs,
        "bf": errors.get("bayes_factor"),
        "log10_bf": errors.get("log10_bayes_factor"),
        "bf_rollback": errors.get("rollback_at_bayes_factor"),
        "bf_pass": errors.get("pass_at_or_below_bayes_factor"),
        "canary_p95_ms": latency.get("canary_p95_ms"),
        "stable_p95_ms": latency.get("stable_p95_ms"),
        "latency_threshold_ms": latency.get("threshold_ms"),
        "failed": [CHECK_LABELS.get(name, name) for name, c in checks.items() if c.get("verdict") == "fail"],
    }


def _checks(evidence) -> list[dict]:
    if not isinstance(evidence, dict):
        return []
    window = _num(evidence.get("step_window_s"))
    return [{"name": CHECK_LABELS.get(c.get("check"), str(c.get("check", "?"))), "verdict": str(c.get("verdict", "")),
             "reason": str(c.get("reason", "")), "rule": check_rule(c, window)}
            for c in evidence.get("checks") or [] if isinstance(c, dict)]


def check_rule(check: dict, window_s: float | None = None) -> str:
    """The rule a check applied, in words, from the numbers its evidence carries ('' for an unknown check).

    Stated beside each verdict so that a reader need not know the analysis code: which numbers it compared,
    over which window, and what would have changed the verdict.
    """
    name, n = check.get("check"), _num
    min_requests = n(check.get("min_requests"))
    needs = f"; judged only once the canary served {min_requests:.0f} requests" if min_requests else ""
    if name == "burn_rate":
        pairs = [p for p in check.get("pairs") or [] if isinstance(p, dict)]
        lines = ", ".join(f"{n(p.get('threshold')) or 0:g}× over {n(p.get('long_s')) or 0:.0f} s and "
                          f"{n(p.get('short_s')) or 0:.0f} s" for p in pairs)
        target = n(check.get("slo_target"))
        return (f"Fails when both windows of a pair burn the error budget"
                f"{f' (SLO {target:.2%} available)' if target else ''} faster than the pair's limit"
                f"{': ' + lines if lines else ''}{needs}.")
    if name == "canary_vs_stable_errors":
        rollback, passing = n(check.get("rollback_at_bayes_factor")), n(check.get("pass_at_or_below_bayes_factor"))
        x, y = n(check.get("canary_errors")), n(check.get("stable_errors"))
        share, served = n(check.get("canary_share")), n(check.get("canary_requests"))
        counted = ""
        if x is not None and y is not None:
            counted = (f" Counted in this step's window{f' ({window_s:.0f} s)' if window_s else ''} only: "
                       f"{x + y:.0f} failed requests on both arms, {x:.0f} of them on the canary"
                       f"{f', which served {share:.1%} of traffic' if share is not None else ''}"
                       f"{f' ({served:.0f} requests)' if served is not None else ''}.")
        return (f"Rolls back when the Bayes factor for \"the canary fails more often than its share of traffic\" "
                f"reaches {rollback or 0:g}; passes at or below {passing or 0:g}{needs}.{counted}")
    if name == "latency_p95" and "max_ratio_to_stable" in check:  # evidence of the ratio rule (before the test)
        threshold, ratio_limit = n(check.get("threshold_ms")), n(check.get("max_ratio_to_stable"))
        gap, ratio = n(check.get("min_gap_ms")) or 0.0, n(check.get("ratio_to_stable"))
        canary, stable = n(check.get("canary_p95_ms")), n(check.get("stable_p95_ms"))
        rule = (f"Fails when the canary's p95 exceeds the SLO's {threshold or 0:g} ms, or exceeds "
                f"{ratio_limit or 0:g}× stable's p95 while also more than {gap:g} ms slower (the minimum-gap rule: "
                f"for a model answering in a few ms, histogram buckets alone make such ratios){needs}.")
        if (ratio is not None and ratio_limit and ratio > ratio_limit and canary is not None and stable is not None
                and canary - stable <= gap and check.get("verdict") != "fail"):
            rule += (f" Here {ratio:.2f}× is over {ratio_limit:g}×, but the canary is only "
                     f"{canary - stable:.1f} ms slower, within the {gap:g} ms minimum gap, so the ratio does not fail it.")
        return rule
    if name == "latency_p95":
        threshold = n(check.get("threshold_ms"))
        rollback, passing = n(check.get("rollback_at_bayes_factor")), n(check.get("pass_at_or_below_bayes_factor"))
        return (f"Fails when the canary's p95 exceeds the SLO's {threshold or 0:g} ms, or when the Bayes factor for "
                f"\"the canary takes more than its share of the slow requests\" (at any latency bucket) reaches "
                f"{rollback or 0:g}; passes at or below {passing or 0:g}{needs}.")
    if name == "traffic_split":
        intended, tolerance = n(check.get("intended_share")), n(check.get("tolerance")) or 0.0
        limit = n(check.get("invalid_at_e_value"))
        return (f"Holds the rollout as invalid (never promotes) when the canary's share of requests differs from the "
                f"{f'{intended:.1%}' if intended is not None else 'intended share'} the router was set to by more "
                f"than {tolerance:.1%}, with evidence (e-value) of at least {limit or 0:g}{needs}.")
    if name == "class_mix":
        rollback, passing = n(check.get("rollback_at_e_value")), n(check.get("pass_at_or_below_e_value"))
        return (f"Rolls back when the evidence (e-value) that the canary predicts classes in other proportions "
                f"than stable on the same traffic reaches {rollback or 0:g}; passes at or below {passing or 0:g}"
                f"{needs}.")
    return ""


def _queries(evidence) -> list[dict]:
    if not isinstance(evidence, dict):
        return []
    return [{"name": str(q.get("name", "")), "query": str(q.get("query", "")), "value": charts._num(q.get("value")),
             "shown": _shown(charts._num(q.get("value"))), "raw": q.get("raw")}
            for q in evidence.get("queries") or [] if isinstance(q, dict)]


def _shown(value: float | None) -> str:
    """Six significant digits: 4799.999999999998 reads 4800, 0.1833333 reads 0.183333."""
    return "" if value is None else f"{value:.6g}"
