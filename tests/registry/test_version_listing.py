"""A version listing stays small whatever the graphs declare; one version's endpoint shows all of it."""

import pytest

from registry.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def bloated(resnet, make_version):
    """A version whose graph declares a 1 MB opset domain and 500 inputs with 1 KB names and rank 100."""
    version = make_version(resnet)
    inputs = [{"name": f"{i}-" + "n" * 1024, "dtype": "float32", "shape": ["d" * 1024] * 100} for i in range(500)]
    ModelVersion.objects.filter(pk=version.pk).update(
        input_signature=inputs,
        graph_info={"ir_version": 9, "opsets": {"ai.onnx": 17, "x" * 1024 * 1024: 1},
                    "declared_signature": {"inputs": inputs}})
    return version


def test_version_listing_returns_bounded_signature_summaries(viewer, bloated):
    response = viewer.get("/api/v1/models/resnet/versions/")
    assert response.status_code == 200
    assert len(response.content) < 32 * 1024
    listed = response.json()["results"][0]
    assert listed["truncated"] is True
    assert len(listed["input_signature"]) == 16
    assert len(listed["input_signature"][0]["name"]) <= 128
    assert len(listed["input_signature"][0]["shape"]) <= 8
    assert listed["graph_info"]["ir_version"] == 9
    assert listed["graph_info"]["opsets"]["ai.onnx"] == 17
    assert all(len(domain) <= 128 for domain in listed["graph_info"]["opsets"])
    assert "declared_signature" not in listed["graph_info"]
    assert listed["links"]["self"] == f"/api/v1/models/resnet/versions/{bloated.number}/"


def test_single_version_endpoint_returns_the_full_detail(viewer, bloated):
    detail = viewer.get(f"/api/v1/models/resnet/versions/{bloated.number}/").json()
    assert len(detail["input_signature"]) == 500
    assert "x" * 1024 * 1024 in detail["graph_info"]["opsets"]
    assert "truncated" not in detail


def test_listing_of_an_ordinary_version_is_not_marked_truncated(viewer, resnet, make_version):
    version = make_version(resnet)
    listed = viewer.get("/api/v1/models/resnet/versions/").json()["results"][0]
    assert listed["truncated"] is False
    assert listed["input_signature"] == version.input_signature
    assert listed["graph_info"]["opsets"] == version.graph_info["opsets"]
