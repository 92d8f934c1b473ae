"""`mlcp models`, `mlcp approve` and `mlcp reject` against a real server."""

import json
import subprocess
import sys

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import AuditEvent, RegisteredModel
from tests.support.webserver import gunicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


def _mlcp(base_url, token, *args):
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "--url", base_url, "--token", token],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def server():
    with gunicorn_server() as (base_url, _):
        yield base_url


def test_models_lists_every_model_with_its_production_version(server, make_version):
    resnet = RegisteredModel.objects.create(name="resnet", owner="vision")
    make_version(resnet, "deployed", production=True)
    RegisteredModel.objects.create(name="fraud")
    viewer = issue_token("reader", Role.VIEWER)
    as_json = _mlcp(server, viewer, "models", "--json")
    as_text = _mlcp(server, viewer, "models")
    assert as_json.returncode == 0, as_json.stderr
    listing = json.loads(as_json.stdout)
    assert listing["count"] == 2
    assert [(m["name"], m["aliases"]) for m in listing["results"]] == [("fraud", {}), ("resnet", {"production": 1})]
    assert as_text.returncode == 0, as_text.stderr
    assert "resnet" in as_text.stdout and "v1" in as_text.stdout and "fraud" in as_text.stdout


def test_an_approver_approves_and_rejects_with_a_reason_kept_in_the_audit(server, make_version):
    model = RegisteredModel.objects.create(name="resnet")
    good, bad = make_version(model, "awaiting_approval"), make_version(model, "awaiting_approval")
    approver = issue_token("alice", Role.APPROVER)
    approved = _mlcp(server, approver, "approve", "resnet", str(good.number), "--reason", "recall holds", "--json")
    rejected = _mlcp(server, approver, "reject", "resnet", str(bad.number), "--reason", "class 3 regressed")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "approved"
    assert rejected.returncode == 0, rejected.stderr
    assert f"resnet:{bad.number} rejected: class 3 regressed" in rejected.stderr
    assert AuditEvent.objects.filter(version_number=bad.number, reason="class 3 regressed").exists()


def test_a_refused_decision_prints_the_servers_detail_and_code(server, make_version):
    version = make_version(RegisteredModel.objects.create(name="resnet"), "awaiting_approval")
    ci = issue_token("ci-bot", Role.CI)
    refused = _mlcp(server, ci, "approve", "resnet", str(version.number), "--reason", "looks fine")
    assert refused.returncode == 2
    assert "This action needs the 'approver' role. (permission_denied)" in refused.stderr
    version.refresh_from_db()
    assert version.status == "awaiting_approval"
