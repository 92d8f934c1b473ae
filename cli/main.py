"""`mlcp`: the command line for CI and on-call.

Server URL and token come from --url/--token or MLCP_URL/MLCP_TOKEN; those and
--json go before or after the command. Every command prints a human summary,
or JSON with --json. Exit status: 0 done, 1 done but the outcome is bad (a
rejected version, a rolled-back rollout), 2 the server refused (its detail and
code are printed), 3 the server could not be reached.
"""

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from cli import rollout as rollout_cli
from cli.client import ApiError, MlcpClient, ServerUnreachable, sha256_file
from cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, console, emit, error, log_line, on_terminal, stdout_console

TERMINAL_STATUSES = {"awaiting_approval", "approved", "canary", "rejected", "deployed", "rolled_back", "archived"}


def _progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)


def cmd_push(args, client: MlcpClient) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"mlcp: {path} is not a file")
    with _progress() as progress:
        task = progress.add_task("hashing", total=path.stat().st_size)
        digest = sha256_file(path, lambda done, total: progress.update(task, completed=done))
        client.ensure_model(args.model)
        upload = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
        fields = {"format": args.format or ("pt2" if path.suffix == ".pt2" else "onnx"), "sha256": digest,
                  "git_commit": args.git_commit, "ci_run_url": args.ci_run_url,
                  "training_data_digest": args.training_data_digest,
                  "tags": json.dumps(dict(t.split("=", 1) for t in args.tag)) if args.tag else None}
        version = client.upload_version(
            args.model, path, fields, bundle=Path(args.bundle) if args.bundle else None,
            on_progress=lambda sent, total: progress.update(upload, completed=sent, total=total))
    if args.wait:
        version = wait_for_gates(client, args.model, version["number"], args.timeout)
    emit(args, version, _print_version)
    # CI fails the job on a rejected version or a gate that could not run.
    return 1 if args.wait and version["status"] in {"rejected", "registered"} else 0


def wait_for_gates(client: MlcpClient, model: str, number: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    base = f"/api/v1/models/{model}/versions/{number}/"
    # Progress goes to stderr (stdout may be --json): a spinner for a person, a line per change for a CI log.
    live = on_terminal(sys.stderr)
    shown = None
    with console.status(f"waiting for the gates of {model}:{number}") if live else nullcontext() as status:
        while True:
            version = client.get_json(base)
            gates = client.get_json(base + "gates")
            line = f"{model}:{number} {version['status']}: " + (
                ", ".join(f"{g['gate']}={g['verdict']}" for g in gates) or "queued")
            if live:
                status.update(line)
            elif line != shown:
                log_line(line, sys.stderr)
            shown = line
            gate_errored = version["status"] == "registered" and any(g["verdict"] == "error" for g in gates)
            if version["status"] in TERMINAL_STATUSES or gate_errored:
                version["gates"] = gates
                return version
            if time.monotonic() > deadline:
                raise SystemExit(f"mlcp: gates of {model}:{number} not finished after {timeout:.0f}s")
            time.sleep(1.0)


def _print_version(version: dict) -> None:
    console.print(f"[bold]{version['model']}:{version['number']}[/] {version['status']}  "
                  f"sha256:{version['digest']}  signed by {version['signer']}")
    for gate in version.get("gates", []):
        console.print(f"  {gate['gate']:<13} {gate['verdict']:<7} {gate.get('summary', '')}")


def cmd_verify(args, client) -> int:
    from serving.verification import verify_artifact

    ok, message = verify_artifact(Path(args.file), Path(args.bundle), Path(args.public_key))
    emit(args, {"ok": ok, "detail": message}, lambda d: console.print(("[green]OK[/] " if ok else "[red]FAILED[/] ")
                                                                       + message))
    return 0 if ok else 1


def cmd_fetch(args, client) -> int:
    """Download an artifact and its bundle, verify both, keep the file only if they verify."""
    from serving.verification import verify_artifact

    out = Path(args.out)
    base = f"/api/v1/models/{args.model}/versions/{args.version}/"
    partial = out.with_name(out.name + ".partial")
    with _progress() as progress:
        task = progress.add_task(f"downloading {args.model}:{args.version}")
        digest = client.download(base + "artifact", partial,
                                 lambda done, total: progress.update(task, completed=done, total=total or None))
    bundle = out.with_name(out.name + ".sig")
    bundle.write_bytes(client.request("GET", base + "signature").content)
    keys = client.get_json("/api/v1/signing-keys/")
    if args.digest and args.digest.removeprefix("sha256:") != digest:
        partial.unlink()
        raise SystemExit(f"mlcp: downloaded bytes hash to sha256:{digest}, expected {args.digest}")
    if args.verify:
        key_file = out.with_name(out.name + ".pub")
        for key in keys:
            key_file.write_text(key["pem"])
            ok, message = verify_artifact(partial, bundle, key_file)
            if ok:
                break
        key_file.unlink()
        if not ok:
            partial.unlink()
            raise SystemExit(f"mlcp: {args.model}:{args.version} does not verify: {message}")
    partial.rename(out)
    emit(args, {"path": str(out), "digest": digest, "verified": bool(args.verify)},
          lambda d: console.print(f"{out} sha256:{digest}" + (" verified" if args.verify else "")))
    return 0


def cmd_golden_push(args, client) -> int:
    path = Path(args.file)
    client.ensure_model(args.model)
    with _progress() as progress:
        task = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
        fields = {"description": args.description}
        if args.make_default:
            # Governed: only an approver may change what the gates measure against, with a reason.
            fields.update(make_default="true", reason=args.make_default)
        golden = client.upload(f"/api/v1/models/{args.model}/golden-sets/", path, "golden_set", fields,
                               on_progress=lambda sent, total: progress.update(task, completed=sent, total=total))
    emit(args, golden, lambda g: console.print(
        f"golden set {g['model']}#{g['number']}: {g['num_examples']} examples, sha256:{g['digest']}"
        + (" (default)" if args.make_default else " (not the default: an approver sets that)")))
    return 0


def cmd_versions(args, client) -> int:
    page = client.get_json(f"/api/v1/models/{args.model}/versions/")

    def human(data):
        table = Table("version", "status", "digest", "signer", "created")
        for v in data["results"]:
            table.add_row(str(v["number"]), v["status"], v["digest"][:16], v["signer"], v["created_at"])
        stdout_console().print(table)

    emit(args, page, human)
    return 0


def cmd_models(args, client) -> int:
    models = client.get_all("/api/v1/models/")

    def human(data):
        table = Table("model", "production", "other aliases", "owner", "description")
        for m in data["results"]:
            aliases = dict(m.get("aliases") or {})
            production = aliases.pop("production", None)
            table.add_row(m["name"], f"v{production}" if production else "-",
                          ", ".join(f"{name} v{number}" for name, number in sorted(aliases.items())),
                          m.get("owner") or "", m.get("description") or "")
        stdout_console().print(table)

    # The API's page shape, whole: `.results[]` reads the same as in `mlcp versions --json`.
    emit(args, {"count": len(models), "results": models}, human)
    return 0


def cmd_decide(args, client) -> int:
    """`mlcp approve|reject MODEL VERSION --reason`: an approver's decision, kept in the audit trail."""
    version = client.post_json(f"/api/v1/models/{args.model}/versions/{args.version}/{args.decision}",
                               {"reason": args.reason})
    emit(args, version, lambda v: console.print(f"{v['model']}:{v['number']} {v['status']}: {args.reason}",
                                                markup=False, highlight=False))
    return 0


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # A subcommand's copy leaves the attribute unset unless given there, so it never undoes one given before.
    parser.add_argument("--url", default=argparse.SUPPRESS if suppress else None,
                        help="mlcp server URL (env MLCP_URL)")
    parser.add_argument("--token", default=argparse.SUPPRESS if suppress else None, help="API token (env MLCP_TOKEN)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print JSON instead of text")


class _CommandParser(argparse.ArgumentParser):
    """A (sub)command's parser: it takes --url, --token and --json too, so they go before or after the command.

    argparse gives nested subcommands their parent's parser class, so `rollout status` inherits this.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _add_global_options(self, suppress=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcp", description=__doc__.splitlines()[0])
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)

    push = sub.add_parser("push", help="register a model version (streamed upload)")
    push.add_argument("model")
    push.add_argument("file")
    push.add_argument("--format", choices=["onnx", "pt2"])
    push.add_argument("--bundle", help="a model-signing bundle made by CI (verified against trusted keys)")
    push.add_argument("--git-commit")
    push.add_argument("--ci-run-url")
    push.add_argument("--training-data-digest")
    push.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    push.add_argument("--wait", action="store_true", help="wait for the gates to finish")
    push.add_argument("--timeout", type=float, default=1800)
    push.set_defaults(handler=cmd_push)

    verify = sub.add_parser("verify", help="verify a file against a model-signing bundle offline")
    verify.add_argument("file")
    verify.add_argument("bundle")
    verify.add_argument("--public-key", required=True)
    verify.set_defaults(handler=cmd_verify)

    fetch = sub.add_parser("fetch", help="download a version and keep it only if it verifies")
    fetch.add_argument("model")
    fetch.add_argument("version", type=int)
    fetch.add_argument("--out", required=True)
    fetch.add_argument("--digest")
    fetch.add_argument("--verify", action="store_true")
    fetch.set_defaults(handler=cmd_fetch)

    versions = sub.add_parser("versions", help="list a model's versions")
    versions.add_argument("model")
    versions.set_defaults(handler=cmd_versions)

    models = sub.add_parser("models", help="list the models, with their production version and aliases")
    models.set_defaults(handler=cmd_models)

    for decision, text in (("approve", "approve a version awaiting approval (approver)"),
                           ("reject", "reject a version (approver)")):
        command = sub.add_parser(decision, help=text)
        command.add_argument("model")
        command.add_argument("version", type=int)
        command.add_argument("--reason", required=True, help="why; kept in the audit trail")
        command.set_defaults(handler=cmd_decide, decision=decision)

    golden = sub.add_parser("golden-set", help="golden sets").add_subparsers(dest="golden_command", required=True)
    golden_push = golden.add_parser("push", help="register a labelled .npz (an approver may make it the default)")
    golden_push.add_argument("model")
    golden_push.add_argument("file")
    golden_push.add_argument("--description", default="")
    golden_push.add_argument("--make-default", metavar="REASON", default="",
                             help="make it the model's default golden set (approver or admin), with this reason")
    golden_push.set_defaults(handler=cmd_golden_push)

    from cli.serve import add_serve_parser  # the model server; imports nothing heavy
    add_serve_parser(sub)
    rollout_cli.add_commands(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    client = MlcpClient.from_env(args.url, args.token)
    try:
        return args.handler(args, client)
    except ApiError as exc:
        error(f"{exc.detail} ({exc.code})")
        if args.json:
            print(json.dumps({"code": exc.code, "detail": exc.detail, "status": exc.status}))
        return EXIT_REFUSED
    except ServerUnreachable as exc:
        error(str(exc))
        if args.json:
            print(json.dumps({"code": "unreachable", "detail": str(exc), "status": None}))
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
