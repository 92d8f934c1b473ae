"""A download is named from a sanitized upload name, per RFC 6266: no filename can smuggle in header parameters."""

import re
from urllib.parse import unquote

import pytest

from registry.models import ModelVersion
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db
EVIL = "a\"; filename*=UTF-8''pwn.exe; x=\".onnx"
# All a download's Content-Disposition may be: one ASCII quoted filename, one RFC 5987 filename*.
DISPOSITION = re.compile(r"attachment; filename=\"([A-Za-z0-9._+ -]+)\"; filename\*=UTF-8''([A-Za-z0-9%._~-]+)")


def _disposition(header: str) -> tuple[str, str]:
    """(the ASCII fallback, the name browsers use: filename*, decoded); fails on any other shape."""
    match = DISPOSITION.fullmatch(header)
    assert match, header
    return match[1], unquote(match[2])


def _upload_named(client, filename_param: str, data: bytes):
    """A multipart upload whose part header carries `filename="<filename_param>"` byte for byte.

    Django's test client would write the name unescaped, which makes a
    different header; curl sends the quotes backslash-escaped, and Django
    reads such a name back literally.
    """
    boundary = "mlcp-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; filename="{filename_param}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/api/v1/models/resnet/versions/", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def test_upload_name_that_injects_a_filename_parameter_is_stored_sanitized(ci, resnet):
    response = _upload_named(ci, EVIL.replace('"', '\\"'), tiny_onnx())
    assert response.status_code == 201, response.json()
    stored = response.json()["artifact_name"]
    assert stored == "a filename*=UTF-8''pwn.exe x=.onnx"  # quotes and ; dropped, the rest kept


def test_download_of_an_injecting_name_has_one_filename_that_keeps_its_extension(ci, viewer, resnet):
    _upload_named(ci, EVIL.replace('"', '\\"'), tiny_onnx())
    for path, extension in (("artifact", ".onnx"), ("signature", ".onnx.sig")):
        ascii_name, chosen = _disposition(viewer.get(f"/api/v1/models/resnet/versions/1/{path}")["Content-Disposition"])
        assert chosen.endswith(extension) and ascii_name.endswith(extension)
        assert "pwn.exe" not in (ascii_name, chosen)


def test_download_of_a_name_stored_before_sanitizing_is_still_safe(viewer, resnet, make_version):
    version = make_version(resnet)
    ModelVersion.objects.filter(pk=version.pk).update(artifact_name="x\r\nSet-Cookie: a=b; " + EVIL)
    ascii_name, chosen = _disposition(
        viewer.get(f"/api/v1/models/resnet/versions/{version.number}/artifact")["Content-Disposition"])
    assert chosen.endswith(".onnx") and ascii_name.endswith(".onnx")


def test_upload_name_with_path_parts_keeps_only_the_last(ci, resnet):
    assert upload(ci, "resnet", tiny_onnx(), name="..\\..\\C:\\models\\resnet.onnx").json()["artifact_name"] \
        == "resnet.onnx"


def test_non_ascii_name_has_an_ascii_fallback_and_the_exact_utf8_name(ci, viewer, resnet):
    upload(ci, "resnet", tiny_onnx(), name="modèle-模型.onnx")
    ascii_name, chosen = _disposition(viewer.get("/api/v1/models/resnet/versions/1/artifact")["Content-Disposition"])
    assert ascii_name == "modele-.onnx"
    assert chosen == "modèle-模型.onnx"
