"""Registering a version: what is stored, what is read from the graph, and what a bad upload leaves."""

import hashlib
from pathlib import Path

import pytest

from registry.models import AuditEvent, Blob, ModelVersion
from tests.factories import (deeply_nested_input, onnx_with_external_weights, onnx_with_extra_graph_fields, tiny_onnx,
                             upload)

pytestmark = pytest.mark.django_db


def test_upload_creates_signed_version_with_signature_read_from_graph(ci, resnet, stored_files):
    data = tiny_onnx(inputs=4, classes=3)
    response = upload(ci, "resnet", data, git_commit="abc1234", tags='{"team": "vision"}')
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["number"] == 1
    assert body["status"] == "registered"
    assert body["digest"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["input_signature"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}]
    assert body["output_signature"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 3]}]
    assert body["signature_source"] == "registry"
    assert body["tags"] == {"team": "vision"}
    assert body["git_commit"] == "abc1234"
    assert stored_files() == [f"sha256/{body['digest'][:2]}/{body['digest']}"]


def test_client_declared_signature_is_kept_apart_from_the_graphs(ci, resnet):
    declared = '{"inputs": [{"name": "pixels"}], "outputs": [{"name": "logits"}]}'
    body = upload(ci, "resnet", tiny_onnx(), declared_signature=declared).json()
    assert body["input_signature"][0]["name"] == "input"
    assert body["graph_info"]["declared_signature"]["inputs"] == [{"name": "pixels"}]


def test_same_bytes_twice_are_stored_once_as_two_versions(ci, resnet, stored_files):
    data = tiny_onnx()
    first, second = upload(ci, "resnet", data).json(), upload(ci, "resnet", data).json()
    assert (first["number"], second["number"]) == (1, 2)
    assert first["digest"] == second["digest"]
    assert Blob.objects.count() == 1
    assert len(stored_files()) == 1


def test_digest_mismatch_stores_nothing(ci, resnet, stored_files):
    response = upload(ci, "resnet", tiny_onnx(), sha256="0" * 64)
    assert response.status_code == 409
    assert response.json()["code"] == "digest_mismatch"
    assert ModelVersion.objects.count() == 0
    assert Blob.objects.count() == 0
    assert stored_files() == []


def test_malformed_onnx_is_a_clear_400_and_stores_nothing(ci, resnet, stored_files):
    response = upload(ci, "resnet", b"this is not an onnx model at all")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_onnx"
    assert "ONNX" in response.json()["detail"]
    assert ModelVersion.objects.count() == 0
    assert stored_files() == []


def test_empty_artifact_is_refused(ci, resnet, stored_files):
    response = upload(ci, "resnet", b"")
    assert response.status_code == 400
    assert response.json()["code"] == "empty_artifact"
    assert stored_files() == []


def test_upload_over_the_size_limit_is_413_and_stores_nothing(ci, resnet, settings, stored_files):
    settings.MLCP_MAX_UPLOAD_BYTES = 100
    response = upload(ci, "resnet", tiny_onnx())
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert ModelVersion.objects.count() == 0
    assert stored_files() == []


def test_missing_artifact_part_is_a_clear_error(ci, resnet):
    response = ci.post("/api/v1/models/resnet/versions/", {"format": "onnx"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "missing_artifact"


def test_malformed_metadata_is_400_not_500(ci, resnet, stored_files):
    response = upload(ci, "resnet", tiny_onnx(), tags="{not json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert "tags" in response.json()["detail"]
    assert stored_files() == []


def test_upload_to_unknown_model_is_404_and_stores_nothing(ci, db, stored_files):
    response = upload(ci, "nope", tiny_onnx())
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert stored_files() == []


def test_pt2_must_be_a_torch_export_archive(ci, resnet, stored_files):
    response = upload(ci, "resnet", b"plain bytes", name="model.pt2", format="pt2")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_artifact"
    assert stored_files() == []


def test_registration_is_audited_with_actor_and_digest(ci, resnet):
    body = upload(ci, "resnet", tiny_onnx()).json()
    event = AuditEvent.objects.get(action="version.registered")
    assert event.actor == "ci-user"
    assert event.model_name == "resnet" and event.version_number == 1
    assert event.detail["digest"] == body["digest"]


def test_version_list_filters_by_status_and_tag(ci, resnet):
    upload(ci, "resnet", tiny_onnx(seed=1), tags='{"arch": "resnet18"}')
    upload(ci, "resnet", tiny_onnx(seed=2), tags='{"arch": "resnet50"}')
    found = ci.get("/api/v1/models/resnet/versions/", {"tag": "arch=resnet50"}).json()
    assert [v["number"] for v in found["results"]] == [2]
    assert ci.get("/api/v1/models/resnet/versions/", {"status": "approved"}).json()["count"] == 0


@pytest.mark.parametrize("location", ["data/signing/development-key.pem", "/etc/passwd", "../x", "weights.bin"],
                         ids=["inside-working-dir", "absolute", "parent-dir", "symlink-name"])
def test_onnx_with_external_data_is_refused_at_upload(ci, resnet, stored_files, tmp_path, monkeypatch, location):
    # The symlink case: a harmless-looking name that resolves to the signing key where the model is loaded.
    (tmp_path / "weights.bin").symlink_to(Path(__file__).resolve().parents[2] / "data/signing/development-key.pem")
    monkeypatch.chdir(tmp_path)
    response = upload(ci, "resnet", onnx_with_external_weights(location))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "external_data_refused"
    assert location in body["detail"]
    assert ModelVersion.objects.count() == 0
    assert Blob.objects.count() == 0
    assert stored_files() == []


def test_input_type_nested_5000_levels_deep_is_a_400_not_a_500(ci, resnet, stored_files):
    response = upload(ci, "resnet", onnx_with_extra_graph_fields(deeply_nested_input(5000)))
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_onnx"
    assert stored_files() == []


def test_huge_opset_domain_is_refused_with_its_limit(ci, resnet, stored_files):
    from onnx import load_from_string

    model = load_from_string(tiny_onnx())
    model.opset_import.add(domain="d" * 1_000_000, version=1)
    response = upload(ci, "resnet", model.SerializeToString())
    assert response.status_code == 400
    assert response.json()["code"] == "onnx_field_too_large"
    assert "65536 bytes" in response.json()["detail"]
    assert stored_files() == []
