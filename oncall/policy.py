"""A model's runbook policy and the pure decision of what one alert does: no I/O, tested with plain values.

`decide(policy, alert, situation, now)` reads the alert, the policy and what the
database says of the model (the rollout in flight, production and when it
was promoted) and answers one `Decision`; `oncall.services` carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controlplane.errors import InvalidInput
from oncall.alertmanager import LABEL_NAME, MAX_NAME, Alert
from oncall.choices import RunbookAction
from oncall.models import DEFAULT_ROLLBACK_WINDOW_S

ANY_ALERT = "*"
MAX_RULES = 50
# A week: a rollback further back than this is a decision for people, not for an alert.
MAX_ROLLBACK_WINDOW_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Policy:
    """{alertname: action} ("*": any other alert), a dry-run switch and the production rollback window."""

    actions: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    rollback_window_s: int = DEFAULT_ROLLBACK_WINDOW_S

    def action_for(self, alertname: str) -> str:
        return self.actions.get(alertname) or self.actions.get(ANY_ALERT) or RunbookAction.ANNOTATE

    def to_json(self) -> dict:
        return {"actions": dict(self.actions), "dry_run": self.dry_run, "rollback_window_s": self.rollback_window_s}

    @classmethod
    def from_json(cls, raw) -> Policy:
        """A policy from a request body; `InvalidInput` (invalid_runbook_policy) for anything else."""
        if not isinstance(raw, dict) or set(raw) - {"actions", "dry_run", "rollback_window_s"}:
            raise InvalidInput("a runbook policy is {actions: {alertname: rollback|pause|annotate}, dry_run, "
                               "rollback_window_s}", code="invalid_runbook_policy")
        actions = raw.get("actions", {})
        if not isinstance(actions, dict) or len(actions) > MAX_RULES:
            raise InvalidInput(f"'actions' maps at most {MAX_RULES} alert names to an action",
                               code="invalid_runbook_policy")
        for name, action in actions.items():
            if name != ANY_ALERT and (len(name) > MAX_NAME or not name or not LABEL_NAME.fullmatch(name)):
                raise InvalidInput(f"{name[:MAX_NAME]!r} is not an alert name (or '*')", code="invalid_runbook_policy")
            if action not in RunbookAction.values:
                raise InvalidInput(f"alert {name}: the action is one of {', '.join(RunbookAction.values)}",
                                   code="invalid_runbook_policy")
        dry_run = raw.get("dry_run", False)
        window = raw.get("rollback_window_s", DEFAULT_ROLLBACK_WINDOW_S)
        if not isinstance(dry_run, bool):
            raise InvalidInput("'dry_run' is true or false", code="invalid_runbook_policy")
        if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= MAX_ROLLBACK_WINDOW_S:
            raise InvalidInput(f"'rollback_window_s' is whole seconds from 0 to {MAX_ROLLBACK_WINDOW_S}",
                               code="invalid_runbook_policy")
        return cls(actions=dict(actions), dry_run=dry_run, rollback_window_s=window)


# A model nobody configured: every alert is recorded on its page, nothing is changed. Acting is opted into.
DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class InFlight:
    """The model's active rollout."""

    pk: int
    phase: str
    kind: str
    version: int


@dataclass(frozen=True)
class Situation:
    """What the database says of the alert's model when the alert arrives."""

    in_flight: InFlight | None
    production: int | None  # the production version's number
    promoted_at: datetime | None  # when `production` last became production
    namespace: str = ""  # where the model serves (the rollout in flight's, else the last one's); "" if unknown


class Do:
    ROLLBACK_ROLLOUT = "rollback_rollout"
    ROLLBACK_PRODUCTION = "rollback_production"
    PAUSE_ROLLOUT = "pause_rollout"
    ANNOTATE = "annotate"
    SKIP = "skip"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Decision:
    do: str
    action: str  # the policy's action for the alert
    why: str
    rollout: int | None = None

    @property
    def changes_anything(self) -> bool:
        return self.do in (Do.ROLLBACK_ROLLOUT, Do.ROLLBACK_PRODUCTION, Do.PAUSE_ROLLOUT)


def decide(policy: Policy, alert: Alert, situation: Situation, now: datetime) -> Decision:
    """What `alert` does to its model now.

    Only a firing alert whose policy action is `rollback` or `pause` may change anything, and only for the
    version it blames:

    - a `version` label that is no number ("v1") blames an unknown version: skipped, never read as "no
      version", which would act on whatever is in flight or in production;
    - with a rollout in flight, the rollout is rolled back or paused when the alert names its version or none.
      An alert naming another version (typically the stable one, still serving most traffic while a canary
      is in flight) is skipped: the canary is not what it blames, and production cannot be rolled back while
      a rollout is in flight anyway;
    - with none in flight, production is rolled back when the alert names it or no version, and it was
      promoted within the policy's window;
    - a `namespace` label other than where the model serves blames another deployment of a model of the
      same name (another cluster, a staging namespace): skipped.
    """
    action = policy.action_for(alert.name)
    if alert.status == "resolved":
        return Decision(Do.RESOLVED, action, "resolved: nothing is undone or done")
    if action == RunbookAction.ANNOTATE:
        return Decision(Do.ANNOTATE, action, "the runbook policy records this alert only")
    if alert.version_unreadable:
        return Decision(Do.SKIP, action, f"the alert's version label {alert.labels['version'][:64]!r} is no version "
                                         "number; which version it is about is for people to decide")
    if alert.namespace and situation.namespace and alert.namespace != situation.namespace:
        return Decision(Do.SKIP, action, f"the alert is about namespace {alert.namespace[:64]!r}; "
                                         f"{alert.labels['model'][:64]} serves in {situation.namespace!r}")
    flight = situation.in_flight
    if flight is not None and flight.kind != "rollback" and alert.version not in (None, flight.version):
        return Decision(Do.SKIP, action, f"the alert is about v{alert.version}; rollout {flight.pk} is of "
                                         f"v{flight.version}", flight.pk)
    if action == RunbookAction.PAUSE:
        if flight is None:
            return Decision(Do.SKIP, action, "no rollout in flight to pause")
        if flight.phase not in ("pending", "progressing"):
            return Decision(Do.SKIP, action, f"rollout {flight.pk} is {flight.phase}; only a pending or progressing "
                                             "rollout is paused", flight.pk)
        return Decision(Do.PAUSE_ROLLOUT, action, f"pause rollout {flight.pk}", flight.pk)
    # rollback
    if flight is not None:
        if flight.kind == "rollback":
            # A rollback is what the alert asks for; a second one would undo the first.
            return Decision(Do.SKIP, action, f"rollout {flight.pk} is already a rollback", flight.pk)
        if flight.phase == "rolling_back":
            return Decision(Do.SKIP, action, f"rollout {flight.pk} is already rolling back", flight.pk)
        return Decision(Do.ROLLBACK_ROLLOUT, action, f"roll back rollout {flight.pk} (v{flight.version})",
                        flight.pk)
    if situation.production is None:
        return Decision(Do.SKIP, action, "no production version to roll back")
    if alert.version is not None and alert.version != situation.production:
        return Decision(Do.SKIP, action, f"the alert is about v{alert.version}; production is "
                                         f"v{situation.production}")
    window = timedelta(seconds=policy.rollback_window_s)
    if situation.promoted_at is None or now - situation.promoted_at > window:
        return Decision(Do.SKIP, action, f"production v{situation.production} was promoted more than "
                                         f"{policy.rollback_window_s} s before the alert; a rollback this late is a "
                                         "decision for people (mlcp rollback)")
    return Decision(Do.ROLLBACK_PRODUCTION, action, f"roll production v{situation.production} back to the previous "
                                                    "version")
