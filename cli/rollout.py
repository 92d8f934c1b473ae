"""`mlcp rollout start|status|list|promote|pause|resume|abort` and `mlcp rollback`.

Thin: each command is one API call (status --watch polls one), printed for
people, or as JSON with --json. People read steps 1-based ("step 2/4") and the
direction stable → canary; the API's `current_step` stays 0-based.
"""

import time

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli.output import EXIT_BAD_OUTCOME, EXIT_OK, console, emit, json_line, log_line, on_terminal, stdout_console

TERMINAL = {"succeeded", "rolled_back", "aborted", "failed"}
BAD_OUTCOMES = {"rolled_back", "aborted", "failed"}
PHASES = ["pending", "progressing", "paused", "promoting", "rolling_back", "succeeded", "rolled_back", "aborted",
          "failed"]


def add_commands(sub) -> None:
    """Hook the rollout commands into the `mlcp` parser's subcommands."""
    rollout = sub.add_parser("rollout", help="canary rollouts").add_subparsers(dest="rollout_command", required=True)

    start = rollout.add_parser("start", help="start a canary rollout of MODEL VERSION to the model's target",
                               description="The rollout goes where an admin pointed the model (PUT "
                                           "models/NAME/target). --namespace, --deployment, --replicas and "
                                           "--httproute only check that target: a different value is refused.")
    start.add_argument("model")
    start.add_argument("version", type=int)
    start.add_argument("--namespace", help="expect the model's target in this namespace")
    start.add_argument("--deployment", help="expect this stable Deployment of the model server")
    start.add_argument("--replicas", type=int, help="expect these pods in all (replica ratio) or the canary's "
                                                    "(HTTPRoute)")
    start.add_argument("--steps", default="10,25,50,100", help="canary weights in percent, the last one 100")
    start.add_argument("--pause", type=int, help="seconds each step holds (default 300)")
    start.add_argument("--httproute", metavar="ROUTE", help="expect weights moved on this Gateway API HTTPRoute")
    start.set_defaults(handler=cmd_start)

    status = rollout.add_parser("status", help="show a rollout")
    status.add_argument("id", type=int)
    status.add_argument("--watch", action="store_true",
                        help="follow it until it ends: live on a terminal, else a line per change (with --json, "
                             "a JSON document per change)")
    status.add_argument("--interval", type=float, default=2.0)
    status.set_defaults(handler=cmd_status)

    listing = rollout.add_parser("list", help="list rollouts, newest first")
    listing.add_argument("--model", help="only this model's")
    listing.add_argument("--phase", choices=PHASES, help="only rollouts in this phase")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(handler=cmd_list)

    promote = rollout.add_parser("promote", help="skip the current step's analysis")
    promote.add_argument("id", type=int)
    promote.add_argument("--full", action="store_true", help="promote to 100%% now")
    promote.set_defaults(handler=cmd_promote)

    for name, text in (("pause", "hold at the current weight"), ("resume", "continue a paused rollout"),
                       ("abort", "send all traffic back to stable and stop")):
        command = rollout.add_parser(name, help=text)
        command.add_argument("id", type=int)
        command.add_argument("--reason", default="", required=name == "abort")
        command.set_defaults(handler=cmd_control, action=name)

    rollback = sub.add_parser("rollback", help="roll MODEL back now (the rollout in flight, or to the previous version)")
    rollback.add_argument("model")
    rollback.add_argument("--reason", required=True)
    rollback.set_defaults(handler=cmd_rollback)


def cmd_start(args, client) -> int:
    steps = [int(w) for w in args.steps.split(",") if w.strip()]
    body = {"model": args.model, "version": args.version, "steps": steps}
    # Only what the user typed: a default sent on their behalf could differ from the model's target.
    body.update({name: value for name, value in (("namespace", args.namespace), ("deployment", args.deployment),
                                                 ("replicas", args.replicas)) if value is not None})
    if args.pause is not None:
        body["pause_s"] = args.pause
    if args.httproute:
        body.update(router="httproute", route=args.httproute)
    rollout = client.post_json("/api/v1/rollouts/", body)
    emit(args, rollout, lambda r: console.print(
        f"rollout {r['id']} started: {r['model']} {direction(r)}, steps {_weights_text(r)}; "
        f"follow it with `mlcp rollout status {r['id']} --watch`", markup=False, highlight=False))
    return 0


def cmd_status(args, client) -> int:
    path = f"/api/v1/rollouts/{args.id}/"
    rollout = client.get_json(path)
    if not args.watch:
        emit(args, rollout, lambda r: stdout_console().print(render(r)))
    elif on_terminal() and not args.json:
        with Live(render(rollout), console=stdout_console(), refresh_per_second=4) as live:
            while rollout["phase"] not in TERMINAL:
                time.sleep(args.interval)
                rollout = client.get_json(path)
                live.update(render(rollout))
    else:
        rollout = _log_until_done(client, path, rollout, args)
    return EXIT_BAD_OUTCOME if rollout["phase"] in BAD_OUTCOMES else EXIT_OK


def _log_until_done(client, path: str, rollout: dict, args) -> dict:
    """--watch without a terminal (CI logs, `| tee`): a line, or a JSON document, each time something changes."""
    said = None
    while True:
        # A dead controller's "stale for N s" grows every poll; that alone is no news.
        news = one_line(rollout | {"controller": {"alive": (rollout.get("controller") or {}).get("alive")}})
        if news != said:
            json_line(rollout) if args.json else log_line(one_line(rollout))
            said = news
        if rollout["phase"] in TERMINAL:
            return rollout
        time.sleep(args.interval)
        rollout = client.get_json(path)


def cmd_list(args, client) -> int:
    rollouts = client.get_all("/api/v1/rollouts/", limit=args.limit, model__name=args.model, phase=args.phase)

    def human(data):
        table = Table("id", "model", "direction", "phase", "step", "started", "by")
        for r in data["results"]:
            table.add_row(str(r["id"]), r["model"], direction(r), r["phase"], step_text(r),
                          str(r.get("created_at") or "")[:19], r.get("created_by") or "")
        stdout_console().print(table)

    emit(args, {"count": len(rollouts), "results": rollouts}, human)
    return 0


def cmd_promote(args, client) -> int:
    rollout = client.post_json(f"/api/v1/rollouts/{args.id}/promote", {"full": args.full})
    emit(args, rollout, _summary)
    return 0


def cmd_control(args, client) -> int:
    rollout = client.post_json(f"/api/v1/rollouts/{args.id}/{args.action}", {"reason": args.reason})
    emit(args, rollout, _summary)
    return 0


def cmd_rollback(args, client) -> int:
    rollout = client.post_json(f"/api/v1/models/{args.model}/rollback", {"reason": args.reason})
    emit(args, rollout, lambda r: console.print(
        f"rolling back {r['model']}: rollout {r['id']} ({direction(r)}) is {r['phase']}; "
        + (f"all traffic goes back to stable v{r['stable_version']}" if r.get("kind") != "rollback"
           else f"production goes back to v{r['version']}")
        + f". Follow it with `mlcp rollout status {r['id']} --watch`", markup=False, highlight=False))
    return 0


# --- how a rollout reads, the same in every command --------------------------------------


def _weights(rollout: dict) -> list:
    steps = (rollout.get("strategy") or {}).get("steps", [])
    return [s["weight"] if isinstance(s, dict) else s for s in steps]


def _weights_text(rollout: dict) -> str:
    return " → ".join(f"{w}%" for w in _weights(rollout))


def direction(rollout: dict) -> str:
    """Where traffic goes: "stable v2 → canary v3"; a rollback rollout: "stable v3 → back to v2"."""
    stable = f"stable v{rollout['stable_version']}" if rollout.get("stable_version") is not None else "no stable"
    if rollout.get("kind") == "rollback":
        return f"{stable} → back to v{rollout['version']}"
    return f"{stable} → canary v{rollout['version']}"


def step_text(rollout: dict, step: int | None = None) -> str:
    """The API's 0-based step as people count it: "step 2/4 (25%)"."""
    weights = _weights(rollout)
    index = rollout.get("current_step", 0) if step is None else step
    weight = f" ({weights[index]}%)" if 0 <= index < len(weights) else ""
    return f"step {index + 1}/{len(weights)}{weight}"


def outcome(rollout: dict) -> str | None:
    """What a finished or retreating rollout did, in words; None while it is still moving forward."""
    phase, reason = rollout["phase"], rollout.get("abort_reason") or ""
    by, at = _retreated_by(rollout), step_text(rollout)
    because = f": {reason}" if reason else ""
    stable = (f"stable v{rollout['stable_version']}" if rollout.get("stable_version") is not None
              else "stable (none: the canary scales to zero)")
    if phase == "succeeded":
        return f"succeeded: production is v{rollout['version']}"
    if phase in ("rolled_back", "aborted"):
        word = "rolled back" if phase == "rolled_back" else "aborted"
        return f"{word}{by} at {at}{because}; all traffic is on {stable}"
    if phase == "rolling_back":
        ends = "rolled_back" if rollout.get("retreat_phase") == "rolled_back" else "aborted"
        return f"rolling back{by} from {at}{because}; traffic is going back to {stable}, then it ends {ends}"
    if phase == "failed":
        return f"failed at {at}: {reason or rollout.get('message') or 'no reason recorded'}"
    return None


def _retreated_by(rollout: dict) -> str:
    # Only the detail view carries events; a list or an action's answer just says less.
    retreats = [e for e in rollout.get("events") or [] if e.get("new") == "rolling_back" and e.get("actor")]
    if not retreats:
        return ""
    actor = retreats[-1]["actor"]
    return " automatically by the controller" if actor == "controller" else f" by {actor}"


def one_line(rollout: dict) -> str:
    """A rollout in one line, for logs and summaries."""
    head = f"rollout {rollout['id']} {rollout['model']} {direction(rollout)}:"
    done = outcome(rollout)
    if done is not None:
        return f"{head} {done}"  # it starts with the phase in words
    line = f"{head} {rollout['phase']}, {step_text(rollout)}"
    analysis = rollout.get("last_analysis")
    if analysis:
        line += f"; last analysis {analysis['verdict']} at {step_text(rollout, analysis['step'])}"
    if rollout.get("message"):
        line += f"; controller: {rollout['message']}"
    controller = rollout.get("controller") or {}
    if controller.get("alive") is False:
        line += f"; WARNING: {_no_controller(controller)}"
    return line


def _no_controller(controller: dict) -> str:
    stale = controller.get("stale_for_s")
    acted = "has ever acted" if stale is None else f"has acted for {stale:.0f} s"
    return f"No controller {acted} — this rollout will not move"


def render(rollout: dict):
    """A rollout as people read it: direction, phase, steps with the current one marked, outcome or weight."""
    weights = _weights(rollout)
    current = rollout.get("current_step", 0)
    marks = Text(" → ").join(Text(f"{w}%", style="bold reverse" if i == current else "")
                             for i, w in enumerate(weights))
    header = Text.assemble((f"rollout {rollout['id']}", "bold"), f" {rollout['model']}: {direction(rollout)}  ",
                           (rollout["phase"], "bold"))
    table = Table.grid(padding=(0, 2))
    controller = rollout.get("controller") or {}
    finished = outcome(rollout)
    if rollout["phase"] not in TERMINAL and controller.get("alive") is False:
        table.add_row(Text("warning", style="bold red"), Text(_no_controller(controller), style="bold red"))
    table.add_row("steps", Text.assemble(marks, f"  (step {current + 1} of {len(weights)})"))
    if finished is not None:
        # Not a canary weight: once it retreats or ends, the step it reached is history, not traffic.
        table.add_row("outcome", Text(finished))
    else:
        table.add_row("canary weight", f"{rollout.get('weight')}%")
        if rollout.get("message"):  # what the controller last saw; stale once the rollout has ended
            table.add_row("controller", Text(rollout["message"]))
    analysis = rollout.get("last_analysis")
    if analysis:
        table.add_row("last analysis", f"{analysis['verdict']} at {analysis['at']}, "
                                       f"{step_text(rollout, analysis['step'])}")
        for check in analysis.get("checks", []):
            table.add_row(f"  {check['check']}", Text(f"{check['verdict']}: {check['reason']}"))
    return Group(header, table)


def _summary(rollout: dict) -> None:
    console.print(one_line(rollout), markup=False, highlight=False)
