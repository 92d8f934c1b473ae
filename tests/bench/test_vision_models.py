"""The benchmark's real-size architectures are the published ones: same parameter counts, ImageNet-shaped output."""

import pytest
import torch

from bench import vision_models


@pytest.mark.parametrize("name", sorted(vision_models.ARCHITECTURES))
def test_architecture_has_its_published_parameter_count(name):
    _, published = vision_models.ARCHITECTURES[name]
    assert vision_models.parameter_count(vision_models.build(name)) == published


@pytest.mark.parametrize("name", sorted(vision_models.ARCHITECTURES))
def test_architecture_outputs_one_logit_per_imagenet_class(name):
    # A small image keeps this fast; every architecture ends in global average pooling, so any size >= 32 works.
    with torch.no_grad():
        logits = vision_models.build(name)(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, vision_models.NUM_CLASSES)


def test_batch_norm_calibration_keeps_logits_finite_and_spread():
    model = vision_models.build("mobilenetv2")
    images = torch.randn(4, 3, 64, 64)
    vision_models.calibrate_batch_norm(model, images)
    with torch.no_grad():
        logits = model(images)
    assert not model.training
    assert torch.isfinite(logits).all()
    assert logits.std() > 0
