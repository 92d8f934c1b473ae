"""`versions/?tag=KEY=VALUE` matches one exact key and value; the key never becomes an ORM lookup."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db

VERSIONS = "/api/v1/models/resnet/versions/"


@pytest.fixture
def tagged(ci, resnet):
    response = upload(ci, "resnet", tiny_onnx(seed=1), tags='{"k": "aaaa", "team": "vision", "a__b": "x"}')
    assert response.status_code == 201, response.json()


def _listing_sql(queries) -> str:
    return "\n".join(q["sql"] for q in queries if "registry_modelversion" in q["sql"])


def test_a_regex_lookup_in_the_key_is_a_plain_key_that_matches_nothing(viewer, tagged):
    with CaptureQueriesContext(connection) as queries:
        response = viewer.get(VERSIONS, {"tag": "k__regex=^(a+)+$"})
    assert response.status_code == 200
    assert response.json()["count"] == 0  # as a lookup, tags__k__regex would have matched "aaaa"
    sql = _listing_sql(queries.captured_queries)
    assert "REGEXP" not in sql.upper() and " ~ " not in sql  # SQLite's and PostgreSQL's regex operators
    assert "k__regex" in sql  # one JSON key, spelt as given


def test_a_contains_lookup_in_the_key_is_a_plain_key_not_a_500(viewer, tagged):
    response = viewer.get(VERSIONS, {"tag": "x__contains=1"})
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_a_key_with_double_underscores_matches_itself(viewer, tagged):
    assert viewer.get(VERSIONS, {"tag": "a__b=x"}).json()["count"] == 1


def test_tags_match_the_exact_value_only(viewer, tagged):
    assert viewer.get(VERSIONS, {"tag": "team=vision"}).json()["count"] == 1
    for near_miss in ("team=visio", "team=Vision", "team=vision2", "team="):
        assert viewer.get(VERSIONS, {"tag": near_miss}).json()["count"] == 0, near_miss


@pytest.mark.parametrize("query", ["=x", "team", "a b=x", "k\n=v", "ключ=v", "k" * 129 + "=v",
                                   "team=" + "v" * 1025])
def test_a_malformed_tag_filter_is_a_400(viewer, tagged, query):
    response = viewer.get(VERSIONS, {"tag": query})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
