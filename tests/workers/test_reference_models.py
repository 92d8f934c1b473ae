"""The reference models are real, trained, exportable classifiers."""

import io

import numpy as np
import onnxruntime as ort
import pytest

from devtools import reference_models

from .conftest import BROKEN_CLASS


@pytest.mark.parametrize("arch", reference_models.ARCHITECTURES)
def test_each_reference_architecture_trains_above_90_percent(reference, arch):
    assert reference[arch].accuracy > 0.90


@pytest.mark.parametrize("arch", reference_models.ARCHITECTURES)
def test_onnx_export_has_named_io_and_a_dynamic_batch(reference, golden, arch):
    session = ort.InferenceSession(reference[arch].onnx_bytes, providers=["CPUExecutionProvider"])
    (model_input,), (model_output,) = session.get_inputs(), session.get_outputs()
    assert (model_input.name, model_output.name) == ("input", "logits")
    for batch in (1, 7):
        logits = session.run(None, {"input": golden.inputs[:batch]})[0]
        assert logits.shape == (batch, 10)


def test_onnx_accuracy_matches_the_recorded_torch_accuracy(good_model, golden):
    session = ort.InferenceSession(good_model.onnx_bytes, providers=["CPUExecutionProvider"])
    predictions = session.run(None, {"input": golden.inputs})[0].argmax(axis=1)
    assert np.mean(predictions == golden.labels) == pytest.approx(good_model.accuracy, abs=1 / len(golden))


def test_regressed_model_collapses_one_class_but_barely_moves_overall_accuracy(good_model, regressed_model):
    recall_drop = good_model.class_recall[BROKEN_CLASS] - regressed_model.class_recall[BROKEN_CLASS]
    assert recall_drop > 0.2
    assert good_model.accuracy - regressed_model.accuracy < 0.05
    others = [k for k in range(10) if k != BROKEN_CLASS]
    assert all(regressed_model.class_recall[k] >= good_model.class_recall[k] for k in others)


def test_golden_set_is_the_held_out_split_and_loads_without_pickle(golden_npz):
    with np.load(io.BytesIO(golden_npz), allow_pickle=False) as archive:
        inputs, labels = archive["inputs"], archive["labels"]
        assert inputs.dtype == np.float32 and inputs.shape[1:] == (1, 8, 8)
        assert labels.dtype == np.int64 and len(labels) == len(inputs)
        assert 0.0 <= inputs.min() and inputs.max() <= 1.0
    assert len(labels) == pytest.approx(1797 * reference_models.GOLDEN_FRACTION, abs=1)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown reference architecture"):
        reference_models.build_reference_model("vgg")
