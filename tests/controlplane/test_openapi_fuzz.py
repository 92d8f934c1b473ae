"""The API against its own OpenAPI schema, fuzzed per role: no 5xx, and every answer is what the schema says.

Schemathesis generates requests from the schema the server serves (/api/schema/); each one is sent
in-process (WSGI) by every role and by a client without a token, and its response is checked: not a
server error, a documented status code and content type, and a body that validates against the schema
of that status (the common error body for 4xx).

Bounded and deterministic: hypothesis is derandomized (the same cases on every run), without a
database of examples or shrinking, with 2 x EXAMPLES cases per operation and role drawn from valid
(positive) and invalid (negative) requests alike; about half the cases of an operation with path
parameters use those of the rows seeded below, so endpoints are reached past their 404. Each case
runs in a savepoint rolled back after it, so every case sees the same rows. Nothing leaves the
process: webhook host names do not resolve and Prometheus answers "no data". 36 operations x 6
roles x 20 cases take about 3 minutes on 2 cores.

The upload endpoints (`POST .../versions/`, `POST .../golden-sets/`) are fuzzed like the rest, with
the small multipart bodies schemathesis generates (a few bytes of `artifact`/`golden_set`, or none).
"""

from __future__ import annotations

import collections
import json
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, seed, settings as hsettings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from controlplane.roles import Role
from controlplane.wsgi import application
from tests.factories import set_target

# Half the cases per operation and role. A longer hunt: MLCP_FUZZ_EXAMPLES=150 MLCP_FUZZ_SEED=7 (seeded, not
# derandomized); MLCP_FUZZ_REPORT=stats.json writes the statuses seen.
EXAMPLES = int(os.environ.get("MLCP_FUZZ_EXAMPLES", 10))
SEED = os.environ.get("MLCP_FUZZ_SEED")
ROLES = [None, *Role]  # None: no token
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]

SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}

# (operation, role, status) -> responses; written as JSON to $MLCP_FUZZ_REPORT, when set, after the module's tests.
STATUSES: collections.Counter = collections.Counter()

# Path parameters of the rows `world` seeds; the rollout's and the audit event's ids are filled in there.
EXISTING = {"name": "resnet", "model_name": "resnet", "number": "1", "alias": "candidate"}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if os.environ.get("MLCP_FUZZ_REPORT"):
        rows = [{"operation": op, "role": role, "status": status, "responses": n}
                for (op, role, status), n in sorted(STATUSES.items())]
        with open(os.environ["MLCP_FUZZ_REPORT"], "w") as fh:
            json.dump(rows, fh, indent=1)


@pytest.fixture
def world(db, monkeypatch, make_version):
    """A model with a rollout target, two versions (one approved, with an alias), a golden set and a rollout."""
    from registry import services
    from registry.models import AuditEvent, RegisteredModel
    from registry.storage import default_store
    from rollouts import services as rollouts
    from tests.factories import golden_npz

    model = set_target(RegisteredModel.objects.create(name="resnet", class_labels=["0", "1", "2"]))
    approved = make_version(model, "approved")
    services.move_alias(model, "candidate", approved, actor="test", reason="seed")
    make_version(model, "awaiting_approval")
    staged = default_store().stage()
    staged.write(golden_npz())
    services.register_golden_set(model, staged, actor="test", make_default=True)
    rollout = rollouts.start_rollout(model, approved, actor="test")
    ids = {"id": str(rollout.pk), "audit_id": str(AuditEvent.objects.order_by("pk").first().pk)}

    # In-process, as Django's test client does: a request must not close the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    # Nothing leaves the machine: webhook hosts do not resolve, Prometheus has no data.
    import socket

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no DNS in the fuzz test")

    monkeypatch.setattr("rollouts.notifications.socket.getaddrinfo", no_dns)
    monkeypatch.setattr("rollouts.metrics.PrometheusMetricsProvider._query", lambda self, *args: None)
    yield ids
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _token(role: Role | None) -> dict:
    if role is None:
        return {}
    from controlplane.accounts import issue_token

    return {"Authorization": f"Token {issue_token(f'fuzz-{role.value}', role)}"}


def _existing(operation, ids: dict) -> dict:
    names = {p.name for p in operation.path_parameters}
    known = dict(EXISTING, id=ids["audit_id"] if "/audit/" in operation.path else ids["id"])
    return {name: known[name] for name in names if name in known}


def _cases(operation, ids: dict):
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        existing = _existing(operation, ids)
        if existing:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=existing))
    return st.one_of(strategies)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value if r else "anonymous")
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_conforms_to_its_schema(label, role, world):
    operation = OPERATIONS[label]
    headers = _token(role)

    @seed(int(SEED or 0))
    @hsettings(max_examples=EXAMPLES * 2, derandomize=SEED is None, deadline=None, database=None,
               suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate], print_blob=False)
    @given(case=_cases(operation, world))
    def fuzz(case):
        # Each case starts from the seeded rows: one that renames or deletes them must not blind the next.
        with transaction.atomic():
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            transaction.set_rollback(True)
        STATUSES[label, role.value if role else "anonymous", response.status_code] += 1

    fuzz()
    assert sum(n for (op, who, _), n in STATUSES.items() if op == label and who == (role or "anonymous"))
