"""What happens after a version is registered: its gates are queued.

The registry does not import the workers; the gate pipeline registers its
starter here at start-up (see `workers.apps`), so a registry without workers
simply leaves new versions `registered`.
"""

from collections.abc import Callable

from django.db import transaction

_starters: list[Callable] = []


def on_version_registered(starter: Callable) -> Callable:
    if starter not in _starters:
        _starters.append(starter)
    return starter


def version_registered(version) -> None:
    for starter in _starters:
        transaction.on_commit(lambda s=starter: s(version.pk))
