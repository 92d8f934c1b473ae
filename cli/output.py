"""How every `mlcp` command answers: a human summary on the terminal, or JSON on
stdout with --json, so CI can parse it."""

import json

from rich.console import Console

console = Console(stderr=True)  # progress and summaries; stdout stays clean for --json


def emit(args, data, human) -> None:
    """Print ``data`` as JSON if ``--json`` was given, else call ``human(data)``."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        human(data)
