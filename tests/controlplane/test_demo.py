"""`manage.py demo --no-serve` runs the whole story on its own, in a fresh data
directory: gates, a first deploy, a canary that promotes and a failing canary
the controller rolls back by itself; its output and its database agree.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
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


def test_demo_promotes_the_good_canary_and_rolls_back_the_bad_one(tmp_path):
    env = dict(os.environ, MLCP_DATA_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)  # the demo's own SQLite file, not the suite's database
    demo = _manage(env, "demo", "--no-serve", timeout=DEMO_TIMEOUT_S)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]

    out = demo.stdout
    assert "rollout digits-resnet:1: succeeded; production is digits-resnet:1" in out
    assert "good canary digits-resnet:2: succeeded; production is digits-resnet:2" in out
    assert "bad canary digits-resnet:3: rolled back automatically by the controller" in out
    assert "analysis at step 0: PASS" in out and "analysis at step 0: FAIL" in out

    shell = _manage(env, "shell", "-c", STATES, timeout=60)
    assert shell.returncode == 0, shell.stderr[-4000:]
    states = json.loads(shell.stdout.strip().splitlines()[-1])
    assert states["production"] == 2
    assert states["versions"]["1"] == "approved" and states["versions"]["2"] == "deployed"
    assert states["versions"]["3"] == "rolled_back"
    assert states["rollouts"] == [[1, "succeeded", []], [2, "succeeded", []], [3, "rolled_back", ["controller"]]]
