"""What each rollout page shows, read in one call per page; nothing here changes state.

`analysis_ticks` turns stored `AnalysisRun.evidence` (the shape of
`rollouts.metrics.AnalysisReport.evidence()`) into the plain values the chart
draws. Evidence from an older controller may lack keys: such a tick is drawn
with gaps, never an error page.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery
from django.utils.safestring import mark_safe

from controlplane.errors import MlcpError
from registry import services as registry
from rollouts import services
from rollouts.choices import ACTIVE, TERMINAL, Control, RolloutKind, allowed_controls
from rollouts.liveness import controller_liveness
from rollouts.models import AnalysisRun, Rollout
from rollouts.ui import charts

LIST_ROWS = 200
MAX_TICKS = 400  # the newest analyses drawn; a 5 s controller tick makes many
CHECK_LABELS = {"burn_rate": "burn rate", "canary_vs_stable_errors": "canary vs stable errors",
                "latency_p95": "p95 latency"}


# ---------------------------------------------------------------- lists

def rollouts_overview(model=None, *, now=None) -> dict:
    """The newest rollouts (of `model`, or all), each with its current step and last analysis verdict.

    `controller_warning` is set when a listed rollout is active and no controller acts on it.
    """
    last = AnalysisRun.objects.filter(rollout=OuterRef("pk")).order_by("-at", "-id")
    rows = (Rollout.objects.select_related("model", "version", "stable_version")
            .annotate(last_verdict=Subquery(last.values("verdict")[:1]),
                      last_analysis_at=Subquery(last.values("at")[:1])))
    if model is not None:
        rows = rows.filter(model=model)
    total = rows.count()
    listed = [_row(r) for r in rows[:LIST_ROWS]]
    return {"rows": listed, "total": total, "shown": min(total, LIST_ROWS),
            "controller_warning": _controller_warning(any(r["active"] for r in listed), now)}


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
    return [{"index": i, "weight": s.weight, "pause_s": s.pause_s, "analysis": s.analysis, "promotes": s.promotes}
            for i, s in enumerate(parsed)]


def model_rollouts_page(name: str, *, now=None) -> dict:
    """A model's rollouts, what is in production, and whether one is in flight (for the rollback form)."""
    model = registry.get_model(name)
    page = rollouts_overview(model, now=now)
    page.update({
        "model": model,
        "production": registry.alias_target(model, services.PRODUCTION),
        "in_flight": next((r["rollout"] for r in page["rows"] if r["active"]), None),
    })
    return page


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
    return {
        "rollout": rollout,
        "model": rollout.model,
        "steps": steps,
        "current": steps[rollout.current_step] if 0 <= rollout.current_step < len(steps) else None,
        "active": active,
        "terminal": rollout.phase in TERMINAL,
        "events": list(rollout.events.all()),
        "runs": runs,
        "total_runs": total_runs,
        "chart": mark_safe(charts.analysis_history_chart(ticks, steps=steps)),
        "first_failure": failing[0] if failing else None,
        "last_run": last,
        "last_checks": _checks(last.evidence) if last else [],
        "last_queries": _queries(last.evidence) if last else [],
        "can_pause": Control.PAUSE in controls,
        "can_resume": Control.RESUME in controls,
        "can_abort": Control.ABORT in controls,
        "is_rollback": rollout.kind == RolloutKind.ROLLBACK,
        "controller_warning": _controller_warning(active, now),
    }


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
    return [{"name": CHECK_LABELS.get(c.get("check"), str(c.get("check", "?"))), "verdict": str(c.get("verdict", "")),
             "reason": str(c.get("reason", ""))}
            for c in evidence.get("checks") or [] if isinstance(c, dict)]


def _queries(evidence) -> list[dict]:
    if not isinstance(evidence, dict):
        return []
    return [{"name": str(q.get("name", "")), "query": str(q.get("query", "")), "value": charts._num(q.get("value")),
             "shown": _shown(charts._num(q.get("value"))), "raw": q.get("raw")}
            for q in evidence.get("queries") or [] if isinstance(q, dict)]


def _shown(value: float | None) -> str:
    """Six significant digits: 4799.999999999998 reads 4800, 0.1833333 reads 0.183333."""
    return "" if value is None else f"{value:.6g}"
