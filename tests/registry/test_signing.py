"""Signatures: registry-made bundles verify with the standard CLI; client bundles need a trusted key."""

import hashlib
import subprocess
import sys
from pathlib import Path

import model_signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.models import ModelVersion
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db
MODEL_SIGNING_CLI = [sys.executable, "-m", "model_signing"]


def _keypair(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _ci_sign(data: bytes, private_key: Path, tmp_path: Path) -> bytes:
    """What a CI job does with the model_signing library before pushing."""
    model = tmp_path / "model.onnx"
    model.write_bytes(data)
    bundle = tmp_path / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).sign(model, bundle)
    return bundle.read_bytes()


def _download(client, number: int, tmp_path: Path) -> tuple[Path, Path, Path]:
    artifact = tmp_path / f"downloaded-{number}.onnx"
    artifact.write_bytes(b"".join(client.get(f"/api/v1/models/resnet/versions/{number}/artifact").streaming_content))
    bundle = tmp_path / f"downloaded-{number}.sig"
    bundle.write_bytes(b"".join(client.get(f"/api/v1/models/resnet/versions/{number}/signature").streaming_content))
    public = tmp_path / "registry.pub"
    public.write_text(client.get("/api/v1/signing-keys/").json()[0]["pem"])
    return artifact, bundle, public


def test_model_signing_cli_verifies_a_downloaded_artifact(ci, viewer, resnet, tmp_path):
    upload(ci, "resnet", tiny_onnx())
    artifact, bundle, public = _download(viewer, 1, tmp_path)
    result = subprocess.run([*MODEL_SIGNING_CLI, "verify", "key", "--signature", str(bundle), "--public_key",
                             str(public), str(artifact)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification succeeded" in result.stdout + result.stderr


def test_model_signing_cli_rejects_a_modified_artifact(ci, viewer, resnet, tmp_path):
    upload(ci, "resnet", tiny_onnx())
    artifact, bundle, public = _download(viewer, 1, tmp_path)
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    result = subprocess.run([*MODEL_SIGNING_CLI, "verify", "key", "--signature", str(bundle), "--public_key",
                             str(public), str(artifact)], capture_output=True, text=True)
    assert result.returncode != 0


def test_signing_keys_endpoint_lists_the_active_key_first(viewer):
    keys = viewer.get("/api/v1/signing-keys/").json()
    assert keys[0]["active"] is True
    assert keys[0]["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert keys[0]["key_id"] == hashlib.sha256(keys[0]["pem"].encode()).hexdigest()


def test_client_bundle_from_a_trusted_key_is_accepted_and_its_signer_recorded(ci, resnet, settings, tmp_path):
    private, public = _keypair(tmp_path, "ci-release-2026")
    settings.MLCP_TRUSTED_KEY_FILES = [str(public)]
    data = tiny_onnx()
    response = upload(ci, "resnet", data, bundle=_ci_sign(data, private, tmp_path))
    assert response.status_code == 201, response.json()
    assert response.json()["signature_source"] == "client"
    assert response.json()["signer"] == "ci-release-2026"


def test_rotated_keys_both_verify(ci, resnet, settings, tmp_path):
    old_private, old_public = _keypair(tmp_path, "ci-2025")
    new_private, new_public = _keypair(tmp_path, "ci-2026")
    settings.MLCP_TRUSTED_KEY_FILES = [str(old_public), str(new_public)]
    first, second = tiny_onnx(seed=1), tiny_onnx(seed=2)
    assert upload(ci, "resnet", first, bundle=_ci_sign(first, old_private, tmp_path)).json()["signer"] == "ci-2025"
    assert upload(ci, "resnet", second, bundle=_ci_sign(second, new_private, tmp_path)).json()["signer"] == "ci-2026"


def test_bundle_from_an_untrusted_key_is_refused_and_nothing_stored(ci, resnet, tmp_path, stored_files):
    private, _ = _keypair(tmp_path, "stranger")
    data = tiny_onnx()
    response = upload(ci, "resnet", data, bundle=_ci_sign(data, private, tmp_path))
    assert response.status_code == 409
    assert response.json()["code"] == "untrusted_signature"
    assert ModelVersion.objects.count() == 0
    assert stored_files() == []


def test_bundle_for_other_bytes_is_refused(ci, resnet, settings, tmp_path, stored_files):
    private, public = _keypair(tmp_path, "ci")
    settings.MLCP_TRUSTED_KEY_FILES = [str(public)]
    response = upload(ci, "resnet", tiny_onnx(seed=1), bundle=_ci_sign(tiny_onnx(seed=2), private, tmp_path))
    assert response.status_code == 409
    assert response.json()["code"] == "signature_mismatch"
    assert stored_files() == []


@pytest.mark.parametrize("bundle", [b"{not a bundle", b"[" * 100_000 + b"]" * 100_000, b"[1, 2]"],
                         ids=["not json", "nested past the recursion limit", "not an object"])
def test_garbage_bundle_is_a_clear_400(ci, resnet, stored_files, bundle):
    response = upload(ci, "resnet", tiny_onnx(), bundle=bundle)
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_signature"
    assert stored_files() == []


def test_mlcp_verify_command_checks_a_file_offline(ci, viewer, resnet, tmp_path):
    upload(ci, "resnet", tiny_onnx())
    artifact, bundle, public = _download(viewer, 1, tmp_path)
    ok = subprocess.run([sys.executable, "-m", "cli.main", "verify", str(artifact), str(bundle),
                         "--public-key", str(public)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    artifact.write_bytes(b"x" + artifact.read_bytes())
    bad = subprocess.run([sys.executable, "-m", "cli.main", "verify", str(artifact), str(bundle),
                          "--public-key", str(public)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "does not match" in bad.stderr
