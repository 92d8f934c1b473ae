"""The on-call domain functions: handle an Alertmanager notification, and govern runbook policies.

`handle_notification` is what the receiver calls. Each alert is handled in
its own transaction with its `HandledAlert` row, so a repeated notification
(Alertmanager re-sends a group every `repeat_interval`, and every peer of an HA
pair sends it) finds the row and does nothing; the actions themselves are the
rollout services' (`rollouts.services.rollback`, `pause`), as for a person.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.errors import InvalidInput, MlcpError
from oncall.alertmanager import Alert, Notification
from oncall.choices import Outcome
from oncall.models import HandledAlert, RunbookPolicy
from oncall.policy import DEFAULT_POLICY, Decision, Do, InFlight, Policy, Situation, decide
from registry import services as registry
from registry.models import AliasMove, RegisteredModel
from rollouts import services as rollouts
from rollouts.choices import ACTIVE, Phase
from rollouts.models import Rollout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """What became of one alert of a notification (the receiver's answer lists them)."""

    alertname: str
    fingerprint: str
    status: str
    model: str
    outcome: str
    detail: str
    rollout: int | None = None
    duplicate: bool = False

    def as_dict(self) -> dict:
        return {"alertname": self.alertname, "fingerprint": self.fingerprint, "status": self.status,
                "model": self.model, "outcome": self.outcome, "detail": self.detail, "rollout": self.rollout,
                "duplicate": self.duplicate}


def handle_notification(notification: Notification, *, actor, now: datetime | None = None) -> list[Handled]:
    """Handle each alert of an Alertmanager notification once, by its model's runbook policy.

    `parse_notification` has read and bounded the whole notification before this, so an alert that mlcp
    cannot store refuses the group with a 400 before any alert of it acts. An alert whose handling fails
    all the same is recorded as failed and the others are still handled.
    """
    now = now or timezone.now()
    return [_handle(alert, actor=actor, now=now) for alert in notification.alerts]


def _handle(alert: Alert, *, actor, now: datetime) -> Handled:
    try:
        return _handle_once(alert, actor=actor, now=now)
    except Exception:
        # Recorded and answered 200 with the others: Alertmanager re-sends the whole group on any non-2xx answer,
        # so one alert that always fails would keep every valid alert of its group from being handled, at every
        # retry, forever. Its transaction was rolled back: nothing of it was done.
        log.exception("alert %s (fingerprint %s, model %r): handling failed; recorded as failed",
                      alert.name, alert.fingerprint, alert.model[:63])
        return _record_failure(alert, actor=actor, now=now)


def _handle_once(alert: Alert, *, actor, now: datetime) -> Handled:
    with transaction.atomic():
        model = RegisteredModel.objects.filter(name=alert.model).first() if alert.model else None
        try:
            with transaction.atomic():
                row = HandledAlert.objects.create(
                    fingerprint=alert.fingerprint, starts_at=alert.starts_at, status=alert.status,
                    alertname=alert.name, model_name=model.name if model else "", outcome=Outcome.IGNORED,
                    labels=alert.labels, annotations=alert.annotations, received_at=now,
                    received_by=registry.actor_name(actor))
        except IntegrityError:
            # This alert (fingerprint, startsAt, status) was handled before, or by a concurrent delivery that
            # committed first (the unique index made this insert wait for it).
            row = HandledAlert.objects.select_for_update().get(
                fingerprint=alert.fingerprint, starts_at=alert.starts_at, status=alert.status)
            if row.outcome != Outcome.FAILED:
                return _duplicate(row, alert)
            # The earlier delivery failed and did nothing; the failure may have been passing, so this one tries.
            row.model_name, row.received_at, row.received_by = (model.name if model else "", now,
                                                                registry.actor_name(actor))
        handled = _act(row, alert, model, actor=actor, now=now) if model else _ignore(row, alert, actor)
        row.save(update_fields=["model_name", "received_at", "received_by", "action", "outcome", "detail",
                                "rollout"])
        return handled


def _duplicate(first: HandledAlert, alert: Alert) -> Handled:
    return Handled(alert.name, alert.fingerprint, alert.status, first.model_name, first.outcome,
                   f"already handled at {first.received_at:%Y-%m-%d %H:%M:%S}: {first.detail}", first.rollout_id,
                   duplicate=True)


def _record_failure(alert: Alert, *, actor, now: datetime) -> Handled:
    model_name = (RegisteredModel.objects.filter(name=alert.model).values_list("name", flat=True).first()
                  if alert.model else None) or ""
    detail = "handling the alert failed unexpectedly and nothing was done; mlcp's log has the error"
    with transaction.atomic():
        try:
            with transaction.atomic():
                HandledAlert.objects.create(
                    fingerprint=alert.fingerprint, starts_at=alert.starts_at, status=alert.status,
                    alertname=alert.name, model_name=model_name, outcome=Outcome.FAILED, detail=detail,
                    labels=alert.labels, annotations=alert.annotations, received_at=now,
                    received_by=registry.actor_name(actor))
        except IntegrityError:  # recorded already: an earlier failure, or a concurrent delivery that succeeded
            first = HandledAlert.objects.get(fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                                             status=alert.status)
            if first.outcome != Outcome.FAILED:
                return _duplicate(first, alert)
        registry.record_audit(actor, "alert.failed", model_name=model_name, reason=_reason(alert),
                              outcome=Outcome.FAILED, why=detail, **alert.as_evidence())
    return Handled(alert.name, alert.fingerprint, alert.status, model_name, Outcome.FAILED, detail)


def _ignore(row: HandledAlert, alert: Alert, actor) -> Handled:
    # Answered 200 all the same: Alertmanager retries a non-2xx answer, and no retry makes a model exist.
    row.outcome = Outcome.IGNORED
    row.detail = (f"no registered model '{alert.model[:63]}'" if alert.model
                  else "the alert has no 'model' label")
    registry.record_audit(actor, "alert.ignored", reason=_reason(alert), outcome=Outcome.IGNORED,
                          why=row.detail, **alert.as_evidence())
    return Handled(alert.name, alert.fingerprint, alert.status, "", Outcome.IGNORED, row.detail)


def _act(row: HandledAlert, alert: Alert, model: RegisteredModel, *, actor, now: datetime) -> Handled:
    policy = runbook_policy_of(model)
    if alert.status == "firing" and _resolved_already(alert):
        # Alertmanager's HA peers and retries can deliver a group's firing notification after its resolved one;
        # acting on it would roll back for a problem that is over.
        decision = Decision(Do.SKIP, policy.action_for(alert.name), "this alert was already resolved; a firing "
                            "delivery arriving after it acts on nothing")
    else:
        decision = decide(policy, alert, situation_of(model), now)
    row.action = decision.action
    row.rollout_id = decision.rollout
    if decision.do == Do.RESOLVED:
        outcome, detail = Outcome.RESOLVED, decision.why
    elif decision.do == Do.ANNOTATE:
        outcome, detail = Outcome.ANNOTATED, decision.why
    elif decision.do == Do.SKIP:
        outcome, detail = Outcome.SKIPPED, decision.why
    elif policy.dry_run:
        outcome, detail = Outcome.DRY_RUN, f"dry run: would {decision.why}"
    else:
        outcome, detail = _carry_out(decision, model, alert, actor=actor, now=now, row=row)
    row.outcome, row.detail = outcome, detail
    registry.record_audit(actor, f"alert.{decision.action}", model_name=model.name, version_number=alert.version,
                          reason=_reason(alert), outcome=outcome, why=detail, rollout=row.rollout_id,
                          dry_run=policy.dry_run, **alert.as_evidence())
    return Handled(alert.name, alert.fingerprint, alert.status, model.name, outcome, detail, row.rollout_id)


def _resolved_already(alert: Alert) -> bool:
    return HandledAlert.objects.filter(fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                                       status="resolved").exists()


def _carry_out(decision: Decision, model: RegisteredModel, alert: Alert, *, actor, now: datetime,
               row: HandledAlert) -> tuple[str, str]:
    reason = _reason(alert)
    try:
        # A savepoint: a refusal half-way through a service leaves nothing of it, and the alert is still recorded.
        with transaction.atomic():
            if decision.do == Do.PAUSE_ROLLOUT:
                rollout = rollouts.pause(rollouts.get_rollout(decision.rollout), actor=actor, reason=reason, now=now)
                return Outcome.ACTED, f"paused rollout {rollout.pk}"
            rollout = rollouts.rollback(model, reason=reason, actor=actor, now=now)
    except MlcpError as exc:
        log.warning("alert %s on %s: %s refused: %s", alert.name, model.name, decision.do, exc.detail)
        return Outcome.REFUSED, f"{decision.why}: refused ({exc.code}): {exc.detail}"
    row.rollout_id = rollout.pk
    if decision.do == Do.ROLLBACK_ROLLOUT:
        return Outcome.ACTED, f"rolling back rollout {rollout.pk}"
    return Outcome.ACTED, f"rollout {rollout.pk} rolls production back to v{rollout.version.number}"


def _reason(alert: Alert) -> str:
    """The reason every action carries: the rollout's timeline and the audit trail say which alert it was."""
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = (f"alert {alert.name} {alert.status} since {alert.starts_at:%Y-%m-%d %H:%M:%S}Z "
            f"(fingerprint {alert.fingerprint})")
    return f"{text}: {summary[:500]}" if summary else text


def situation_of(model: RegisteredModel) -> Situation:
    """The rollout in flight, production, and when production last moved to it: what `decide` reads."""
    active = Rollout.objects.select_related("version").filter(model=model, phase__in=ACTIVE).first()
    production = registry.alias_target(model, rollouts.PRODUCTION)
    promoted = None
    if production is not None:
        promoted = (AliasMove.objects.filter(model=model, alias_name=rollouts.PRODUCTION, to_version=production)
                    .order_by("-at", "-id").values_list("at", flat=True).first())
    serving = active or (Rollout.objects.filter(model=model, phase=Phase.SUCCEEDED)
                         .order_by("-finished_at", "-id").first())
    return Situation(
        in_flight=InFlight(active.pk, active.phase, active.kind, active.version.number) if active else None,
        production=production.number if production else None, promoted_at=promoted,
        namespace=str((serving.traffic or {}).get("namespace", "")) if serving else "")


# ------------------------------------------------------------- governance

def runbook_policy_of(model: RegisteredModel) -> Policy:
    row = RunbookPolicy.objects.filter(model=model).first()
    if row is None:
        return DEFAULT_POLICY
    return Policy(actions=dict(row.actions), dry_run=row.dry_run, rollback_window_s=row.rollback_window_s)


def set_runbook_policy(model: RegisteredModel, raw: dict, *, actor, reason: str) -> Policy:
    """Replace what alerts do to `model`: an approver's or admin's decision, audited with its reason."""
    if not (reason or "").strip():
        raise InvalidInput("changing a runbook policy needs a reason; it is kept in the audit trail",
                           code="reason_required")
    policy = Policy.from_json(raw)
    with transaction.atomic():
        RegisteredModel.objects.select_for_update().get(pk=model.pk)
        previous = runbook_policy_of(model)
        RunbookPolicy.objects.update_or_create(
            model=model, defaults={"actions": policy.actions, "dry_run": policy.dry_run,
                                   "rollback_window_s": policy.rollback_window_s,
                                   "changed_by": actor if getattr(actor, "pk", None) else None,
                                   "changed_at": timezone.now()})
        registry.record_audit(actor, "model.runbook_policy", model_name=model.name, reason=reason,
                              previous=previous.to_json(), policy=policy.to_json())
    return policy
