"""`mlcp rollout start|status|promote|pause|resume|abort` and `mlcp rollback`.

Thin: each command is one API call (status --watch polls one), printed for
people, or as JSON with --json.
"""

import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli.output import console, emit

TERMINAL = {"succeeded", "rolled_back", "aborted", "failed"}


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
    status.add_argument("--watch", action="store_true", help="follow it live until it ends")
    status.add_argument("--interval", type=float, default=2.0)
    status.set_defaults(handler=cmd_status)

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
    emit(args, rollout, lambda r: console.print(f"rollout {r['id']} of {r['model']}:{r['version']} started "
                                                 f"(stable {r['stable_version']}); follow it with "
                                                 f"`mlcp rollout status {r['id']} --watch`"))
    return 0


def cmd_status(args, client) -> int:
    path = f"/api/v1/rollouts/{args.id}/"
    rollout = client.get_json(path)
    if args.watch and not args.json:
        with Live(render(rollout), console=Console(), refresh_per_second=4) as live:
            while rollout["phase"] not in TERMINAL:
                time.sleep(args.interval)
                rollout = client.get_json(path)
                live.update(render(rollout))
    else:
        emit(args, rollout, lambda r: Console().print(render(r)))
    return 0 if rollout["phase"] not in {"rolled_back", "aborted", "failed"} else 1


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
        f"rolling back {r['model']}: rollout {r['id']} is {r['phase']} "
        f"({'retreating to stable ' + str(r['stable_version']) if r['kind'] == 'canary' else 'to version ' + str(r['version'])})"))
    return 0


def render(rollout: dict):
    """A rollout as people read it: phase, steps with the current one marked, last analysis."""
    steps = rollout["strategy"].get("steps", [])
    weights = [s["weight"] if isinstance(s, dict) else s for s in steps]
    marks = " → ".join(f"[bold reverse]{w}%[/]" if i == rollout["current_step"] else f"{w}%"
                       for i, w in enumerate(weights))
    header = Text.from_markup(f"[bold]rollout {rollout['id']}[/] {rollout['model']}: "
                              f"{rollout['stable_version']} → {rollout['version']}  [bold]{rollout['phase']}[/]")
    table = Table.grid(padding=(0, 2))
    controller = rollout.get("controller") or {}
    if rollout["phase"] not in TERMINAL and controller.get("alive") is False:
        stale = controller.get("stale_for_s")
        acted = "has ever acted" if stale is None else f"has acted for {stale:.0f} s"
        table.add_row(Text("warning", style="bold red"),
                      Text(f"No controller {acted} — this rollout will not move", style="bold red"))
    table.add_row("steps", Text.from_markup(marks))
    table.add_row("canary weight", f"{rollout.get('weight')}%")
    if rollout.get("message"):
        table.add_row("controller", rollout["message"])
    if rollout.get("abort_reason"):
        table.add_row("reason", rollout["abort_reason"])
    analysis = rollout.get("last_analysis")
    if analysis:
        table.add_row("last analysis", f"{analysis['verdict']} at {analysis['at']} (step {analysis['step']})")
        for check in analysis["checks"]:
            table.add_row(f"  {check['check']}", f"{check['verdict']}: {check['reason']}")
    return Group(header, table)


def _summary(rollout: dict) -> None:
    console.print(f"rollout {rollout['id']} of {rollout['model']}:{rollout['version']}: {rollout['phase']}, "
                  f"step {rollout['current_step']} ({rollout.get('weight')}%)")
