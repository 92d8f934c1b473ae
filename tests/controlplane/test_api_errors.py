"""Every error under /api/ is JSON `{"code", "detail"}` with a stable code; the web UI keeps its HTML pages."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from registry.models import RegisteredModel
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db


def _json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    return body


@pytest.fixture
def no_debug(settings):
    # Django's own handlers answer only with DEBUG off, as in production.
    settings.DEBUG = False


def test_unknown_api_path_is_a_json_404(viewer, no_debug):
    _json_error(viewer.get("/api/v1/no-such-thing/"), 404, "not_found")


def test_malformed_id_in_an_api_path_is_a_json_404(viewer, resnet, no_debug):
    _json_error(viewer.get("/api/v1/models/resnet/versions/not-a-number/"), 404, "not_found")


def test_unknown_api_path_is_a_json_404_even_without_credentials(db, no_debug):
    _json_error(Client().get("/api/nothing-here"), 404, "not_found")


def test_unknown_web_page_stays_an_html_404(db, no_debug):
    response = Client().get("/no-such-page/here/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_wrong_method_is_a_json_405(admin_client, resnet, no_debug):
    _json_error(admin_client.delete("/api/v1/models/resnet/"), 405, "method_not_allowed")
    _json_error(admin_client.post("/api/v1/signing-keys/", {}, format="json"), 405, "method_not_allowed")


def test_json_body_over_the_request_limit_is_a_json_413(ci, settings, no_debug):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    response = ci.post("/api/v1/models/", {"name": "big", "description": "x" * 5000}, format="json")
    body = _json_error(response, 413, "payload_too_large")
    assert body["context"]["limit"] == 2000
    assert not RegisteredModel.objects.filter(name="big").exists()


def test_form_fields_of_an_upload_over_the_request_limit_are_a_json_413(ci, resnet, settings, stored_files,
                                                                          no_debug):
    # Django raises RequestDataTooBig only when the multipart body is parsed, inside the view.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    response = upload(ci, "resnet", tiny_onnx(), metadata="{" + " " * 5000 + "}")
    _json_error(response, 413, "payload_too_large")
    assert not [f for f in stored_files() if f.startswith("sha256/")]


def test_upload_declared_over_the_upload_limit_is_a_json_413(ci, resnet, settings, no_debug):
    settings.MLCP_MAX_UPLOAD_BYTES = 1000
    response = upload(ci, "resnet", b"\0" * (1024 * 1024 + 2000))
    _json_error(response, 413, "payload_too_large")


def test_json_nested_deeper_than_the_parser_follows_is_a_400(ci, no_debug):
    response = ci.post("/api/v1/models/", "[" * 100_000, content_type="application/json")
    _json_error(response, 400, "malformed_request")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
def test_json_numbers_no_database_stores_are_a_400(ci, no_debug, number):
    body = '{"name": "fraud", "slo": {"availability": 0.999, "latency_p95_ms": %s}}' % number
    _json_error(ci.post("/api/v1/models/", body, content_type="application/json"), 400, "malformed_request")
    assert not RegisteredModel.objects.exists()


def test_a_lone_surrogate_in_a_json_body_is_a_400_and_stores_nothing(ci, no_debug):
    body = '{"name": "fraud", "task": "image-classification", "class_labels": ["\\ud800"]}'
    _json_error(ci.post("/api/v1/models/", body, content_type="application/json"), 400, "malformed_request")
    assert not RegisteredModel.objects.exists()


def test_malformed_json_is_a_400(ci, no_debug):
    _json_error(ci.post("/api/v1/models/", "{nope", content_type="application/json"), 400, "malformed_request")


def test_refused_host_header_is_a_json_400(viewer, no_debug):
    _json_error(viewer.get("/api/v1/models/", HTTP_HOST="evil.example"), 400, "bad_request")


def test_unexpected_error_is_a_json_500_without_the_traceback(viewer, monkeypatch, no_debug):
    def broken():
        raise RuntimeError("secret internals at /srv/mlcp/keys")

    monkeypatch.setattr("registry.signing.trusted_keys", broken)
    viewer.raise_request_exception = False
    body = _json_error(viewer.get("/api/v1/signing-keys/"), 500, "internal_error")
    assert "secret" not in str(body) and "Traceback" not in str(body) and "RuntimeError" not in str(body)


def test_unexpected_error_in_the_web_ui_stays_an_html_500(viewer, monkeypatch, no_debug):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr("registry.ui.pages.models_overview", broken)
    browser = Client(raise_request_exception=False)
    browser.force_login(get_user_model().objects.get(username="viewer-user"))
    response = browser.get("/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_forbidden_actions_answer_the_permission_denied_code(ci, resnet, make_version, no_debug):
    version = make_version(resnet)
    response = ci.put("/api/v1/models/resnet/aliases/production", {"version": version.number}, format="json")
    _json_error(response, 403, "permission_denied")


def test_multipart_upload_under_the_limits_still_goes_through(ci, resnet, settings, no_debug):
    # The body limit is for bodies parsed in memory; artifacts stream to disk.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    response = ci.post("/api/v1/models/resnet/versions/",
                       {"artifact": SimpleUploadedFile("m.onnx", tiny_onnx(), "application/octet-stream")},
                       format="multipart")
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("role,path", [("ci", "/api/v1/models/"),
                                       ("approver", "/api/v1/models/resnet/versions/1/approve")])
def test_file_part_sent_to_an_endpoint_that_takes_none_leaves_nothing_in_staging(request, resnet, make_version,
                                                                                 stored_files, role, path):
    make_version(resnet, "awaiting_approval")
    blobs_before = stored_files()
    response = request.getfixturevalue(role).post(
        path, {"name": "other", "reason": "ok", "junk": SimpleUploadedFile("junk.bin", b"\1" * 100_000)},
        format="multipart")
    assert response.status_code in (200, 201), response.json()
    assert stored_files() == blobs_before


def test_the_schema_documents_the_error_body_of_every_operation(viewer):
    """Clients generated from /api/schema/ know each endpoint's 4xx and read them as `{"code", "detail", ...}`."""
    from controlplane.api import COMMON_ERRORS

    schema = viewer.get("/api/schema/?format=json").json()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "detail"]
    assert set(error["properties"]) == {"code", "detail", "context", "fields"}
    operations = [(path, method, op) for path, item in schema["paths"].items()
                  for method, op in item.items() if isinstance(op, dict) and "responses" in op]
    assert len(operations) > 30
    for path, method, op in operations:
        for status in COMMON_ERRORS:
            body = op["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema")
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_error_bodies_the_api_answers_match_the_documented_schema(viewer, ci, resnet, no_debug):
    import jsonschema

    from controlplane.api import ERROR_SCHEMA

    bodies = [viewer.get("/api/v1/models/nope/").json(),  # not_found
              Client().get("/api/v1/models/").json(),  # not_authenticated
              viewer.post("/api/v1/models/", {"name": "x"}, format="json").json(),  # permission_denied
              ci.post("/api/v1/models/", {"name": "Not A Name!"}, format="json").json(),  # invalid_input + fields
              ci.post("/api/v1/models/", [1, 2], format="json").json(),  # invalid_input, a list body
              ci.put("/api/v1/models/resnet/aliases/production", {"version": 1}, format="json").json(),
              viewer.get("/api/v1/no-such-thing/").json()]  # Django's handler404
    for body in bodies:
        jsonschema.validate(body, ERROR_SCHEMA)
