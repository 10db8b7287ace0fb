"""The report of one set of predictions: discrimination and calibration, JSON-able, and its
plain-text table. What training stores as a model's ``test_report`` and the ``evaluate``
command prints. NumPy only (``ml.engine.numeric``); no Django, no torch at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ml.engine.eval.calibration import ECE_BINS, negative_log_likelihood, reliability_bins
from ml.engine.eval.metrics import classification_metrics, malignant_targets, predicted_classes
from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.numeric import sigmoid, softmax


def _reliability(
    raw: NDArray[np.float64],
    calibrated: NDArray[np.float64],
    raw_malignant: NDArray[np.float64],
    calibrated_malignant: NDArray[np.float64],
    targets: NDArray[np.int_],
    y_malignant: NDArray[np.int_],
) -> dict[str, dict[str, Any]]:
    """Reliability bins of both heads, before (T = 1) and after calibration."""
    correct_raw = predicted_classes(raw) == targets
    correct = predicted_classes(calibrated) == targets
    return {
        "uncalibrated": reliability_bins(raw.max(axis=1), correct_raw),
        "calibrated": reliability_bins(calibrated.max(axis=1), correct),
        "malignant_uncalibrated": reliability_bins(raw_malignant, y_malignant),
        "malignant_calibrated": reliability_bins(calibrated_malignant, y_malignant),
    }


def report(
    class_logits: ArrayLike,
    malignant_logits: ArrayLike,
    targets: ArrayLike,
    classes: Sequence[DiagnosisClass],
    *,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Everything about one set of predictions, as a JSON-able dict.

    ``class_logits`` float[N, C], ``malignant_logits`` float[N], ``targets`` int[N]. The
    discrimination metrics use the probabilities the model serves, i.e. with ``temperature``
    applied; ``ece``/``nll`` are before calibration (T = 1), ``ece_calibrated`` /
    ``nll_calibrated`` after. Keys include ``balanced_accuracy``, ``malignant_auc``,
    ``macro_auc``, ``ece``, ``ece_calibrated``, ``temperature``, ``per_class``,
    ``confusion_matrix``, ``sensitivity_at_specificity``, ``roc`` and ``reliability``.
    """
    y = np.asarray(targets, dtype=int)
    raw = softmax(class_logits)
    calibrated = softmax(class_logits, temperature)
    calibrated_malignant = sigmoid(malignant_logits, temperature)
    y_malignant = malignant_targets(y, classes)

    result = classification_metrics(calibrated, calibrated_malignant, y, classes)
    reliability = _reliability(
        raw, calibrated, sigmoid(malignant_logits), calibrated_malignant, y, y_malignant
    )
    result.update(
        {
            "temperature": float(temperature),
            "ece_bins": ECE_BINS,
            "ece": reliability["uncalibrated"]["ece"],
            "ece_calibrated": reliability["calibrated"]["ece"],
            "malignant_ece": reliability["malignant_uncalibrated"]["ece"],
            "malignant_ece_calibrated": reliability["malignant_calibrated"]["ece"],
            "nll": negative_log_likelihood(raw, y) if len(y) else None,
            "nll_calibrated": negative_log_likelihood(calibrated, y) if len(y) else None,
            "reliability": reliability,
        }
    )
    return result


def format_report(result: dict[str, Any]) -> str:
    """A plain-text metrics table of a report, for a terminal or a log."""

    def fmt(value: float | None) -> str:
        return "   —  " if value is None else f"{value:6.3f}"

    lines = [
        f"images              {result['images']}",
        f"balanced accuracy   {fmt(result['balanced_accuracy'])}",
        f"macro AUC           {fmt(result['macro_auc'])}",
        f"malignant AUC       {fmt(result.get('malignant_auc'))}",
    ]
    for key, value in (result.get("sensitivity_at_specificity") or {}).items():
        lines.append(f"sens @ {key}% spec     {fmt(value['sensitivity'])}")
    if "ece" in result:
        lines.append(
            f"ECE ({result['ece_bins']} bins)       {fmt(result['ece'])} -> "
            f"{fmt(result['ece_calibrated'])} calibrated (T = {result['temperature']:.3f})"
        )
    lines.append("")
    lines.append("class   support  sens    spec    AUC")
    for code, m in result["per_class"].items():
        lines.append(
            f"{code:<7} {m['support']:>7}  {fmt(m['sensitivity'])}  {fmt(m['specificity'])}"
            f"  {fmt(m['auc'])}"
        )
    return "\n".join(lines)
