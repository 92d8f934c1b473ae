"""What production installs imports nothing it does not ship: no development
tools, no test code, no training-only dependency; and the model server and the
CLI import nothing of the Django project."""

import ast
import json
from pathlib import Path

import pytest

from tests.support.blocked_imports import DEV_ONLY, ROOT, blocked_env, run_python

# The packages `pip install .` installs (pyproject.toml's packages.find).
PRODUCTION = ("controlplane", "registry", "workers", "rollouts", "oncall", "ui", "k8s", "serving", "cli")
NEVER_IN_PRODUCTION = {"devtools", "tests", "kmock", "sklearn"}
# A serving pod runs `mlcp serve`: the server and the CLI stand apart from the control plane.
STANDALONE = {"serving": {"serving"}, "cli": {"cli", "serving"}}
CONTROL_PLANE = {"django", "celery", "controlplane", "registry", "workers", "rollouts", "oncall", "ui", "k8s", "devtools",
                 "tests"}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.partition(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.partition(".")[0]))
    return found


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_production_packages_exist_where_pyproject_says():
    for package in PRODUCTION:
        assert (ROOT / package / "__init__.py").is_file(), package


@pytest.mark.parametrize("package", PRODUCTION)
def test_no_production_module_imports_dev_tools_tests_or_training_dependencies(package):
    offences = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                for path in modules_of(package) for line, name in imported_packages(path)
                if name in NEVER_IN_PRODUCTION]
    assert offences == []


@pytest.mark.parametrize("package", sorted(STANDALONE))
def test_the_model_server_and_the_cli_import_nothing_of_the_control_plane(package):
    offences = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                for path in modules_of(package) for line, name in imported_packages(path)
                if name in CONTROL_PLANE - STANDALONE[package]]
    assert offences == []


WALK_AND_IMPORT = r"""
import importlib, json, pkgutil, sys

import django

django.setup()
imported, failed = [], {}
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    for name in [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]:
        try:
            importlib.import_module(name)
            imported.append(name)
        except BaseException as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"imported": imported, "failed": failed}))
"""


def test_every_production_module_imports_with_dev_tools_and_tests_blocked(tmp_path):
    # The import system itself refuses devtools, tests, kmock, sklearn and pytest
    # in this process: a lazy import the AST walk could miss fails here too.
    env = blocked_env(tmp_path, DEV_ONLY, DJANGO_SETTINGS_MODULE="controlplane.settings",
                      MLCP_DATA_DIR=str(tmp_path / "data"))
    result = run_python(WALK_AND_IMPORT, env, *PRODUCTION)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert {"serving.server", "cli.main", "workers.tasks", "rollouts.controller",
            "controlplane.settings"} <= set(report["imported"])
    # Without devtools, the demo command is simply not there.
    assert "devtools" not in run_python(
        "import django; django.setup(); from django.conf import settings; print(settings.INSTALLED_APPS)",
        env).stdout


def test_the_blocker_really_blocks(tmp_path):
    result = run_python("import kmock", blocked_env(tmp_path, DEV_ONLY))
    assert result.returncode == 1 and "import of 'kmock' is blocked" in result.stderr
