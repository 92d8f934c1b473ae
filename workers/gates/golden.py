"""The golden-set gate: is the candidate at least as good as production on labelled data?

Scores a classifier on a fixed labelled set (accuracy, per-class precision and
recall, confusion matrix, calibration) and compares it with the production
version on the same images: McNemar's exact test overall, and a recall limit
per class so a regression in one class cannot hide inside the average.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from controlplane.errors import InvalidInput
from workers.gates.loading import GoldenSet, LoadedModel, open_session, predict_logits
from workers.gates.outcome import GateOutcome

GATE = "golden_set"
# Up to this many classes the evidence holds the whole confusion matrix (the UI draws it); past it, only the
# mistakes (`confusions`): a 1000-class matrix is a million numbers, 3 MB of answer for at most one non-zero
# cell per image, and past about 1,150 classes it overflowed the sandbox's 4 MiB answer and the gate errored.
DENSE_CONFUSION_MAX_CLASSES = 40


@dataclasses.dataclass
class ClassifierScores:
    """What one model predicted on the golden set, and the numbers that follow from it."""

    predictions: np.ndarray
    confidences: np.ndarray
    accuracy: float
    precision: list[float | None]
    recall: list[float | None]
    confusion: np.ndarray
    ece: float


def evaluate_golden_set(
    model_bytes: bytes, golden: GoldenSet, *, production_bytes: bytes | None, policy: dict
) -> GateOutcome:
    """Score the candidate on the golden set and compare it with production when there is one.

    Fails when McNemar's exact test says the candidate is significantly worse
    than production, when any class loses more recall than its limit against
    production, or when accuracy or a class's recall is under the policy's
    absolute floors (the only check when no production version exists).
    The evidence names every offending class by index and name.
    """
    settings = policy["golden_set"]
    started = time.perf_counter()
    try:
        candidate, device, timings = _score_model(model_bytes, golden, settings)
        production = _score_model(production_bytes, golden, settings)[0] if production_bytes else None
    except InvalidInput as exc:
        return GateOutcome.error(GATE, exc.detail, code=exc.code)
    except Exception as exc:  # onnxruntime raises its own types at run time
        return GateOutcome.error(
            GATE, f"The model failed on the golden set: {str(exc).splitlines()[0]}.", code="run_failed"
        )
    timings["total_s"] = time.perf_counter() - started
    return _judge(candidate, production, golden, settings, device, timings)


def infer_golden_logits(model: LoadedModel, golden: GoldenSet, *, batch_size: int) -> np.ndarray:
    """The model's logits for every golden input, checked to be one score per class."""
    logits = predict_logits(model, golden.inputs, batch_size=batch_size)
    expected = (len(golden), len(golden.class_names))
    if logits.shape != expected:
        raise InvalidInput(
            f"The model outputs shape {list(logits.shape)} for the golden set; a classifier of its "
            f"{expected[1]} classes must output {list(expected)}.",
            code="output_mismatch",
        )
    return logits


def mcnemar_exact(candidate_only_wrong: int, candidate_only_right: int) -> float:
    """Two-sided p-value of McNemar's exact test from the discordant pair counts.

    Under "both models are equally good", each image that exactly one model got
    right is equally likely to favour either, so the count favouring production
    is Binomial(n, 1/2) with n the number of such images.
    """
    discordant = candidate_only_wrong + candidate_only_right
    if discordant == 0:
        return 1.0
    # Imported here: scipy.stats takes ~2 s to import, paid by every sandboxed gate otherwise.
    from scipy.stats import binomtest

    return float(binomtest(candidate_only_wrong, discordant, 0.5, alternative="two-sided").pvalue)


def classifier_scores(logits: np.ndarray, labels: np.ndarray, num_classes: int, *, bins: int) -> ClassifierScores:
    """Accuracy, per-class precision and recall (None where undefined), confusion matrix and ECE."""
    probabilities = _softmax(logits)
    predictions = probabilities.argmax(axis=1)
    confidences = probabilities.max(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    hits = np.diag(confusion)
    return ClassifierScores(
        predictions=predictions,
        confidences=confidences,
        accuracy=float(hits.sum() / len(labels)),
        precision=_ratios(hits, confusion.sum(axis=0)),
        recall=_ratios(hits, confusion.sum(axis=1)),
        confusion=confusion,
        ece=expected_calibration_error(confidences, predictions == labels, bins=bins),
    )


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, *, bins: int) -> float:
    """ECE over equal-width confidence bins: the support-weighted gap between confidence and accuracy."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = which == index
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidences[members].mean())
    return float(error)


def _score_model(model_bytes: bytes, golden: GoldenSet, settings: dict) -> tuple[ClassifierScores, str, dict]:
    model = open_session(model_bytes)
    started = time.perf_counter()
    logits = infer_golden_logits(model, golden, batch_size=model.batch_size_for(settings["batch_size"]))
    timings = {"load_s": model.load_seconds, "inference_s": time.perf_counter() - started}
    scores = classifier_scores(logits, golden.labels, len(golden.class_names), bins=settings["calibration_bins"])
    return scores, model.device, timings


def _judge(candidate, production, golden, settings, device, timings) -> GateOutcome:
    evidence = _scores_evidence(candidate, golden)
    metrics = {"accuracy": candidate.accuracy, "ece": candidate.ece}
    problems = []
    if production is not None:
        comparison = _compare_with_production(candidate, production, golden, settings)
        evidence["production"] = comparison
        metrics.update(
            production_accuracy=production.accuracy,
            accuracy_delta=candidate.accuracy - production.accuracy,
            mcnemar_p_value=comparison["mcnemar"]["p_value"],
        )
        problems += _production_problems(comparison, candidate, production, settings)
    floors = _floor_check(candidate, golden, settings)
    evidence["floors"] = floors
    problems += _floor_problems(floors, candidate, settings)
    evidence["problems"] = problems
    verdict = "fail" if problems else "pass"
    summary = _summary(problems, candidate, production, golden, settings)
    return GateOutcome(GATE, verdict, summary, metrics=metrics, evidence=evidence, device=device, timings=timings)


def _compare_with_production(candidate, production, golden, settings) -> dict:
    candidate_right = candidate.predictions == golden.labels
    production_right = production.predictions == golden.labels
    only_wrong = int(np.sum(~candidate_right & production_right))
    only_right = int(np.sum(candidate_right & ~production_right))
    p_value = mcnemar_exact(only_wrong, only_right)
    regressed = []
    for index, name in enumerate(golden.class_names):
        limit = settings["class_recall_drop_overrides"].get(name, settings["max_class_recall_drop"])
        before, after = production.recall[index], candidate.recall[index]
        if before is not None and after is not None and before - after > limit:
            regressed.append(
                {
                    "index": index,
                    "name": name,
                    "recall": after,
                    "production_recall": before,
                    "drop": before - after,
                    "limit": limit,
                }
            )
    return {
        "accuracy": production.accuracy,
        "recall": production.recall,
        "precision": production.precision,
        "mcnemar": {
            "candidate_only_wrong": only_wrong,
            "candidate_only_right": only_right,
            "p_value": p_value,
            "alpha": settings["mcnemar_alpha"],
            "candidate_significantly_worse": only_wrong > only_right and p_value < settings["mcnemar_alpha"],
        },
        "regressed_classes": sorted(regressed, key=lambda c: -c["drop"]),
    }


def _production_problems(comparison, candidate, production, settings) -> list[str]:
    problems = [
        f"recall of class {c['index']} '{c['name']}' fell from {c['production_recall']:.1%} to {c['recall']:.1%} "
        f"against production (limit: a drop of {c['limit']:.0%})"
        for c in comparison["regressed_classes"]
    ]
    test = comparison["mcnemar"]
    if test["candidate_significantly_worse"]:
        problems.append(
            f"it is significantly worse than production overall ({candidate.accuracy:.1%} vs "
            f"{production.accuracy:.1%}; McNemar p={test['p_value']:.2g} < {test['alpha']:g}, "
            f"{test['candidate_only_wrong']} images only it got wrong vs {test['candidate_only_right']})"
        )
    return problems


def _floor_check(candidate, golden, settings) -> dict:
    below = [
        {"index": index, "name": name, "recall": recall, "floor": settings["min_class_recall"]}
        for index, (name, recall) in enumerate(zip(golden.class_names, candidate.recall))
        if recall is not None and recall < settings["min_class_recall"]
    ]
    return {
        "min_accuracy": settings["min_accuracy"],
        "min_class_recall": settings["min_class_recall"],
        "accuracy_below_floor": candidate.accuracy < settings["min_accuracy"],
        "classes_below_floor": below,
    }


def _floor_problems(floors, candidate, settings) -> list[str]:
    problems = []
    if floors["accuracy_below_floor"]:
        problems.append(f"accuracy {candidate.accuracy:.1%} is under the {settings['min_accuracy']:.0%} floor")
    problems += [
        f"recall of class {c['index']} '{c['name']}' is {c['recall']:.1%}, under the {c['floor']:.0%} floor"
        for c in floors["classes_below_floor"]
    ]
    return problems


def _summary(problems, candidate, production, golden, settings) -> str:
    if problems:
        more = (
            f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''}; see evidence)"
            if len(problems) > 1
            else ""
        )
        return f"Fails on the golden set of {len(golden)} images: {problems[0]}{more}."
    if production is None:
        return (
            f"No production version to compare with, so only the absolute floors were checked: accuracy "
            f"{candidate.accuracy:.1%} (floor {settings['min_accuracy']:.0%}) and every class's recall at least "
            f"{settings['min_class_recall']:.0%}, on {len(golden)} golden images."
        )
    return (
        f"Accuracy {candidate.accuracy:.1%} vs production's {production.accuracy:.1%} on {len(golden)} golden images, "
        f"not significantly worse, and no class lost more recall than its limit."
    )


def _scores_evidence(scores: ClassifierScores, golden: GoldenSet) -> dict:
    per_class = [
        {
            "index": index,
            "name": name,
            "support": int(scores.confusion[index].sum()),
            "precision": scores.precision[index],
            "recall": scores.recall[index],
        }
        for index, name in enumerate(golden.class_names)
    ]
    return {
        "images": len(golden),
        "accuracy": scores.accuracy,
        "expected_calibration_error": scores.ece,
        "per_class": per_class,
        "confusions": confusions(scores.confusion),
        **({"confusion_matrix": scores.confusion.tolist()}
           if len(golden.class_names) <= DENSE_CONFUSION_MAX_CLASSES else {}),
        "class_names": list(golden.class_names),
    }


def confusions(confusion: np.ndarray) -> list[list[int]]:
    """Every mistake cell of a confusion matrix as [true class, predicted class, images], most frequent first.

    With the per-class support (each row's sum) it is the whole matrix: the
    diagonal is support minus the row's mistakes.
    """
    mistakes = confusion.copy()
    np.fill_diagonal(mistakes, 0)
    true, predicted = np.nonzero(mistakes)
    counts = mistakes[true, predicted]
    order = np.lexsort((predicted, true, -counts))  # most frequent first, ties by class
    return [[int(true[i]), int(predicted[i]), int(counts[i])] for i in order]


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> list[float | None]:
    # None, not NaN: the evidence is stored as JSON, where NaN is not valid.
    return [float(n / d) if d else None for n, d in zip(numerators, denominators)]
