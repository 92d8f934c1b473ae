"""`mlcp rollout` and `mlcp rollback` against a real server: each command changes what it says."""

import json
import subprocess
import sys
import threading
from queue import Queue

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import RegisteredModel
from rollouts import services
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


def test_rollout_list_filters_by_model_and_phase_newest_first(candidate, make_version):
    other = set_target(RegisteredModel.objects.create(name="fraud"), {"namespace": "risk", "deployment": "fraud"})
    first = services.start_rollout(candidate.model, candidate, actor="test", steps=[10, 50, 100])
    services.finish_retreat(services.abort(first, actor="test", reason="wrong version"))
    second = services.start_rollout(candidate.model, make_version(candidate.model, "approved"), actor="test")
    services.start_rollout(other, make_version(other, "approved"), actor="test")
    viewer = issue_token("reader", Role.VIEWER)
    with gunicorn_server() as (base_url, _):
        resnet = _mlcp(base_url, viewer, "rollout", "list", "--model", "resnet")
        aborted = _mlcp(base_url, viewer, "rollout", "list", "--phase", "aborted")
        table = subprocess.run([sys.executable, "-m", "cli.main", "--url", base_url, "--token", viewer, "rollout",
                                "list", "--model", "resnet"], capture_output=True, text=True, timeout=120)
    assert [r["id"] for r in json.loads(resnet.stdout)["results"]] == [second.pk, first.pk]
    assert [r["id"] for r in json.loads(aborted.stdout)["results"]] == [first.pk]
    assert table.returncode == 0, table.stderr
    assert "stable v1 → canary v3" in table.stdout and "step 1/4 (10%)" in table.stdout


def test_status_watch_without_a_terminal_logs_a_line_per_change_until_the_rollout_ends(candidate):
    rollout = services.start_rollout(candidate.model, candidate, actor="test", steps=[10, 50, 100])
    viewer = issue_token("reader", Role.VIEWER)
    with gunicorn_server() as (base_url, _):
        # stdout is a pipe, as in a CI log: no live display, a line each time something changes.
        watch = subprocess.Popen([sys.executable, "-m", "cli.main", "--url", base_url, "--token", viewer, "rollout",
                                  "status", str(rollout.pk), "--watch", "--interval", "0.2"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = _lines_of(watch)
            assert "resnet stable v1 → canary v2: pending, step 1/3 (10%)" in next(lines)
            services.abort(rollout, actor="pager", reason="not tonight")
            assert "rolling back by pager from step 1/3 (10%): not tonight" in next(lines)
            services.finish_retreat(Rollout.objects.get(pk=rollout.pk))
            assert "aborted by pager at step 1/3 (10%): not tonight; all traffic is on stable v1" in next(lines)
            assert watch.wait(timeout=120) == 1  # it ended, and not well
        finally:
            watch.kill()
            watch.wait()


def _lines_of(process):
    """The process's stdout lines as they come; a bound for a hung CLI, not a speed requirement."""
    queue = Queue()
    threading.Thread(target=lambda: [queue.put(line) for line in process.stdout], daemon=True).start()
    while True:
        yield queue.get(timeout=120)
