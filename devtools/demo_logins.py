"""The demo's logins: one user per role, each with a password for the web UI and an API token for the CLI.

Passwords are generated once and kept; tokens are minted afresh on every run (the earlier ones revoked).
All of it is written to one file only its owner can read (0600) in the data directory, because the
terminal scrolls away and the demo prints it only once.
"""

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from django.contrib.auth import get_user_model

from controlplane.accounts import issue_token
from controlplane.roles import Role

FILE_NAME = "demo-logins.json"
# The admin is also Django's superuser (the admin site); the other roles get users named after them.
USERNAMES = {Role.VIEWER: "demo-viewer", Role.CI: "demo-ci", Role.APPROVER: "demo-approver",
             Role.ONCALL: "demo-oncall", Role.ADMIN: "admin"}


@dataclass(frozen=True)
class Login:
    role: str
    username: str
    password: str
    token: str


def ensure_logins(data_dir: Path) -> list[Login]:
    """A user per role with its password (kept from an earlier run) and a new token; written to the 0600 file."""
    path = data_dir / FILE_NAME
    kept = _read(path)
    logins = []
    for role in Role:
        username = USERNAMES[role]
        password = kept.get(role.value, {}).get("password") or secrets.token_urlsafe(12)
        token = issue_token(username, role, rotate=True)
        user = get_user_model().objects.get(username=username)
        if role == Role.ADMIN:
            user.is_superuser = True  # the Django admin site too
        user.set_password(password)
        user.save()
        logins.append(Login(role.value, username, password, token))
    _write_private(path, {login.role: asdict(login) for login in logins})
    return logins


def login_lines(logins: list[Login]) -> list[str]:
    """One line per role: what to type at the sign-in page, and the token for `mlcp` (MLCP_TOKEN)."""
    width = max(len(f"{login.username} / {login.password}") for login in logins)
    return [f"{login.role:<9} {f'{login.username} / {login.password}':<{width}}   token {login.token}"
            for login in logins]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_private(path: Path, data: dict) -> None:
    # Created 0600 before a byte is written, then renamed over the old file: never readable by others.
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(partial, path)
