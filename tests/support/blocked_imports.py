"""Run Python in a child process in which some top-level packages cannot be imported.

A `sys.meta_path` finder, installed by a `sitecustomize` module before the
child imports anything of its own, raises `ModuleNotFoundError` for the named
packages. An import of one anywhere in the child (at module level, or in a
function that runs) then fails loudly, instead of passing because the package
happens to be installed in the test environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Installed by the `dev` and `test` extras, or not installed at all: production code never imports them.
DEV_ONLY = ("devtools", "tests", "kmock", "sklearn", "pytest", "pytest_django", "pytest_asyncio")
# Django, Celery and mlcp's control-plane packages: a serving pod and the CLI need none of them.
CONTROL_PLANE = ("django", "celery", "kombu", "rest_framework", "controlplane", "registry", "workers",
                     "rollouts", "oncall", "ui", "k8s")

_SITECUSTOMIZE = '''\
"""Written by tests/support/blocked_imports.py: refuse to import the packages in MLCP_BLOCKED_IMPORTS."""
import os
import sys


class _BlockedImports:
    blocked = frozenset(filter(None, os.environ.get("MLCP_BLOCKED_IMPORTS", "").split(",")))

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"import of {name!r} is blocked in this process", name=name)
        return None


sys.meta_path.insert(0, _BlockedImports())
'''


def blocked_env(directory: Path, blocked: Iterable[str], *, pythonpath: Sequence[Path] = (ROOT,),
                **extra: str) -> dict[str, str]:
    """An environment whose Python processes cannot import ``blocked``.

    ``pythonpath`` comes after the blocker's own folder (made in ``directory``);
    the rest of the environment is this process's, with ``extra`` on top.
    """
    folder = Path(directory) / "blocked-imports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env.update(PYTHONPATH=os.pathsep.join(str(p) for p in (folder, *pythonpath)),
               MLCP_BLOCKED_IMPORTS=",".join(blocked), **extra)
    return env


def run_python(code: str, env: dict[str, str], *args: str, cwd: Path = ROOT,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c code args...`` in ``env``; output captured as text."""
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
