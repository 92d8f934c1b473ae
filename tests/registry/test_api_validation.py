"""Registry writes check every field: a malformed value is a 400 naming the field, never a 500 or a stored row."""

import json

import pytest

from registry.models import AuditEvent, GoldenSet, ModelVersion, RegisteredModel
from tests.factories import golden_npz, tiny_onnx, upload

pytestmark = pytest.mark.django_db


def _invalid(response, field: str | None = None) -> dict:
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert body["code"] in ("invalid_input", "malformed_metadata"), body
    if field:
        assert field in body["fields"], body
    return body


# ------------------------------------------------------------------ models

def test_slo_of_the_wrong_type_is_a_400(ci):
    _invalid(ci.post("/api/v1/models/", {"name": "fraud", "slo": "abc"}, format="json"), "slo")
    assert not RegisteredModel.objects.filter(name="fraud").exists()


BAD_MODEL_FIELDS = [
    ("slo", ["availability", 0.999]),
    ("slo", {"availability": "high"}),
    ("slo", {"availability": True}),
    ("slo", {"availability": 1.5}),
    ("slo", {"latency_p95_ms": -1}),
    ("slo", {"latency_p95_ms": 10**12}),
    ("slo", {"latency_p95_ms": {"p95": 250}}),
    ("slo", {"availabilty": 0.99}),
    ("slo", None),
    ("class_labels", "cat,dog"),
    ("class_labels", [1, 2, 3]),
    ("class_labels", [["nested"]]),
    ("class_labels", ["x" * 300]),
    ("class_labels", ["c"] * 50_001),
    ("description", "d" * 10_001),
    ("owner", "o" * 129),
    ("task", "t" * 65),
    ("notification_webhook", "not a url"),
    ("notification_webhook", "ftp://hooks.example/x"),
    ("name", "Not_A_DNS_Label"),
    ("name", "n" * 64),
    ("name", ["resnet"]),
]


@pytest.mark.parametrize("field,value", BAD_MODEL_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_MODEL_FIELDS)])
def test_model_field_of_the_wrong_type_range_or_size_is_a_400(ci, field, value):
    body = {"name": "fraud", field: value}
    _invalid(ci.post("/api/v1/models/", body, format="json"), field)
    assert not RegisteredModel.objects.exists()


def test_a_well_formed_model_is_registered_as_sent(ci):
    sent = {"name": "fraud", "slo": {"availability": 0.995, "latency_p95_ms": 120}, "class_labels": ["ok", "fraud"],
            "notification_webhook": "https://hooks.example/x"}
    response = ci.post("/api/v1/models/", sent, format="json")
    assert response.status_code == 201, response.json()
    assert {k: response.json()[k] for k in sent} == sent


def test_updating_a_model_with_a_malformed_slo_is_a_400_and_changes_nothing(admin_client, resnet):
    _invalid(admin_client.patch("/api/v1/models/resnet/", {"slo": {"availability": "5 nines"}}, format="json"), "slo")
    resnet.refresh_from_db()
    assert resnet.slo == {"availability": 0.999, "latency_p95_ms": 250}


def test_a_json_list_where_an_object_belongs_is_a_400(ci):
    _invalid(ci.post("/api/v1/models/", [{"name": "fraud"}], format="json"))


# ---------------------------------------------------------------- versions

BAD_UPLOAD_FIELDS = [
    ("tags", '["a", "b"]'),
    ("tags", '{"team": {"nested": "dict"}}'),
    ("tags", '{"team": ["a"]}'),
    ("tags", json.dumps({f"k{i}": "v" for i in range(65)})),
    ("tags", json.dumps({"k" * 129: "v"})),
    ("tags", json.dumps({"team": "v" * 1025})),
    ("tags", "[" * 50_000),
    ("tags", '{"a": NaN}'),
    ("tags", '{"a": 1e999}'),
    ("tags", '{"a": "\\ud800"}'),  # a lone surrogate: stored by SQLite, every listing of the version failed
    ("declared_signature", '{"inputs": ' + "[" * 950 + "]" * 950 + "}"),
    ("declared_signature", '"abc"'),
    ("declared_signature", '{"inputs": "pixels"}'),
    ("declared_signature", '{"inputs": [], "extra": []}'),
    ("declared_signature", '{"inputs": ["pixels"]}'),
    ("declared_signature", '{"inputs": [{"name": 7}]}'),
    ("declared_signature", '{"inputs": [{"name": "x", "shape": "1x3"}]}'),
    ("declared_signature", '{"inputs": [{"name": "x", "shape": [-1, 3]}]}'),
    ("declared_signature", '{"inputs": [{"name": "x", "shape": [1.5]}]}'),
    ("declared_signature", '{"inputs": [{"name": "x", "layout": "nchw"}]}'),
    ("declared_signature", json.dumps({"inputs": [{"name": "x", "shape": [1] * 33}]})),
    ("declared_signature", json.dumps({"inputs": [{"name": f"t{i}"} for i in range(1025)]})),
    ("parent", "2199023255552"),
    ("parent", "zero"),
    ("ci_run_url", "javascript:alert(1)"),
    ("ci_run_url", "http://["),  # urlsplit raises ValueError on it
    ("ci_run_url", "https://ci.example/" + "r" * 500),
    ("git_commit", "not-a-sha"),
    ("sha256", "abc"),
    ("format", "zip"),
    ("training_data_digest", "d" * 129),
]


@pytest.mark.parametrize("field,value", BAD_UPLOAD_FIELDS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_UPLOAD_FIELDS)])
def test_upload_field_of_the_wrong_type_range_or_size_is_a_400_and_stores_nothing(ci, resnet, stored_files,
                                                                                   field, value):
    _invalid(upload(ci, "resnet", tiny_onnx(), **{field: value}), field)
    assert not ModelVersion.objects.exists()
    assert not [f for f in stored_files() if f.startswith("sha256/")]


def test_upload_fields_in_the_metadata_part_are_checked_the_same_way(ci, resnet):
    _invalid(upload(ci, "resnet", tiny_onnx(), metadata=json.dumps({"tags": {"team": {"a": 1}}})), "tags")
    _invalid(upload(ci, "resnet", tiny_onnx(), metadata="[" * 50_000))
    assert not ModelVersion.objects.exists()


def test_a_full_declared_signature_is_accepted(ci, resnet):
    declared = {"inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [None, 3]}]}
    response = upload(ci, "resnet", tiny_onnx(), declared_signature=json.dumps(declared),
                      tags='{"team": "vision", "epoch": 12, "best": true}')
    assert response.status_code == 201, response.json()
    assert response.json()["graph_info"]["declared_signature"] == declared


@pytest.mark.parametrize("reason", ["r" * 2001, ["a list"], {"an": "object"}])
def test_approval_reason_of_the_wrong_type_or_size_is_a_400(approver, resnet, make_version, reason):
    version = make_version(resnet, "awaiting_approval")
    _invalid(approver.post(f"/api/v1/models/resnet/versions/{version.number}/approve", {"reason": reason},
                           format="json"), "reason")
    _invalid(approver.post(f"/api/v1/models/resnet/versions/{version.number}/reject", {"reason": reason},
                           format="json"), "reason")
    version.refresh_from_db()
    assert version.status == "awaiting_approval"


def test_tag_filter_treats_its_key_as_a_literal_key(viewer, ci, resnet):
    upload(ci, "resnet", tiny_onnx(seed=1), tags='{"arch": "resnet18", "a__b": "x"}')
    for query in ("contains=x", "a__b=x", "arch__in=resnet18"):
        response = viewer.get(f"/api/v1/models/resnet/versions/?tag={query}")
        assert response.status_code == 200, (query, response.content[:300])
    for malformed in ("=x", "arch"):  # no key, or no value: a clear 400, never a lookup
        assert viewer.get(f"/api/v1/models/resnet/versions/?tag={malformed}").json()["code"] == "invalid_input"
    assert viewer.get("/api/v1/models/resnet/versions/?tag=a__b=x").json()["count"] == 1
    assert viewer.get("/api/v1/models/resnet/versions/?tag=contains=x").json()["count"] == 0


# ----------------------------------------------------------------- aliases

@pytest.mark.parametrize("body", [{"version": "two"}, {"version": 2**40}, {"version": 0}, {}, ["version", 1],
                                  {"version": 1, "reason": "r" * 2001}])
def test_alias_move_of_the_wrong_shape_is_a_400(ci, resnet, make_version, body):
    make_version(resnet)
    _invalid(ci.put("/api/v1/models/resnet/aliases/staging", body, format="json"))
    assert not resnet.aliases.exists()


def test_alias_name_longer_than_a_dns_label_is_a_400(ci, resnet, make_version):
    version = make_version(resnet)
    _invalid(ci.put(f"/api/v1/models/resnet/aliases/{'a' * 64}", {"version": version.number}, format="json"),
             "alias")
    assert not resnet.aliases.exists()


# ------------------------------------------------------------- golden sets

def _golden(client, **fields):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/api/v1/models/resnet/golden-sets/",
                       {"golden_set": SimpleUploadedFile("g.npz", golden_npz()), **fields}, format="multipart")


@pytest.mark.parametrize("field,value", [("description", "d" * 10_001), ("make_default", "perhaps")])
def test_golden_set_field_of_the_wrong_type_or_size_is_a_400(ci, resnet, field, value):
    _invalid(_golden(ci, **{field: value}), field)
    assert not GoldenSet.objects.exists()


def test_golden_set_is_only_stored_unless_made_the_default(admin_client, resnet):
    assert _golden(admin_client).status_code == 201
    assert _golden(admin_client, make_default="true", reason="first set").status_code == 201
    resnet.refresh_from_db()
    assert resnet.default_golden_set.number == 2
    assert AuditEvent.objects.filter(action="golden_set.registered").count() == 2


@pytest.mark.parametrize("path", ["a%00b/", "a%00b/aliases/", "a%00b/alias-history", "resnet%00/gate-policy",
                                  "R%C3%A9sNet/", "a.b/"])
def test_a_model_name_no_model_can_have_is_a_404_not_a_database_error(admin_client, resnet, path, settings):
    # A NUL byte reached the model lookup, which PostgreSQL refuses outright: a 500 (found by
    # tests/controlplane/test_openapi_fuzz.py). Names outside [a-z0-9-] are no model's, on every route.
    settings.DEBUG = False
    for method in ("get", "put", "patch"):
        response = getattr(admin_client, method)(f"/api/v1/models/{path}", {}, format="json")
        assert response.status_code in (404, 405), (method, response.status_code, response.content[:300])
        assert response.json()["code"] in ("not_found", "method_not_allowed")


@pytest.mark.parametrize("fields", [{"tags": json.dumps({"key": "a\x00b"})}, {"tags": json.dumps({"k\x00": "v"})},
                                    {"metadata": json.dumps({"tags": {"key": "\x00"}})},
                                    {"declared_signature": json.dumps({"inputs": [
                                        {"name": "in\x00put", "dtype": "float32", "shape": ["batch", 4]}]})}])
def test_upload_json_holding_a_nul_character_is_a_400_and_stores_nothing(ci, resnet, stored_files, fields):
    # PostgreSQL's jsonb cannot store \u0000: such tags were a database error, a 500 (found by
    # tests/controlplane/test_openapi_fuzz.py on PostgreSQL).
    body = _invalid(upload(ci, "resnet", tiny_onnx(seed=5), **fields))
    assert "NUL" in body["detail"]
    assert not ModelVersion.objects.exists()
    assert not [f for f in stored_files() if f.startswith("sha256/")]


@pytest.mark.parametrize("method,path", [("post", "/api/v1/models/"), ("patch", "/api/v1/models/resnet/")])
def test_class_label_holding_a_nul_character_is_a_400(admin_client, resnet, method, path):
    body = {"name": "other", "class_labels": ["cat", "d\x00g"]}
    _invalid(getattr(admin_client, method)(path, body, format="json"), "class_labels")
    assert RegisteredModel.objects.get(name="resnet").class_labels == ["0", "1", "2"]
