"""`mlcp rollout` and `mlcp rollback` against a real server: each command changes what it says."""

import json
import subprocess
import sys

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import RegisteredModel
from rollouts.models import Rollout
from tests.factories import set_target
from tests.support.webserver import gunicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


def _mlcp(base_url, token, *args):
    result = subprocess.run([sys.executable, "-m", "cli.main", "--url", base_url, "--token", token,
                             "--json", *args], capture_output=True, text=True, timeout=120)
    return result


@pytest.fixture
def candidate(make_version):
    model = set_target(RegisteredModel.objects.create(name="resnet"),
                       {"namespace": "vision", "deployment": "resnet-server"})
    make_version(model, "deployed", production=True)
    return make_version(model, "approved")


def test_ci_starts_and_oncall_pauses_resumes_and_rolls_back(candidate):
    ci, oncall = issue_token("ci-bot", Role.CI), issue_token("pager", Role.ONCALL)
    with gunicorn_server() as (base_url, _):
        started = _mlcp(base_url, ci, "rollout", "start", "resnet", str(candidate.number), "--namespace", "vision",
                        "--deployment", "resnet-server", "--steps", "10,50,100", "--pause", "60")
        assert started.returncode == 0, started.stderr
        rollout_id = json.loads(started.stdout)["id"]
        denied = _mlcp(base_url, ci, "rollout", "pause", str(rollout_id))
        paused = _mlcp(base_url, oncall, "rollout", "pause", str(rollout_id))
        resumed = _mlcp(base_url, oncall, "rollout", "resume", str(rollout_id))
        status = _mlcp(base_url, ci, "rollout", "status", str(rollout_id))
        rolled_back = _mlcp(base_url, oncall, "rollback", "resnet", "--reason", "pager: error rate up")
        no_reason = subprocess.run([sys.executable, "-m", "cli.main", "rollback", "resnet"],
                                   capture_output=True, text=True)
    assert denied.returncode == 2 and "permission_denied" in denied.stderr
    assert json.loads(paused.stdout)["phase"] == "paused"
    assert json.loads(resumed.stdout)["phase"] != "paused"
    assert json.loads(status.stdout)["id"] == rollout_id
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert no_reason.returncode != 0 and "--reason" in no_reason.stderr
    rollout = Rollout.objects.get(pk=rollout_id)
    assert rollout.phase == "rolling_back"
    assert rollout.events.filter(reason__contains="pager: error rate up").exists()


def test_starting_a_second_rollout_of_the_model_is_refused_with_its_code(candidate, make_version):
    other = make_version(candidate.model, "approved")
    ci = issue_token("ci-bot", Role.CI)
    with gunicorn_server() as (base_url, _):
        first = _mlcp(base_url, ci, "rollout", "start", "resnet", str(candidate.number))
        second = _mlcp(base_url, ci, "rollout", "start", "resnet", str(other.number))
        foreign = _mlcp(base_url, ci, "rollout", "start", "resnet", str(other.number), "--deployment", "fraud-server")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["traffic"]["namespace"] == "vision"  # the model's target, named or not
    assert second.returncode == 2
    assert "rollout_in_progress" in second.stderr
    assert foreign.returncode == 2 and "foreign_target" in foreign.stderr
    assert Rollout.objects.count() == 1
