"""Calibration: reliability bins, expected calibration error and NLL. NumPy only, no torch.

Expected calibration error (ECE): 15 equal-width bins of confidence over [0, 1] (the first bin
closed, the others open on the left), ECE = Σ (n_b / N)·|accuracy_b − confidence_b|. For the
diagnosis head, confidence is the top class's probability and accuracy whether that class is
right (top-label ECE, Guo et al. 2017); for the malignant head, the bins are of the malignant
probability and accuracy is the fraction that is malignant.

The temperature that calibrates a model is fitted in ``temperature`` (the one torch module of
``ml.engine.eval``); this module, the metrics, the report and its plots load without torch
(ONNX serving, the web app's plots).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ml.engine.eval.metrics import predicted_classes

ECE_BINS = 15


def reliability_bins(
    confidences: ArrayLike, outcomes: ArrayLike, n_bins: int = ECE_BINS
) -> dict[str, Any]:
    """Equal-width confidence bins over [0, 1] (see the module docstring).

    ``confidences`` float[N] in [0, 1], ``outcomes`` float[N] of 0/1. Returns lists per bin:
    ``lower``, ``upper``, ``count``, ``confidence`` (mean), ``accuracy`` (mean outcome), with
    None for empty bins, and ``ece``.
    """
    confidence = np.asarray(confidences, dtype=np.float64)
    outcome = np.asarray(outcomes, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True puts a value equal to an upper edge in that bin; 0 joins the first bin.
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    outcome_sum = np.bincount(index, weights=outcome, minlength=n_bins)
    filled = counts > 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(n_bins), where=filled)
    mean_outcome = np.divide(outcome_sum, counts, out=np.zeros(n_bins), where=filled)
    total = max(int(counts.sum()), 1)
    ece = float(np.sum(counts / total * np.abs(mean_outcome - mean_conf)))
    return {
        "lower": edges[:-1].round(6).tolist(),
        "upper": edges[1:].round(6).tolist(),
        "count": counts.tolist(),
        "confidence": [float(c) if f else None for c, f in zip(mean_conf, filled, strict=True)],
        "accuracy": [float(a) if f else None for a, f in zip(mean_outcome, filled, strict=True)],
        "ece": ece,
    }


def expected_calibration_error(
    probabilities: ArrayLike, targets: ArrayLike, n_bins: int = ECE_BINS
) -> float:
    """Top-label ECE of float[N, C] probabilities, or binary ECE of float[N] probabilities.

    With float[N, C]: ``targets`` are class indices; with float[N]: 0/1 outcomes.
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets)
    if scores.ndim == 1:
        return float(reliability_bins(scores, y, n_bins)["ece"])
    correct = predicted_classes(scores) == y
    return float(reliability_bins(scores.max(axis=1), correct, n_bins)["ece"])


def negative_log_likelihood(probabilities: ArrayLike, targets: ArrayLike) -> float:
    """Mean NLL of float[N, C] probabilities at int[N] targets."""
    scores = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets, dtype=int)
    picked = scores[np.arange(len(y)), y]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
