"""`manage.py demo --no-serve` runs the whole story on its own, in a fresh data
directory: gates, a first deploy, a canary that promotes and a failing canary
the controller rolls back by itself; its output and its database agree. And
the demo gives every role a login, kept where only its owner can read it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from rest_framework.exceptions import AuthenticationFailed

from controlplane.roles import Role, roles_of
from controlplane.tokens import ApiTokenAuthentication
from devtools.demo_logins import FILE_NAME, ensure_logins, login_lines

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 420  # a cold model cache trains three models first; warm, it takes about a minute

STATES = """
import json
from registry import services
from registry.models import RegisteredModel
model = RegisteredModel.objects.get(name="digits-resnet")
print(json.dumps({
    "production": services.alias_target(model, "production").number,
    "versions": {v.number: v.status for v in model.versions.all()},
    "rollouts": [[r.version.number, r.phase, [e.actor for e in r.events.filter(new="rolling_back")]]
                 for r in model.rollouts.order_by("pk")],
}))
"""


def _manage(env, *args, timeout):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=timeout)


@pytest.mark.slow
def test_demo_promotes_the_good_canary_and_rolls_back_the_bad_one(tmp_path):
    env = dict(os.environ, MLCP_DATA_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)  # the demo's own SQLite file, not the suite's database
    demo = _manage(env, "demo", "--no-serve", timeout=DEMO_TIMEOUT_S)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]

    out = demo.stdout
    assert "rollout digits-resnet:1: succeeded; production is digits-resnet:1" in out
    assert "good canary digits-resnet:2: succeeded; production is digits-resnet:2" in out
    assert "bad canary digits-resnet:3: rolled back automatically by the controller" in out
    assert "analysis at step 1: PASS" in out and "analysis at step 1: FAIL" in out  # steps count from 1

    shell = _manage(env, "shell", "-c", STATES, timeout=60)
    assert shell.returncode == 0, shell.stderr[-4000:]
    states = json.loads(shell.stdout.strip().splitlines()[-1])
    assert states["production"] == 2
    assert states["versions"]["1"] == "approved" and states["versions"]["2"] == "deployed"
    assert states["versions"]["3"] == "rolled_back"
    assert states["rollouts"] == [[1, "succeeded", []], [2, "succeeded", []], [3, "rolled_back", ["controller"]]]


@pytest.mark.django_db
def test_every_role_gets_a_password_and_a_token_kept_in_a_file_only_its_owner_reads(tmp_path):
    logins = ensure_logins(tmp_path)
    assert [login.role for login in logins] == [role.value for role in Role]
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o600
    kept = json.loads((tmp_path / FILE_NAME).read_text())
    assert {role: login["token"] for role, login in kept.items()} == {login.role: login.token for login in logins}
    for login in logins:
        user = authenticate(username=login.username, password=login.password)
        assert user is not None, login.username
        assert Role(login.role) in roles_of(user)
        assert ApiTokenAuthentication().authenticate_credentials(login.token)[0] == user
    assert authenticate(username="admin", password=logins[-1].password).is_superuser  # the Django admin too


@pytest.mark.django_db
def test_a_second_run_keeps_the_passwords_and_replaces_the_tokens(tmp_path):
    first = ensure_logins(tmp_path)
    second = ensure_logins(tmp_path)
    assert [login.password for login in second] == [login.password for login in first]
    assert all(a.token != b.token for a, b in zip(first, second))
    with pytest.raises(AuthenticationFailed, match="revoked"):
        ApiTokenAuthentication().authenticate_credentials(first[0].token)


def test_one_line_per_role_names_the_login_and_the_token():
    from devtools.demo_logins import Login

    lines = login_lines([Login("viewer", "demo-viewer", "pw1", "mlcp_a_b"), Login("admin", "admin", "pw2", "mlcp_c_d")])
    assert lines == ["viewer    demo-viewer / pw1   token mlcp_a_b", "admin     admin / pw2         token mlcp_c_d"]
