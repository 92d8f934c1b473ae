"""The hot read endpoints cost a fixed number of database queries, whatever the rows hold.

Each count is pinned exactly, and measured on a small and a larger registry:
a query per version, alias or model shown (an N+1) fails here. Every request
carries a real API token, so the counts include authentication: the token with
its user (one query) and the user's roles (one query).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.roles import Role
from registry.models import RegisteredModel
from tests.factories import client_for, tiny_onnx, upload

pytestmark = pytest.mark.django_db

AUTHENTICATION = 2  # the token with its user, and the user's groups (roles)


def _queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, response.content
    return len(queries.captured_queries)


@pytest.fixture
def populate(admin_client):
    """`populate(name, versions)`: a model registered by `ci`, its versions uploaded (each after the first derived
    from the one before), an alias on each version, and a governed setting changed by an admin."""
    ci = client_for(Role.CI, "uploader")

    def make(name: str, versions: int) -> None:
        assert ci.post("/api/v1/models/", {"name": name}, format="json").status_code == 201
        for number in range(1, versions + 1):
            fields = {"parent": str(number - 1)} if number > 1 else {}
            assert upload(ci, name, tiny_onnx(seed=len(name) * 100 + number), **fields).status_code == 201
            assert ci.put(f"/api/v1/models/{name}/aliases/alias-{number}", {"version": number},
                          format="json").status_code == 200
        response = admin_client.put(f"/api/v1/models/{name}/gate-policy",
                                    {"gate_policy": {}, "reason": "pin the default"}, format="json")
        assert response.status_code == 200, response.content

    return make


@pytest.fixture
def reader(db):
    return client_for(Role.VIEWER, "reader")


def test_a_version_is_read_in_two_queries_with_its_parent_uploader_and_aliases(populate, reader):
    populate("small", 2)
    detail = reader.get("/api/v1/models/small/versions/2/").json()
    assert detail["parent"] == 1 and detail["created_by"] == "uploader" and detail["aliases"] == ["alias-2"]
    assert _queries(reader, "/api/v1/models/small/versions/2/") == AUTHENTICATION + 2


def test_listing_versions_costs_the_same_for_one_version_or_many(populate, reader):
    populate("small", 1)
    populate("large", 5)
    # The model (its 404), the count, the page with parents and uploaders joined, and every alias on the page.
    assert _queries(reader, "/api/v1/models/small/versions/") == AUTHENTICATION + 4
    assert _queries(reader, "/api/v1/models/large/versions/") == AUTHENTICATION + 4


def test_a_models_aliases_are_read_in_one_query(populate, reader):
    populate("small", 1)
    populate("large", 5)
    assert len(reader.get("/api/v1/models/large/aliases/").json()) == 5
    assert _queries(reader, "/api/v1/models/small/aliases/") == AUTHENTICATION + 1
    assert _queries(reader, "/api/v1/models/large/aliases/") == AUTHENTICATION + 1


def test_a_model_without_aliases_is_looked_up_as_its_detail_is_and_lists_none(reader):
    RegisteredModel.objects.create(name="bare")
    # No alias found: the model's own lookup (the model, its aliases prefetched) tells "none" from "no such model".
    assert _queries(reader, "/api/v1/models/bare/aliases/") == AUTHENTICATION + 3
    assert reader.get("/api/v1/models/bare/aliases/").json() == []
    assert reader.get("/api/v1/models/nothing/aliases/").status_code == 404


def test_a_model_is_read_with_its_people_and_aliases_in_two_queries(populate, reader):
    populate("large", 3)
    detail = reader.get("/api/v1/models/large/").json()
    assert detail["created_by"] == "uploader" and detail["gate_policy_changed_by"] == "admin-user"
    assert detail["aliases"] == {"alias-1": 1, "alias-2": 2, "alias-3": 3}
    assert _queries(reader, "/api/v1/models/large/") == AUTHENTICATION + 2


def test_listing_models_costs_the_same_for_one_model_or_many(populate, reader):
    populate("one", 1)
    alone = _queries(reader, "/api/v1/models/")
    for name in ("two", "three", "four"):
        populate(name, 2)
    # The count, the page with its people joined, and every alias on the page with its version.
    assert alone == AUTHENTICATION + 3
    assert _queries(reader, "/api/v1/models/") == AUTHENTICATION + 3
