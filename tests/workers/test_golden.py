"""The golden-set gate: no worse than production overall, and no class left behind."""

import io
import json

import numpy as np
import pytest
from scipy.stats import binom

from workers.gates import evaluate_golden_set, mcnemar_exact, parse_golden_set
from workers.gates.golden import (DENSE_CONFUSION_MAX_CLASSES, _scores_evidence, classifier_scores, confusions,
                                  expected_calibration_error)
from workers.gates.loading import GoldenSet
from workers.sandbox.protocol import _jsonable

from .conftest import BROKEN_CLASS


def test_regressed_model_fails_golden_set_naming_the_broken_class(good_model, regressed_model, golden, policy):
    # The point: overall accuracy alone would not catch it.
    assert good_model.accuracy - regressed_model.accuracy < 0.05

    outcome = evaluate_golden_set(
        regressed_model.onnx_bytes, golden, production_bytes=good_model.onnx_bytes, policy=policy
    )

    assert outcome.verdict == "fail"
    assert f"class {BROKEN_CLASS} 'three'" in outcome.summary
    (regressed,) = outcome.evidence["production"]["regressed_classes"]
    assert (regressed["index"], regressed["name"]) == (BROKEN_CLASS, "three")
    assert regressed["drop"] > policy["golden_set"]["max_class_recall_drop"]


def test_class_recall_drop_fails_even_when_overall_difference_is_not_significant(
    good_model, regressed_model, golden, policy
):
    policy["golden_set"].update(mcnemar_alpha=1e-12, min_class_recall=0.0)
    outcome = evaluate_golden_set(
        regressed_model.onnx_bytes, golden, production_bytes=good_model.onnx_bytes, policy=policy
    )
    assert not outcome.evidence["production"]["mcnemar"]["candidate_significantly_worse"]
    assert outcome.verdict == "fail"
    assert len(outcome.evidence["problems"]) == 1
    assert f"class {BROKEN_CLASS} 'three'" in outcome.summary


def test_regressed_model_is_significantly_worse_by_mcnemar(good_model, regressed_model, golden, policy):
    outcome = evaluate_golden_set(
        regressed_model.onnx_bytes, golden, production_bytes=good_model.onnx_bytes, policy=policy
    )
    test = outcome.evidence["production"]["mcnemar"]
    assert test["candidate_only_wrong"] > test["candidate_only_right"]
    assert test["p_value"] < policy["golden_set"]["mcnemar_alpha"]


def test_model_compared_with_itself_passes(good_model, golden, policy):
    outcome = evaluate_golden_set(good_model.onnx_bytes, golden, production_bytes=good_model.onnx_bytes, policy=policy)
    assert outcome.verdict == "pass", outcome.summary
    assert outcome.metrics["mcnemar_p_value"] == 1.0


def test_without_production_only_the_floors_apply_and_the_summary_says_so(good_model, golden, policy):
    outcome = evaluate_golden_set(good_model.onnx_bytes, golden, production_bytes=None, policy=policy)
    assert outcome.verdict == "pass"
    assert outcome.summary.startswith("No production version to compare with")
    assert "production" not in outcome.evidence


def test_without_production_a_class_under_the_recall_floor_fails(regressed_model, golden, policy):
    policy["golden_set"]["min_class_recall"] = 0.9
    outcome = evaluate_golden_set(regressed_model.onnx_bytes, golden, production_bytes=None, policy=policy)
    assert outcome.verdict == "fail"
    assert [c["index"] for c in outcome.evidence["floors"]["classes_below_floor"]] == [BROKEN_CLASS]


def test_evidence_holds_per_class_scores_and_a_confusion_matrix(good_model, golden, policy):
    evidence = evaluate_golden_set(good_model.onnx_bytes, golden, production_bytes=None, policy=policy).evidence
    confusion = np.array(evidence["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == len(golden)
    assert {(i, j): n for i, j, n in evidence["confusions"]} == {
        (i, j): int(confusion[i, j]) for i in range(10) for j in range(10) if i != j and confusion[i, j]}
    assert [c["support"] for c in evidence["per_class"]] == np.bincount(golden.labels, minlength=10).tolist()
    assert 0.0 <= evidence["expected_calibration_error"] <= 1.0


def test_the_mistakes_of_a_confusion_matrix_come_most_frequent_first():
    # true 0: 5 right, 2 taken for 2; true 1: 1 taken for 0, 4 right; true 2: 2 taken for 0, 1 for 1, 3 right.
    matrix = np.array([[5, 0, 2], [1, 4, 0], [2, 1, 3]])
    assert confusions(matrix) == [[0, 2, 2], [2, 0, 2], [1, 0, 1], [2, 1, 1]]
    assert confusions(np.eye(3, dtype=np.int64) * 7) == []


@pytest.mark.parametrize("classes, dense",
                         [(DENSE_CONFUSION_MAX_CLASSES, True), (DENSE_CONFUSION_MAX_CLASSES + 1, False)])
def test_the_whole_matrix_is_kept_up_to_the_classes_the_page_draws(classes, dense):
    labels = np.arange(classes)
    logits = np.eye(classes)[(labels + 1) % classes]  # every image taken for the next class
    golden = GoldenSet(inputs=np.zeros((classes, 1), np.float32), labels=labels,
                       class_names=tuple(str(i) for i in range(classes)))
    evidence = _scores_evidence(classifier_scores(logits, labels, classes, bins=10), golden)
    assert ("confusion_matrix" in evidence) is dense
    assert evidence["confusions"] == [[i, (i + 1) % classes, 1] for i in range(classes)]


def test_a_thousand_class_set_keeps_its_mistakes_and_per_class_support_not_a_million_cells():
    """The answer of a 1000-class gate was 3 MB, most of the sandbox's 4 MiB cap; now it grows with the images."""
    rng = np.random.default_rng(7)
    images, classes = 256, 1000
    labels = rng.integers(0, classes, size=images)
    logits = rng.normal(size=(images, classes))
    logits[np.arange(images), labels] += 2.5  # most right, some wrong
    golden = GoldenSet(inputs=np.zeros((images, 1), np.float32), labels=labels,
                       class_names=tuple(f"class {i}" for i in range(classes)))
    evidence = _scores_evidence(classifier_scores(logits, labels, classes, bins=10), golden)
    assert classes > DENSE_CONFUSION_MAX_CLASSES and "confusion_matrix" not in evidence
    wrong = int((logits.argmax(axis=1) != labels).sum())
    assert 0 < wrong < images and sum(n for _, _, n in evidence["confusions"]) == wrong
    assert sum(c["support"] for c in evidence["per_class"]) == images
    answer = json.dumps(evidence, default=_jsonable)
    assert len(answer) < 200_000, f"{len(answer)} bytes"


def test_golden_set_with_other_classes_than_the_model_is_an_error(good_model, golden, policy):
    buffer = io.BytesIO()
    np.savez(buffer, inputs=golden.inputs, labels=golden.labels % 2, class_names=np.array(["even", "odd"]))
    outcome = evaluate_golden_set(
        good_model.onnx_bytes, parse_golden_set(buffer.getvalue()), production_bytes=None, policy=policy
    )
    assert outcome.verdict == "error"
    assert "must output [540, 2]" in outcome.summary


def test_mcnemar_matches_worked_example():
    # 11 discordant images, 9 of them only the candidate got wrong.
    # P(X >= 9 | n=11, p=1/2) = (C(11,9) + C(11,10) + C(11,11)) / 2^11 = (55 + 11 + 1) / 2048,
    # doubled for the two-sided test: 134 / 2048.
    assert mcnemar_exact(9, 2) == pytest.approx(134 / 2048)
    assert mcnemar_exact(2, 9) == pytest.approx(134 / 2048)


def test_mcnemar_agrees_with_the_binomial_tail_and_caps_at_one():
    assert mcnemar_exact(30, 10) == pytest.approx(2 * binom.sf(29, 40, 0.5))
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


def test_expected_calibration_error_worked_example():
    # Bin (0.8, 0.9]: confidences 0.85 twice, one right -> |0.5 - 0.85| weighted 2/4.
    # Bin (0.9, 1.0]: confidences 0.95 twice, both right -> |1.0 - 0.95| weighted 2/4.
    confidences = np.array([0.85, 0.85, 0.95, 0.95])
    correct = np.array([True, False, True, True])
    assert expected_calibration_error(confidences, correct, bins=10) == pytest.approx(0.5 * 0.35 + 0.5 * 0.05)
