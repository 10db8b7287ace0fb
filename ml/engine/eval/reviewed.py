"""How a model version performs against the humans: metrics from reviewed predictions.

No Django here: the caller passes one ``ReviewedPrediction`` per reviewed prediction (the latest
review that states a final diagnosis is the reference). Counting is exact and simple on purpose,
so an auditor can check every number by hand.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class ReviewedPrediction:
    top_diagnosis: str
    predicted_category: str  # what the model said: benign / indeterminate / malignant
    malignant_probability: float
    final_diagnosis: str  # the reviewer's
    final_category: str  # category of the reviewer's diagnosis
    clinic: str = ""
    fitzpatrick_type: str = ""
    anatomic_site: str = ""


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _malignant_counts(records: list[ReviewedPrediction]) -> dict[str, Any]:
    """tp/fn/fp/tn of the malignant category, with sensitivity and specificity."""
    tp = fn = fp = 0
    for r in records:
        said, truth = r.predicted_category == "malignant", r.final_category == "malignant"
        tp += said and truth
        fn += not said and truth
        fp += said and not truth
    tn = len(records) - tp - fn - fp
    return {
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
    }


def _confusion(
    records: list[ReviewedPrediction], class_codes: list[str]
) -> tuple[list[str], list[list[int]]]:
    """(labels, matrix): the model's classes then any other final diagnosis, in that order;
    rows are the reviewer's diagnosis, columns the model's top diagnosis."""
    codes = list(class_codes)
    extra = sorted({r.final_diagnosis for r in records} - set(codes))
    labels = codes + extra
    index = {code: i for i, code in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for r in records:
        matrix[index[r.final_diagnosis]][index[r.top_diagnosis]] += 1
    return labels, matrix


def _calibration_bins(records: list[ReviewedPrediction]) -> list[dict[str, Any]]:
    """Non-empty equal-width bins of the malignant probability, against the reviewers."""
    bins = []
    for b in range(CALIBRATION_BINS):
        low, high = b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS
        members = [
            r
            for r in records
            if low <= r.malignant_probability < high
            or (b == CALIBRATION_BINS - 1 and r.malignant_probability == 1.0)
        ]
        if members:
            bins.append(
                {
                    "low": low,
                    "high": high,
                    "count": len(members),
                    "mean_predicted": sum(r.malignant_probability for r in members) / len(members),
                    "observed_malignant": sum(r.final_category == "malignant" for r in members)
                    / len(members),
                }
            )
    return bins


def _breakdown(records: list[ReviewedPrediction], key: str) -> dict[str, dict[str, Any]]:
    """Count and agreement per value of ``key`` (a ``ReviewedPrediction`` field)."""
    groups: dict[str, list[ReviewedPrediction]] = defaultdict(list)
    for r in records:
        groups[getattr(r, key) or "unknown"].append(r)
    return {
        name: {
            "count": len(items),
            "agreement": _ratio(
                sum(i.final_diagnosis == i.top_diagnosis for i in items), len(items)
            ),
        }
        for name, items in sorted(groups.items())
    }


def performance(records: list[ReviewedPrediction], class_codes: list[str]) -> dict[str, Any]:
    """Agreement, malignant sensitivity/specificity, confusion matrix, calibration and counts.

    Malignant is the positive class: the model says malignant when its category is malignant;
    the truth is malignant when the reviewer's final diagnosis belongs to a malignant class.
    """
    agreed = sum(1 for r in records if r.final_diagnosis == r.top_diagnosis)
    labels, matrix = _confusion(records, class_codes)
    return {
        "reviewed": len(records),
        "agreement_rate": _ratio(agreed, len(records)),
        "malignant": _malignant_counts(records),
        "labels": labels,
        "confusion_matrix": matrix,
        "calibration": _calibration_bins(records),
        "final_diagnoses": dict(Counter(r.final_diagnosis for r in records)),
        "per_clinic": _breakdown(records, "clinic"),
        "per_fitzpatrick_type": _breakdown(records, "fitzpatrick_type"),
        "per_anatomic_site": _breakdown(records, "anatomic_site"),
    }


def calibration_png(report: dict[str, Any]) -> bytes:
    """A reliability diagram of the malignant probability against the reviewers (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4.5), dpi=100)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    points = report["calibration"]
    if points:
        axes.plot(
            [p["mean_predicted"] for p in points],
            [p["observed_malignant"] for p in points],
            marker="o",
            label="this model",
        )
    axes.set_xlabel("predicted malignant probability")
    axes.set_ylabel("malignant according to reviewers")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
