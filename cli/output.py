"""How every `mlcp` command answers: a human summary on the terminal, or JSON on
stdout with --json, so CI can parse it; and, when nobody watches a terminal,
one plain line per change, so CI logs show progress."""

import json
import sys
from datetime import datetime

from rich.console import Console

console = Console(stderr=True)  # progress and summaries; stdout stays clean for --json

# Exit statuses every command shares (`mlcp serve` adds its own, 3 to 5, for a server that will not start).
EXIT_OK = 0
EXIT_BAD_OUTCOME = 1  # the command worked and the news is bad: a rejected version, a rolled-back rollout
EXIT_REFUSED = 2  # the server answered with an error (its code and detail are printed)
EXIT_UNREACHABLE = 3  # no answer from the server at all


def emit(args, data, human) -> None:
    """Print ``data`` as JSON if ``--json`` was given, else call ``human(data)``."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        human(data)


def stdout_console() -> Console:
    """Where tables and a rollout's status go: sized to the terminal, or, piped, never wrapped (a row stays
    one line that grep finds)."""
    return Console() if on_terminal() else Console(width=1000)


def on_terminal(stream=None) -> bool:
    """Whether a person watches `stream` (stdout) live; otherwise (a pipe, a CI log) progress goes line by line."""
    return (stream or sys.stdout).isatty()


def log_line(text: str, stream=None) -> None:
    """One timestamped line, written at once: rich's live displays print nothing to a pipe."""
    print(f"{datetime.now().astimezone():%H:%M:%S} {text}", file=stream or sys.stdout, flush=True)


def json_line(data) -> None:
    """One compact JSON document per line (JSON Lines), for `--watch --json`."""
    print(json.dumps(data, default=str), flush=True)


def error(text: str) -> None:
    """An error for people, on stderr; never read as rich markup (server details may hold brackets)."""
    console.print(f"mlcp: {text}", style="red", markup=False, highlight=False)
