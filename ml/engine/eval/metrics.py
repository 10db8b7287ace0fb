"""Discrimination metrics as the ISIC challenge defines them (checked against
``isic-challenge-scoring`` in the tests). No Django, no torch.

Inputs are NumPy arrays: class probabilities float[N, C] in the model's class order, malignant
probabilities float[N] from the binary head, true class indices int[N]. Each function's
docstring gives its definition. Calibration is in ``calibration``, the whole report in
``report``, its figures in ``plots``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, SupportsFloat

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as skm

from ml.engine.model.taxonomy import DiagnosisClass

SPECIFICITY_LEVELS = (0.80, 0.90, 0.95)
ROC_POINTS = 201  # ROC curves kept in a report are thinned to at most this many points

Curve = dict[str, list[float]]  # {"fpr": [...], "tpr": [...]}


# --- small helpers --------------------------------------------------------------------------


def malignant_targets(targets: ArrayLike, classes: Sequence[DiagnosisClass]) -> NDArray[np.int_]:
    """int[N] class indices -> int[N] 0/1, 1 where the class's category is malignant."""
    is_malignant = np.array([c.category == "malignant" for c in classes], dtype=int)
    result: NDArray[np.int_] = is_malignant[np.asarray(targets, dtype=int)]
    return result


def _number(value: SupportsFloat | None) -> float | None:
    """A JSON-able float; NaN/inf (an undefined metric) becomes None."""
    if value is None:
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _both_classes(y: NDArray[Any]) -> bool:
    return bool(y.any() and not y.all())


# --- discrimination -------------------------------------------------------------------------


def predicted_classes(probabilities: ArrayLike) -> NDArray[np.intp]:
    """float[N, C] -> int[N]: the highest-probability class (first one on an exact tie)."""
    result: NDArray[np.intp] = np.asarray(probabilities).argmax(axis=1)
    return result


def confusion(targets: ArrayLike, probabilities: ArrayLike, num_classes: int) -> NDArray[np.int_]:
    """int[C, C] confusion matrix: rows true class, columns predicted class."""
    matrix: NDArray[np.int_] = skm.confusion_matrix(
        np.asarray(targets), predicted_classes(probabilities), labels=np.arange(num_classes)
    )
    return matrix


def balanced_accuracy(targets: ArrayLike, probabilities: ArrayLike) -> float:
    """The ISIC challenge's balanced multi-class accuracy (mean recall over present classes).

    sklearn's ``balanced_accuracy_score`` averages over the classes of targets *and*
    predictions (with a warning when they differ); ISIC averages over the true classes only.
    """
    scores = np.asarray(probabilities)
    matrix = confusion(targets, scores, scores.shape[1])
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((matrix.diagonal()[present] / support[present]).mean())


def auc_above_sensitivity(
    y_true: ArrayLike, scores: ArrayLike, sensitivity: float = 0.80
) -> float | None:
    """Partial ROC AUC over the part of the curve with sensitivity ≥ ``sensitivity``.

    The ISIC challenge's ``auc_sens_80``: the area under the curve (∫ sensitivity d(1 −
    specificity)) from where sensitivity reaches the level to the end, not McClish-normalised:
    a perfect classifier scores 1, chance (1 − s²)/2 (0.18 at 80 %).
    """
    y, score = np.asarray(y_true), np.asarray(scores)
    if not _both_classes(y):
        return None
    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    # The point where the curve crosses the sensitivity level, interpolated, starts the segment.
    at = int(tpr.searchsorted(sensitivity, side="left"))
    fpr_at = np.interp(sensitivity, tpr[at - 1 : at + 1], fpr[at - 1 : at + 1])
    return float(skm.auc(np.insert(fpr[at:], 0, fpr_at), np.insert(tpr[at:], 0, sensitivity)))


def sensitivity_at_specificity(
    y_true: ArrayLike, scores: ArrayLike, levels: Sequence[float] = SPECIFICITY_LEVELS
) -> dict[str, dict[str, float | None]]:
    """For each specificity level: the best sensitivity reaching it, and its threshold.

    Returns ``{"80": {"sensitivity": s, "specificity": sp, "threshold": t}, ...}`` where a
    score ≥ t is called positive; values are None when ``y_true`` lacks either class.
    """
    y, score = np.asarray(y_true), np.asarray(scores)
    result: dict[str, dict[str, float | None]] = {}
    if not _both_classes(y):
        empty = {"sensitivity": None, "specificity": None, "threshold": None}
        return {f"{round(level * 100)}": dict(empty) for level in levels}
    fpr, tpr, thresholds = skm.roc_curve(y, score, drop_intermediate=False)
    for level in levels:
        allowed = np.flatnonzero(fpr <= 1 - level + 1e-12)
        best = allowed[np.argmax(tpr[allowed])]
        result[f"{round(level * 100)}"] = {
            "sensitivity": float(tpr[best]),
            "specificity": float(1 - fpr[best]),
            "threshold": _number(thresholds[best]),  # inf (nothing called positive) -> None
        }
    return result


def operating_curve(
    y_true: ArrayLike, scores: ArrayLike, *, max_points: int = 101
) -> list[dict[str, float]]:
    """The malignant head's ROC with its thresholds, thinned, for choosing an operating point:
    ``[{"threshold": t, "sensitivity": s, "specificity": sp}]`` where a score ≥ t is positive.
    Empty when ``y_true`` lacks either class."""
    y, score = np.asarray(y_true), np.asarray(scores)
    if not _both_classes(y):
        return []
    fpr, tpr, thresholds = skm.roc_curve(y, score, drop_intermediate=True)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if len(thresholds) > max_points:
        keep = np.unique(np.linspace(0, len(thresholds) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return [
        {"threshold": float(t), "sensitivity": float(s), "specificity": float(1 - f)}
        for t, s, f in zip(thresholds, tpr, fpr, strict=True)
    ]


def _thin(fpr: NDArray[np.float64], tpr: NDArray[np.float64]) -> Curve:
    if len(fpr) > ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def roc_curves(
    targets: ArrayLike,
    probabilities: ArrayLike,
    classes: Sequence[DiagnosisClass],
    malignant_probabilities: ArrayLike | None = None,
) -> dict[str, Curve]:
    """One-vs-rest ROC curves per class code (and ``"malignant"``), thinned, JSON-able."""
    y_class, scores = np.asarray(targets), np.asarray(probabilities)
    curves: dict[str, Curve] = {}
    for index, cls in enumerate(classes):
        y = y_class == index
        if _both_classes(y):
            fpr, tpr, _ = skm.roc_curve(y, scores[:, index])
            curves[cls.code] = _thin(fpr, tpr)
    if malignant_probabilities is not None:
        y = malignant_targets(y_class, classes)
        if _both_classes(y):
            fpr, tpr, _ = skm.roc_curve(y, np.asarray(malignant_probabilities))
            curves["malignant"] = _thin(fpr, tpr)
    return curves


def _one_class(
    cls: DiagnosisClass,
    y: NDArray[np.bool_],
    scores: NDArray[Any],
    cm: NDArray[np.int_],
    predicted: int,
) -> dict[str, Any]:
    """One class's entry of ``per_class_metrics``: ``y`` whether each image is of the class,
    ``cm`` its [[tn, fp], [fn, tp]], ``predicted`` how many images were called it."""
    (tn, fp), (fn, tp) = cm
    called = scores > 0.5
    t_tp, t_fn = int((y & called).sum()), int((y & ~called).sum())
    t_tn, t_fp = int((~y & ~called).sum()), int((~y & called).sum())
    both = _both_classes(y)
    return {
        "name": cls.name,
        "category": cls.category,
        "support": int(y.sum()),
        "predicted": predicted,
        "sensitivity": _number(tp / (tp + fn)) if tp + fn else None,
        "specificity": _number(tn / (tn + fp)) if tn + fp else None,
        "auc": float(skm.roc_auc_score(y, scores)) if both else None,
        "auc_sens_80": auc_above_sensitivity(y, scores, 0.80),
        "ap": float(skm.average_precision_score(y, scores)) if both else None,
        "threshold_sensitivity": t_tp / (t_tp + t_fn) if t_tp + t_fn else None,
        "threshold_specificity": t_tn / (t_tn + t_fp) if t_tn + t_fp else None,
    }


def per_class_metrics(
    targets: ArrayLike, probabilities: ArrayLike, classes: Sequence[DiagnosisClass]
) -> dict[str, dict[str, Any]]:
    """Per class code: support, sensitivity, specificity, AUC, ISIC partial AUC, AP, and the
    ISIC-style one-vs-rest sensitivity/specificity at probability > 0.5."""
    y_class, scores = np.asarray(targets), np.asarray(probabilities)
    predicted = predicted_classes(scores)
    # [C, 2, 2] of [[tn, fp], [fn, tp]] per class, for the predicted (argmax) class.
    per_class_cm = skm.multilabel_confusion_matrix(
        y_class, predicted, labels=np.arange(len(classes))
    )
    return {
        cls.code: _one_class(
            cls,
            y_class == index,
            scores[:, index],
            per_class_cm[index],
            int((predicted == index).sum()),
        )
        for index, cls in enumerate(classes)
    }


def _malignant_metrics(
    probabilities: NDArray[np.float64],
    malignant_probabilities: ArrayLike | None,
    targets: NDArray[np.int_],
    classes: Sequence[DiagnosisClass],
) -> dict[str, Any]:
    """The malignant part of ``classification_metrics``: prevalence, AUCs, operating points."""
    y_malignant = malignant_targets(targets, classes)
    result: dict[str, Any] = {
        "malignant_prevalence": float(y_malignant.mean()) if len(targets) else None
    }
    is_malignant_class = np.array([c.category == "malignant" for c in classes])
    from_classes = probabilities[:, is_malignant_class].sum(axis=1)
    defined = _both_classes(y_malignant)
    result["malignant_auc_from_classes"] = (
        float(skm.roc_auc_score(y_malignant, from_classes)) if defined else None
    )
    if malignant_probabilities is not None:
        malignant = np.asarray(malignant_probabilities, dtype=np.float64)
        result["malignant_auc"] = (
            float(skm.roc_auc_score(y_malignant, malignant)) if defined else None
        )
        result["sensitivity_at_specificity"] = sensitivity_at_specificity(y_malignant, malignant)
    return result


def classification_metrics(
    probabilities: ArrayLike,
    malignant_probabilities: ArrayLike | None,
    targets: ArrayLike,
    classes: Sequence[DiagnosisClass],
) -> dict[str, Any]:
    """Discrimination metrics of both heads (no calibration): a JSON-able dict."""
    scores = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets, dtype=int)
    per_class = per_class_metrics(y, scores, classes)
    aucs = [m["auc"] for m in per_class.values() if m["auc"] is not None]
    partial = [m["auc_sens_80"] for m in per_class.values() if m["auc_sens_80"] is not None]
    result = {
        "images": int(len(y)),
        "classes": [c.code for c in classes],
        "balanced_accuracy": _number(balanced_accuracy(y, scores)),
        "accuracy": _number(skm.accuracy_score(y, predicted_classes(scores))) if len(y) else None,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_auc_sens_80": float(np.mean(partial)) if partial else None,
        "per_class": per_class,
        "confusion_matrix": confusion(y, scores, len(classes)).tolist(),
        **_malignant_metrics(scores, malignant_probabilities, y, classes),
    }
    result["roc"] = roc_curves(y, scores, classes, malignant_probabilities)
    return result
