"""The rollout domain functions that views, commands and the controller call.

Each takes rows and plain values, enforces the rollout rules (one active rollout
per model, approved and signed versions only, to the model's own target, the
transitions table), records
a `RolloutEvent` for every change, and raises a `controlplane.errors` error
otherwise. Cluster changes are the controller's: these only write the database.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.errors import (Conflict, Forbidden, IllegalTransition, IntegrityFailure, InvalidInput, MlcpError,
                                 NotFound)
from registry import services as registry
from registry import signing
from registry.choices import TRANSITIONS as REGISTRY_TRANSITIONS
from registry.choices import VersionStatus
from registry.models import AliasMove, ModelVersion, RegisteredModel
from rollouts.choices import (ACTIVE, CONTROLS, RETREAT_OUTCOMES, TRANSITIONS, Control, Phase, RolloutKind,
                              allowed_controls)
from rollouts.lease import check_fence
from rollouts.models import Rollout, RolloutEvent
from rollouts.outbox import enqueue as enqueue_notification
from k8s import RouterTarget
from rollouts.strategy import AnalysisSettings, parse_steps, steps_to_json

log = logging.getLogger(__name__)
PRODUCTION = "production"
CONTROLLER = "controller"


def get_rollout(pk) -> Rollout:
    try:
        return Rollout.objects.select_related("model", "version", "stable_version").get(pk=pk)
    except (Rollout.DoesNotExist, ValueError):
        raise NotFound(f"rollout {pk} does not exist") from None


def steps_of(rollout: Rollout):
    return parse_steps(rollout.strategy.get("steps"))


def analysis_of(rollout: Rollout) -> AnalysisSettings:
    return AnalysisSettings.from_json(rollout.analysis, rollout.model.slo)


# ------------------------------------------------------------- transitions

def record_event(rollout: Rollout, old: str, new: str, *, actor, reason: str = "", evidence: dict | None = None,
                 now: datetime | None = None, step: int | None = None) -> RolloutEvent:
    return RolloutEvent.objects.create(
        rollout=rollout, old=old, new=new, reason=reason, evidence=evidence or {},
        actor=registry.actor_name(actor) if not isinstance(actor, str) else actor,
        at=now or timezone.now(), step=rollout.current_step if step is None else step)


def transition_rollout(rollout: Rollout, new: str, *, actor, reason: str = "", evidence: dict | None = None,
                       now: datetime | None = None, **fields) -> Rollout:
    """Move `rollout` to phase `new` along TRANSITIONS by compare-and-set, with an event.

    `fields` are written in the same UPDATE. Raises `IllegalTransition` for a move
    the table forbids, or (code `concurrent_change`) when the phase changed under us.
    """
    now = now or timezone.now()
    old = rollout.phase
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"rollout {rollout.pk} cannot go from {old} to {new}",
                                from_state=old, to_state=new)
    with transaction.atomic():
        # The controller's moves are fenced by its lease, checked in this transaction; a person's are not.
        check_fence()
        updated = Rollout.objects.filter(pk=rollout.pk, phase=old).update(phase=new, updated_at=now, **fields)
        if updated != 1:
            current = Rollout.objects.filter(pk=rollout.pk).values_list("phase", flat=True).first()
            raise IllegalTransition(
                f"rollout {rollout.pk} changed to {current} while moving it to {new}; retry",
                code="concurrent_change", from_state=current or "", to_state=new)
        rollout.phase, rollout.updated_at = new, now
        for name, value in fields.items():
            setattr(rollout, name, value)
        record_event(rollout, old, new, actor=actor, reason=reason, evidence=evidence, now=now)
    return rollout


def advance_step(rollout: Rollout, to_step: int, *, actor, reason: str = "", evidence: dict | None = None,
                 now: datetime | None = None) -> Rollout:
    """Start step `to_step` of a progressing rollout (compare-and-set on phase and step).

    Reaching the last (100%) step is the promotion and changes the phase instead.
    """
    now = now or timezone.now()
    steps = steps_of(rollout)
    if not 0 <= to_step < len(steps):
        raise InvalidInput(f"rollout {rollout.pk} has no step {to_step}", code="no_such_step")
    if steps[to_step].promotes:
        return transition_rollout(rollout, Phase.PROMOTING, actor=actor, reason=reason, evidence=evidence,
                                  now=now, current_step=to_step, step_started_at=now, deadline_at=None, message="")
    deadline = now + analysis_of(rollout).step_deadline(steps[to_step])
    with transaction.atomic():
        check_fence()
        updated = Rollout.objects.filter(pk=rollout.pk, phase=Phase.PROGRESSING,
                                         current_step=rollout.current_step).update(
            current_step=to_step, step_started_at=now, deadline_at=deadline, updated_at=now, message="")
        if updated != 1:
            raise IllegalTransition(f"rollout {rollout.pk} changed while starting step {to_step}; retry",
                                    code="concurrent_change", to_state=Phase.PROGRESSING)
        rollout.current_step, rollout.step_started_at, rollout.deadline_at = to_step, now, deadline
        rollout.updated_at, rollout.message = now, ""
        record_event(rollout, Phase.PROGRESSING, Phase.PROGRESSING, actor=actor, now=now,
                     reason=reason or f"step {to_step + 1}: {steps[to_step].weight}% to the canary",
                     evidence={"weight": steps[to_step].weight, **(evidence or {})})
    return rollout


def step_start_fields(rollout: Rollout, step: int, now: datetime) -> dict:
    """The fields that start (or restart) `step`'s clock."""
    steps = steps_of(rollout)
    return {"current_step": step, "step_started_at": now,
            "deadline_at": now + analysis_of(rollout).step_deadline(steps[step])}


# ----------------------------------------------------------------- starting

def start_rollout(model: RegisteredModel, version: ModelVersion, *, actor, traffic: dict | None = None, steps=None,
                  analysis: dict | None = None, approval_required: bool = True,
                  kind: str = RolloutKind.CANARY, reason: str = "", now: datetime | None = None) -> Rollout:
    """Create a pending rollout of `version` to its model's rollout target; the controller takes it from there.

    `traffic` may repeat fields of the model's target, never name another value
    (403 foreign_target); without a target set by an admin, nothing rolls out
    (409 no_target). Refuses (409) while another rollout of the model is active,
    a version that is rejected, not approved (when approval is required),
    already in production, or whose signature does not verify.
    """
    if version.model_id != model.pk:
        raise InvalidInput(f"{version} does not belong to model '{model.name}'")
    target = target_of(model, requested=traffic)
    return _create_rollout(model, version, target, actor=actor, steps=steps, analysis=analysis,
                           approval_required=approval_required, kind=kind, reason=reason, now=now)


def _create_rollout(model: RegisteredModel, version: ModelVersion, traffic_config: RouterTarget, *, actor, steps,
                    analysis: dict | None, approval_required: bool, kind: str, reason: str,
                    now: datetime | None) -> Rollout:
    now = now or timezone.now()
    parsed_steps = parse_steps(steps)
    analysis_settings = AnalysisSettings.from_json(analysis, model.slo)
    _require_no_active_rollout(model)
    _require_shippable(version, approval_required)
    _require_signed(version)
    try:
        with transaction.atomic():
            # One start at a time per model: the second waits here, then sees the first.
            RegisteredModel.objects.select_for_update().get(pk=model.pk)
            _require_no_active_rollout(model)
            production = registry.alias_target(model, PRODUCTION)
            if production is not None and production.pk == version.pk:
                raise Conflict(f"{version} is already in production", code="already_in_production")
            rollout = Rollout.objects.create(
                model=model, version=version, stable_version=production, kind=kind,
                strategy={"steps": steps_to_json(parsed_steps)}, traffic=traffic_config.to_json(),
                analysis=analysis_settings.to_json(), approval_required=approval_required,
                version_status_before=version.status,
                created_at=now, updated_at=now, created_by=actor if getattr(actor, "pk", None) else None)
            record_event(rollout, "", Phase.PENDING, actor=actor, now=now,
                         reason=reason or f"rollout of {version} started",
                         evidence={"stable_version": production.number if production else None,
                                   "steps": [s.weight for s in parsed_steps]})
            # `canary` from now until the rollout ends: `deployed` only once it carries production traffic
            # (finish_promotion); back to `version_status_before` otherwise (_settle_version).
            registry.transition_version(
                version, VersionStatus.CANARY, actor=actor, rollout=rollout.pk,
                reason=f"rollout {rollout.pk} started" + (
                    ", which does not require approval" if version.status == VersionStatus.AWAITING_APPROVAL else ""))
            registry.record_audit(actor, "rollout.started", model_name=model.name, version_number=version.number,
                                  reason=reason, rollout=rollout.pk, kind=kind)
    except IntegrityError:
        raise Conflict(f"another rollout of '{model.name}' started at the same time",
                       code="rollout_in_progress") from None
    return rollout


# ------------------------------------------------------------------ targets

def set_rollout_target(model: RegisteredModel, traffic: dict, *, actor, reason: str) -> RegisteredModel:
    """Set where the model's rollouts go from now on: an admin's decision, audited with its reason.

    A rollout already under way keeps the target it started with.
    """
    if not (reason or "").strip():
        raise InvalidInput("changing a rollout target needs a reason; it is kept in the audit trail",
                           code="reason_required")
    target = RouterTarget.from_json(traffic).to_json()
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        previous, locked.rollout_target = locked.rollout_target, target
        locked.save(update_fields=["rollout_target"])
        registry.record_audit(actor, "model.rollout_target", model_name=model.name, reason=reason,
                              previous=previous, target=target)
    return locked


def target_of(model: RegisteredModel, *, requested: dict | None = None) -> RouterTarget:
    """The model's rollout target, as stored now; `requested` fields must repeat it, not name another.

    The target is the model's configuration, not the request's: otherwise a `ci` token
    could send an approved version of one model to another model's Deployment.
    """
    stored = RegisteredModel.objects.values_list("rollout_target", flat=True).get(pk=model.pk)
    if not stored:
        raise Conflict(f"'{model.name}' has no rollout target yet; an admin sets where it runs "
                       f"(PUT models/{model.name}/target)", code="no_target")
    target = RouterTarget.from_json(stored)
    expected = target.to_json()
    named = {field: value for field, value in (requested or {}).items() if value not in (None, "")}
    unknown = sorted(set(named) - set(expected))
    if unknown:
        raise InvalidInput(f"unknown traffic fields {unknown[:5]}; known: {sorted(expected)}", code="invalid_traffic")
    foreign = sorted(field for field, value in named.items() if value != expected[field])
    if foreign:
        raise Forbidden(f"rollouts of '{model.name}' go to its target, {target.namespace}/{target.deployment}; "
                        f"this request names another {', '.join(foreign)} "
                        f"({', '.join(f'{f}={named[f]!r}' for f in foreign)}). Leave them out, or ask an admin to "
                        f"change the target (PUT models/{model.name}/target)", code="foreign_target", fields=foreign)
    return target


def _require_no_active_rollout(model: RegisteredModel) -> None:
    active = Rollout.objects.filter(model=model, phase__in=ACTIVE).first()
    if active is not None:
        raise Conflict(f"rollout {active.pk} of '{model.name}' is {active.phase}; finish, abort or "
                       "roll it back first", code="rollout_in_progress", rollout=active.pk)


def _require_shippable(version: ModelVersion, approval_required: bool) -> None:
    status = version.status
    if status == VersionStatus.REJECTED:
        raise Conflict(f"{version} was rejected ({version.status_reason or 'no reason given'})",
                       code="version_rejected")
    if status == VersionStatus.APPROVED:
        return
    if status == VersionStatus.AWAITING_APPROVAL:
        if approval_required:
            raise Conflict(f"{version} awaits approval; an approver must approve it before it rolls out",
                           code="version_not_approved")
        return
    if status == VersionStatus.DEPLOYED:
        raise Conflict(f"{version} is already deployed", code="already_in_production")
    if status == VersionStatus.CANARY:
        raise Conflict(f"{version} is already rolling out", code="rollout_in_progress")
    raise Conflict(f"{version} is {status}; only approved versions roll out", code="version_not_approved"
                   if approval_required else "version_not_shippable")


def _require_signed(version: ModelVersion) -> None:
    if not version.signature_bundle:
        raise IntegrityFailure(f"{version} has no signature", code="version_unsigned")
    try:
        signing.verify_bundle(version.signature_bundle, version.digest)
    except MlcpError as exc:
        raise IntegrityFailure(f"{version}'s signature does not verify: {exc.detail}", code="signature_invalid",
                               cause=exc.code) from None


# --------------------------------------------------------- on-call controls

_CONTROL_DONE = {Control.PAUSE: "paused", Control.RESUME: "resumed", Control.PROMOTE: "promoted",
                 Control.ABORT: "aborted", Control.ROLLBACK: "rolled back"}


def require_control(rollout: Rollout, control: str) -> None:
    """IllegalTransition unless the rollout accepts `control` now (rollouts.choices.CONTROLS)."""
    if control in allowed_controls(rollout.phase, rollout.kind):
        return
    accepting = [phase for phase, controls in CONTROLS.items() if control in controls]
    done = _CONTROL_DONE[control]
    detail = (f"rollout {rollout.pk} is {rollout.phase}, not {accepting[0]}" if len(accepting) == 1 else
              f"rollout {rollout.pk} is {rollout.phase}; only a {', '.join(accepting[:-1])} or {accepting[-1]} "
              f"{rollout.kind} rollout can be {done}")
    raise IllegalTransition(detail, code="not_promotable" if control == Control.PROMOTE else "illegal_transition",
                            from_state=rollout.phase, control=control)


def promote(rollout: Rollout, *, actor, full: bool = False, now: datetime | None = None) -> Rollout:
    """Skip the current step's analysis: go to the next step, or (`full`) promote now."""
    now = now or timezone.now()
    require_control(rollout, Control.PROMOTE)
    steps = steps_of(rollout)
    target = len(steps) - 1 if full else min(rollout.current_step + 1, len(steps) - 1)
    reason = "promoted by hand" + (" to 100%" if full else f" to step {target + 1} ({steps[target].weight}%)")
    if steps[target].promotes:
        return transition_rollout(rollout, Phase.PROMOTING, actor=actor, reason=reason, now=now,
                                  current_step=target, step_started_at=now, deadline_at=None)
    if rollout.phase == Phase.PROGRESSING:
        return advance_step(rollout, target, actor=actor, reason=reason, now=now)
    return transition_rollout(rollout, Phase.PROGRESSING, actor=actor, reason=reason, now=now,
                              **step_start_fields(rollout, target, now))


def pause(rollout: Rollout, *, actor, reason: str = "", now: datetime | None = None) -> Rollout:
    """Hold the rollout at its current weight; the controller neither advances nor analyses it."""
    require_control(rollout, Control.PAUSE)
    return transition_rollout(rollout, Phase.PAUSED, actor=actor, reason=reason or "paused", now=now)


def resume(rollout: Rollout, *, actor, reason: str = "", now: datetime | None = None) -> Rollout:
    """Continue a paused rollout; its step's clock (pause, analysis window, deadline) restarts."""
    now = now or timezone.now()
    require_control(rollout, Control.RESUME)
    return transition_rollout(rollout, Phase.PROGRESSING, actor=actor, reason=reason or "resumed", now=now,
                              **step_start_fields(rollout, rollout.current_step, now))


def abort(rollout: Rollout, *, actor, reason: str, now: datetime | None = None) -> Rollout:
    """Send all traffic back to stable and stop; the version is not marked bad."""
    return _retreat(rollout, Phase.ABORTED, actor=actor, reason=reason, now=now)


def rollback(model: RegisteredModel, *, reason: str, actor, now: datetime | None = None) -> Rollout:
    """Roll the model back now.

    With a rollout in flight: retreat it (all traffic to stable) and mark its
    version rolled back. Without: start an immediate rollout (100%, no
    analysis) of the previous production version, from the alias history.
    """
    now = now or timezone.now()
    if not (reason or "").strip():
        raise InvalidInput("a rollback needs a reason; it is kept in the audit trail", code="reason_required")
    active = Rollout.objects.select_related("model", "version").filter(model=model, phase__in=ACTIVE).first()
    if active is not None:
        if active.kind == RolloutKind.ROLLBACK:
            raise Conflict(f"rollout {active.pk} is already a rollback of '{model.name}'",
                           code="rollback_in_progress", rollout=active.pk)
        if active.phase == Phase.PROMOTING:
            raise Conflict(f"rollout {active.pk} is promoting: the stable Deployment is already taking "
                           f"{active.version}; roll back once it has succeeded", code="rollout_promoting",
                           rollout=active.pk)
        return _retreat(active, Phase.ROLLED_BACK, actor=actor, reason=reason, now=now)
    current = registry.alias_target(model, PRODUCTION)
    if current is None:
        raise Conflict(f"'{model.name}' has no production version to roll back", code="nothing_to_roll_back")
    previous = previous_production(model, current)
    if previous is None:
        raise Conflict(f"'{model.name}' has no earlier shippable production version than {current}",
                       code="no_previous_version")
    last = Rollout.objects.filter(model=model, phase=Phase.SUCCEEDED).order_by("-finished_at", "-id").first()
    if last is None:
        raise Conflict(f"no rollout of '{model.name}' has succeeded, so mlcp does not know where it runs",
                       code="no_traffic_config")
    # Back where production runs now, the last successful rollout's target, even if an admin has since changed
    # the model's: the rollback must replace what is serving.
    return _create_rollout(model, previous, RouterTarget.from_json(last.traffic), actor=actor, steps=[100],
                           analysis=last.analysis, approval_required=True, kind=RolloutKind.ROLLBACK,
                           reason=f"rollback from {current}: {reason}", now=now)


def _retreat(rollout: Rollout, outcome: str, *, actor, reason: str, now: datetime | None) -> Rollout:
    if not (reason or "").strip():
        raise InvalidInput("say why: the reason is kept in the audit trail", code="reason_required")
    if rollout.phase == Phase.ROLLING_BACK and (rollout.retreat_phase == outcome or outcome == Phase.ABORTED):
        return rollout  # already retreating: a repeated request, or an abort of a rollback, changes nothing
    require_control(rollout, Control.ABORT if outcome == Phase.ABORTED else Control.ROLLBACK)
    if rollout.phase == Phase.ROLLING_BACK:
        # An abort already retreating becomes a rollback (marks the version); never the reverse.
        updated = Rollout.objects.filter(pk=rollout.pk, phase=Phase.ROLLING_BACK).update(
            retreat_phase=outcome, abort_reason=reason)
        if updated != 1:
            raise IllegalTransition(f"rollout {rollout.pk} finished while rolling it back", code="concurrent_change")
        rollout.retreat_phase, rollout.abort_reason = outcome, reason
        record_event(rollout, Phase.ROLLING_BACK, Phase.ROLLING_BACK, actor=actor, reason=reason, now=now)
        return rollout
    return transition_rollout(rollout, Phase.ROLLING_BACK, actor=actor, reason=reason, now=now,
                              retreat_phase=outcome, abort_reason=reason)


def previous_production(model: RegisteredModel, current: ModelVersion) -> ModelVersion | None:
    """The most recent earlier production version that may still ship."""
    moves = AliasMove.objects.filter(model=model, alias_name=PRODUCTION).select_related("from_version")
    for move in moves.order_by("-at", "-id"):
        candidate = move.from_version
        if candidate is not None and candidate.pk != current.pk and candidate.status == VersionStatus.APPROVED:
            return candidate
    return None


# ----------------------------------------------------------------- endings

def finish_promotion(rollout: Rollout, *, now: datetime | None = None, actor=CONTROLLER) -> Rollout:
    """The canary is stable now: succeed, move `production`, demote the previous version, deploy the canary.

    `deployed` means production: the previous version leaves it before the
    canary enters it, in one transaction, so a model never shows two.
    """
    now = now or timezone.now()
    with transaction.atomic():
        transition_rollout(rollout, Phase.SUCCEEDED, actor=actor, now=now, finished_at=now, message="",
                           reason=f"{rollout.version} is production")
        registry.move_alias(rollout.model, PRODUCTION, rollout.version, actor=actor,
                            reason=f"rollout {rollout.pk} succeeded")
        rolled_back = rollout.stable_version_id if rollout.kind == RolloutKind.ROLLBACK else None
        # Every other deployed version, not only the stable one: a row left `deployed` by hand or by an
        # older mlcp (which deployed canaries at start) must not stay beside the new production.
        for previous in (ModelVersion.objects.select_related("model").filter(
                model=rollout.model, status=VersionStatus.DEPLOYED).exclude(pk=rollout.version_id)):
            bad = previous.pk == rolled_back
            registry.transition_version(
                previous, VersionStatus.ROLLED_BACK if bad else VersionStatus.APPROVED, actor=actor,
                reason=(f"rolled back by rollout {rollout.pk}: {_first_reason(rollout)}" if bad
                        else f"superseded by {rollout.version} (rollout {rollout.pk})"))
        _deploy(rollout, actor=actor)
        # Written with the outcome and delivered by the outbox's sender, so a crash after the commit loses nothing.
        enqueue_notification(rollout, "rollout.succeeded", f"{rollout.version} is production", now=now)
    return rollout


def _deploy(rollout: Rollout, *, actor) -> None:
    version = rollout.version
    version.refresh_from_db()
    if version.status == VersionStatus.DEPLOYED:
        return  # an older mlcp deployed it when the rollout started
    if VersionStatus.DEPLOYED not in REGISTRY_TRANSITIONS[version.status]:
        # Rejected while its rollout ran: the cluster serves it all the same. Say so, and leave the status an
        # approver chose rather than overrule it.
        log.warning("rollout %s promoted %s, which is %s", rollout.pk, version, version.status)
        registry.record_audit(actor, "rollout.promoted_unshippable", model_name=version.model.name,
                              version_number=version.number, from_state=version.status,
                              to_state=version.status, rollout=rollout.pk,
                              reason=f"rollout {rollout.pk} promoted it; it serves production")
        return
    registry.transition_version(version, VersionStatus.DEPLOYED, actor=actor,
                                reason=f"rollout {rollout.pk} promoted it to production", rollout=rollout.pk)


def finish_retreat(rollout: Rollout, *, now: datetime | None = None, actor=CONTROLLER,
                   evidence: dict | None = None) -> Rollout:
    """All traffic is back on stable: end in `retreat_phase` and set the version's status."""
    now = now or timezone.now()
    outcome = rollout.retreat_phase if rollout.retreat_phase in RETREAT_OUTCOMES else Phase.ROLLED_BACK
    with transaction.atomic():
        transition_rollout(rollout, outcome, actor=actor, now=now, finished_at=now, reason=rollout.abort_reason,
                           evidence=evidence)
        _settle_version(rollout, bad=outcome == Phase.ROLLED_BACK and rollout.kind == RolloutKind.CANARY,
                        actor=actor, reason=rollout.abort_reason)
        enqueue_notification(rollout, f"rollout.{outcome}", rollout.abort_reason, evidence, now=now)
    return rollout


def fail(rollout: Rollout, *, reason: str, now: datetime | None = None, actor=CONTROLLER) -> Rollout:
    """The controller cannot go on (a permanent cluster error while retreating)."""
    with transaction.atomic():
        transition_rollout(rollout, Phase.FAILED, actor=actor, now=now, finished_at=now or timezone.now(),
                           reason=reason, abort_reason=rollout.abort_reason or reason)
        _settle_version(rollout, bad=False, actor=actor, reason=reason)
        enqueue_notification(rollout, "rollout.failed", reason, now=now)
    return rollout


def _settle_version(rollout: Rollout, *, bad: bool, actor, reason: str) -> None:
    """A rollout that never promoted returns its canary to the status it had before, or `rolled_back` when bad."""
    version = rollout.version
    version.refresh_from_db()
    if version.status != VersionStatus.CANARY:
        return  # rejected by an approver while it ran: that decision stands
    before = rollout.version_status_before
    # Rows from before `canary` existed have no status to return to; they were approved to roll out.
    returns_to = before if before in (VersionStatus.APPROVED, VersionStatus.AWAITING_APPROVAL) else VersionStatus.APPROVED
    target = VersionStatus.ROLLED_BACK if bad else returns_to
    registry.transition_version(version, target, actor=actor, reason=f"rollout {rollout.pk}: {reason}",
                                rollout=rollout.pk)


def _first_reason(rollout: Rollout) -> str:
    first = rollout.events.order_by("at", "id").first()
    return first.reason if first else ""


# ---------------------------------------------------------------- analysis

def metrics_provider():
    from rollouts.metrics import PrometheusMetricsProvider

    return PrometheusMetricsProvider(settings.PROMETHEUS_URL, timeout_s=settings.PROMETHEUS_TIMEOUT_S)


def replay_analysis(model: RegisteredModel, at: datetime, *, canary_version: int | None = None,
                    stable_version: int | None = None, step_duration_s: int | None = None, provider=None):
    """Run a rollout's checks again at a past instant: the same queries, at `at`.

    Versions and settings default to the model's latest rollout started before `at`. Within that
    rollout's life (and without `step_duration_s`), the analysis is the controller's own for the step
    running at `at` (`rollouts.metrics.analyze_tick`): its pause, counted from its start, and the
    traffic share its router sets. Otherwise the given (or 600 s) step duration over the whole window.
    """
    from rollouts.metrics import analysed_steps_of, analyze, analyze_tick

    rollout = (Rollout.objects.filter(model=model, created_at__lte=at).order_by("-created_at").first()
               or Rollout.objects.filter(model=model).order_by("-created_at").first())
    if canary_version is None:
        if rollout is None:
            raise InvalidInput(f"'{model.name}' has no rollout; give --canary-version and --stable-version",
                               code="versions_required")
        canary_version = rollout.version.number
    if stable_version is None:
        if rollout is None or rollout.stable_version is None:
            raise InvalidInput("give the stable version to compare with", code="versions_required")
        stable_version = rollout.stable_version.number
    settings_ = analysis_of(rollout) if rollout else AnalysisSettings.from_json({}, model.slo)
    provider = provider or metrics_provider()
    running = _step_running_at(rollout, at) if rollout and step_duration_s is None else None
    if running is not None and rollout.version.number == canary_version:
        step, started = running
        return analyze_tick(provider, settings_.config, model.name, str(canary_version), str(stable_version),
                            step=step, traffic=RouterTarget.from_json(rollout.traffic), step_started_at=started,
                            now=at, analysed_steps=analysed_steps_of(steps_of(rollout)))
    if step_duration_s is None:
        step_duration_s = 600
    return analyze(provider, settings_.config, model.name, str(canary_version),
                   str(stable_version), at, timedelta(seconds=max(1, step_duration_s)))


def _step_running_at(rollout: Rollout, at: datetime):
    """(step, when it started) of `rollout` at `at` from its events; None outside its analysed steps."""
    steps = steps_of(rollout)
    started = (rollout.events.filter(at__lte=at, new=Phase.PROGRESSING, step__isnull=False)
               .order_by("-at", "-id").first())
    if started is None or steps[started.step].promotes:
        return None
    ended = rollout.events.filter(at__gt=started.at, at__lte=at).exclude(new=Phase.PROGRESSING).exists()
    return None if ended else (steps[started.step], started.at)


def backtest(model: RegisteredModel, start: datetime, until: datetime, *, steps=None, interval_s: float = 10.0,
             canary_version: int | None = None, stable_version: int | None = None, ticks=None, provider=None):
    """What the controller would have done for `model` on the recorded history from `start` to `until`.

    Versions, steps, router and analysis settings default to the model's latest rollout started before
    `until`; `steps` (as a rollout takes them) tries other ones; `ticks` replaces the regular interval.
    """
    from rollouts.backtest import backtest as walk
    from rollouts.backtest import tick_instants

    if until < start:
        raise InvalidInput("the backtest's end is before its start", code="invalid_time")
    rollout = (Rollout.objects.filter(model=model, created_at__lte=until).order_by("-created_at").first()
               or Rollout.objects.filter(model=model).order_by("-created_at").first())
    if canary_version is None or stable_version is None:
        if rollout is None or rollout.stable_version is None:
            raise InvalidInput(f"'{model.name}' has no rollout to take versions from; give both versions",
                               code="versions_required")
        canary_version = rollout.version.number if canary_version is None else canary_version
        stable_version = rollout.stable_version.number if stable_version is None else stable_version
    settings_ = analysis_of(rollout) if rollout else AnalysisSettings.from_json({}, model.slo)
    plan_steps = parse_steps(steps) if steps is not None else (steps_of(rollout) if rollout else parse_steps(None))
    traffic = RouterTarget.from_json(rollout.traffic) if rollout is not None else target_of(model)
    instants = list(ticks) if ticks is not None else tick_instants(start, until, interval_s)
    return walk(provider or metrics_provider(), settings_, model=model.name, canary_version=str(canary_version),
                stable_version=str(stable_version), steps=plan_steps, traffic=traffic, ticks=instants,
                started_at=start)
