"""Rollout webhooks: signed per Standard Webhooks with their own secret, sent only to public addresses.

The receiver in these tests checks deliveries with the `standardwebhooks`
package, the public reference implementation, as a partner's server would.
Outcomes go through the outbox (tests/rollouts/test_outbox.py); `_rolled_back`
runs one sender pass, as the controller's sender thread would.
"""

import base64
import json
import socket
from datetime import datetime, timedelta

import pytest
import standardwebhooks.webhooks
from standardwebhooks import Webhook, WebhookVerificationError

from controlplane.checks import webhook_settings
from rollouts import services
from rollouts.choices import Delivery, Phase
from rollouts.models import Notification
from rollouts.outbox import Sender
from tests.factories import set_target
from tests.support.servers import free_port
from tests.support.webhooks import WebhookReceiver

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + base64.b64encode(b"partner-shared-secret-32-bytes!!").decode()
PUBLIC_ADDRESS = "93.184.216.34"


@pytest.fixture
def receiver():
    """A partner's HTTP server on loopback; yields (port, list of (headers, body)) of what it received."""
    server = WebhookReceiver().start()
    yield server.port, server.received
    server.stop()


@pytest.fixture
def signed(settings):
    settings.MLCP_WEBHOOK_SECRET = SECRET


@pytest.fixture
def loopback_allowed(settings):
    """The receiver is on loopback: these tests allow it, as an in-cluster deployment would allow its network."""
    settings.MLCP_WEBHOOK_ALLOW_PRIVATE = ["127.0.0.0/8"]


@pytest.fixture
def dns(monkeypatch):
    """Names under .test resolve to what the test says, as a DNS server an attacker controls would."""
    records = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in records:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (records[host], port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return records


def _rolled_back(model, make_version):
    set_target(model)
    make_version(model, "deployed", production=True)
    services.start_rollout(model, make_version(model), actor="ci")
    rollout = services.rollback(model, reason="error spike", actor="oncall")
    rollout = services.finish_retreat(rollout, evidence={"route": "all traffic to stable"})
    Sender().send_due()
    return rollout


# ---------------------------------------------------------------- signature

def test_a_receiver_verifies_the_signature_with_the_standard_webhooks_algorithm(
        resnet, make_version, receiver, signed, loopback_allowed):
    port, received = receiver
    resnet.notification_webhook = f"http://127.0.0.1:{port}/hook"
    resnet.save()
    rollout = _rolled_back(resnet, make_version)

    (headers, body), = received
    payload = Webhook(SECRET).verify(body, headers)
    assert (payload["event"], payload["rollout"], payload["reason"]) == ("rollout.rolled_back", rollout.pk,
                                                                           "error spike")
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-id"].startswith("msg_")


def test_a_tampered_body_fails_verification(resnet, make_version, receiver, signed, loopback_allowed):
    port, received = receiver
    resnet.notification_webhook = f"http://127.0.0.1:{port}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)

    (headers, body), = received
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(body.replace(b"error spike", b"all fine!!!"), headers)


def test_a_replay_older_than_the_tolerance_is_refused_by_the_verifier(
        resnet, make_version, receiver, signed, loopback_allowed, monkeypatch):
    port, received = receiver
    resnet.notification_webhook = f"http://127.0.0.1:{port}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)
    (headers, body), = received

    class SixMinutesLater(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(minutes=6)

    # The same request, byte for byte, sent again past the verifier's five-minute tolerance.
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", SixMinutesLater)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(body, headers)


def test_every_outcome_has_its_own_id(resnet, make_version, receiver, signed, loopback_allowed):
    port, received = receiver
    resnet.notification_webhook = f"http://127.0.0.1:{port}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)
    _rolled_back(resnet, make_version)
    assert len({headers["webhook-id"] for headers, _ in received}) == 2


# ---------------------------------------------------------------- the secret

def test_without_its_own_secret_no_webhook_is_sent_and_the_log_says_why(
        resnet, make_version, receiver, loopback_allowed, settings, caplog):
    settings.MLCP_WEBHOOK_SECRET = None
    settings.SECRET_KEY = "a-django-secret-key-that-receivers-must-never-need"
    port, received = receiver
    resnet.notification_webhook = f"http://127.0.0.1:{port}/hook"
    resnet.save()
    rollout = _rolled_back(resnet, make_version)

    assert rollout.phase == Phase.ROLLED_BACK
    assert received == []
    assert "MLCP_WEBHOOK_SECRET is not set" in caplog.text


def test_check_warns_when_a_model_has_a_webhook_and_no_secret(resnet, settings):
    settings.MLCP_WEBHOOK_SECRET = None
    assert webhook_settings(None) == []
    resnet.notification_webhook = f"https://{PUBLIC_ADDRESS}/hook"
    resnet.save()
    assert [problem.id for problem in webhook_settings(None)] == ["mlcp.W010"]


@pytest.mark.parametrize("secret", ["s3cret", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()])
def test_check_refuses_a_secret_that_is_not_a_standard_webhooks_secret(settings, secret):
    settings.MLCP_WEBHOOK_SECRET = secret
    assert [problem.id for problem in webhook_settings(None)] == ["mlcp.E011"]


# ---------------------------------------------------------------- where webhooks may go

REFUSED_URLS = [
    "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "http://127.0.0.1/",
    "http://localhost:8080/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://10.0.0.5/hook",
    "http://192.168.1.1/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_a_non_public_webhook_url_is_refused_at_configuration(admin_client, resnet, url):
    response = admin_client.patch("/api/v1/models/resnet/", {"notification_webhook": url}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "webhook_url_refused"
    resnet.refresh_from_db()
    assert resnet.notification_webhook == ""


def test_a_model_registered_with_a_metadata_webhook_is_refused(ci):
    response = ci.post("/api/v1/models/", {"name": "fraud",
                                           "notification_webhook": "http://169.254.169.254/latest/meta-data/"},
                       format="json")
    assert response.status_code == 400 and response.json()["code"] == "webhook_url_refused"


@pytest.mark.parametrize("url", ["http://a\ufffd.com/", "http://\u00ad\u200b.example/"])
def test_a_host_no_resolver_can_encode_is_refused_not_a_500(ci, url):
    # getaddrinfo raises UnicodeError (not gaierror) for a host the IDNA codec refuses.
    response = ci.post("/api/v1/models/", {"name": "fraud", "notification_webhook": url}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "webhook_url_refused", response.json()


def test_a_public_webhook_url_is_accepted(admin_client, resnet):
    url = f"https://{PUBLIC_ADDRESS}/hook"
    response = admin_client.patch("/api/v1/models/resnet/", {"notification_webhook": url}, format="json")
    assert response.status_code == 200 and response.json()["notification_webhook"] == url


def test_a_private_network_can_be_allowed_and_only_that_one(admin_client, resnet, settings):
    settings.MLCP_WEBHOOK_ALLOW_PRIVATE = ["10.20.0.0/16"]
    allowed = admin_client.patch("/api/v1/models/resnet/", {"notification_webhook": "http://10.20.3.4/hook"},
                                 format="json")
    assert allowed.status_code == 200
    refused = admin_client.patch("/api/v1/models/resnet/", {"notification_webhook": "http://10.21.3.4/hook"},
                                 format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "webhook_url_refused"


def test_a_host_name_that_resolves_to_a_private_address_is_refused_at_delivery(
        admin_client, resnet, make_version, receiver, signed, dns, caplog):
    port, received = receiver
    dns["hooks.partner.test"] = PUBLIC_ADDRESS
    response = admin_client.patch("/api/v1/models/resnet/",
                                  {"notification_webhook": f"http://hooks.partner.test:{port}/hook"}, format="json")
    assert response.status_code == 200
    dns["hooks.partner.test"] = "127.0.0.1"  # the name's owner repoints it after it was accepted

    rollout = _rolled_back(resnet, make_version)
    assert rollout.phase == Phase.ROLLED_BACK
    assert received == []
    assert "resolves to 127.0.0.1, which is not a public address" in caplog.text


def test_delivery_connects_to_the_address_it_checked_and_names_the_host(
        resnet, make_version, receiver, signed, loopback_allowed, dns):
    port, received = receiver
    dns["hooks.partner.test"] = "127.0.0.1"
    resnet.notification_webhook = f"http://hooks.partner.test:{port}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)

    (headers, body), = received
    assert headers["Host"] == f"hooks.partner.test:{port}"
    assert json.loads(body)["event"] == "rollout.rolled_back"


def test_an_unreachable_webhook_never_blocks_the_rollback(resnet, make_version, signed, loopback_allowed, caplog):
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    rollout = _rolled_back(resnet, make_version)
    assert rollout.phase == Phase.ROLLED_BACK
    notification = Notification.objects.get(rollout=rollout)
    assert notification.state == Delivery.RETRYING and "ConnectionRefusedError" in notification.last_error
    assert "ConnectionRefusedError" in caplog.text
