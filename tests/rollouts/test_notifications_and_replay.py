"""Signed webhooks on rollout outcomes, and replaying an analysis at a past instant."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO

import pytest
from django.core.management import call_command

from registry.models import RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db
TRAFFIC = {"namespace": "ml", "deployment": "resnet-server", "replicas": 4}


@pytest.fixture
def webhook():
    """A receiving HTTP server on loopback; yields (url, list of (headers, body))."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _rolled_back(model, make_version):
    make_version(model, "deployed", production=True)
    services.start_rollout(model, make_version(model), actor="ci", traffic=TRAFFIC)
    rollout = services.rollback(model, reason="error spike", actor="oncall")
    return services.finish_retreat(rollout, evidence={"route": "all traffic to stable"})


def test_rollback_sends_a_signed_webhook(resnet, make_version, webhook, settings):
    settings.MLCP_WEBHOOK_SECRET = "s3cret"
    url, received = webhook
    resnet.notification_webhook = url
    resnet.save()
    rollout = _rolled_back(resnet, make_version)

    (headers, body), = received
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Mlcp-Signature"] == expected
    payload = json.loads(body)
    assert (payload["event"], payload["rollout"], payload["reason"]) == ("rollout.rolled_back", rollout.pk,
                                                                           "error spike")


def test_unreachable_webhook_never_blocks_the_rollback(resnet, make_version, caplog):
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    rollout = _rolled_back(resnet, make_version)
    assert rollout.phase == Phase.ROLLED_BACK
    assert "webhook" in caplog.text


def test_analyze_command_replays_the_checks_with_queries(prometheus, split_rollout, settings):
    settings.PROMETHEUS_URL = prometheus.url
    RegisteredModel.objects.create(name=split_rollout.model)
    at = split_rollout.start + timedelta(minutes=15)
    out = StringIO()
    call_command("analyze", split_rollout.model, "--at", at.isoformat(), "--canary-version", "2",
                 "--stable-version", "1", stdout=out)
    text = out.getvalue()
    assert text.splitlines()[0].startswith("resnet-split canary 2 vs stable 1") and "FAIL" in text.splitlines()[0]
    assert "latency_p95" in text and 'track="canary"' in text and "canary.requests" in text


def test_analysis_endpoint_returns_the_same_evidence_as_the_command(prometheus, split_rollout, settings, viewer):
    settings.PROMETHEUS_URL = prometheus.url
    RegisteredModel.objects.create(name=split_rollout.model)
    at = (split_rollout.start + timedelta(minutes=15)).isoformat()
    out = StringIO()
    call_command("analyze", split_rollout.model, "--at", at, "--canary-version", "2", "--stable-version", "1",
                 "--json", stdout=out)
    response = viewer.get(f"/api/v1/models/{split_rollout.model}/analysis",
                          {"at": at, "canary_version": 2, "stable_version": 1})
    assert response.status_code == 200
    assert response.json() == json.loads(out.getvalue())
    assert response.json()["verdict"] == "fail"


def test_analysis_endpoint_refuses_a_malformed_instant(resnet, viewer):
    response = viewer.get("/api/v1/models/resnet/analysis", {"at": "yesterday"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_time"
