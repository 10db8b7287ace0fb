"""Metrics as the ISIC challenge defines them, calibration, and the report's plots. No Django.

Inputs are NumPy arrays (or anything ``np.asarray`` takes): class probabilities float[N, C] in
the model's class order, malignant probabilities float[N] from the binary head, and true class
indices int[N]. The malignant target of a sample is 1 when its true class's category is
malignant (see ``ml.engine.data.datasets``).

Definitions (checked against ``isic-challenge-scoring`` in the tests):

- balanced accuracy: the mean, over the classes present in the targets, of the fraction of that
  class's images whose highest probability is that class (ISIC 2018/2019 Task 3 metric);
- per-class AUC: one-vs-rest ROC AUC of the class's probability; macro AUC: their mean over the
  classes with both positives and negatives; ``auc_sens_80``: the ISIC partial AUC above 80 %
  sensitivity (not McClish-normalised); ``threshold_sensitivity`` / ``threshold_specificity``:
  one-vs-rest at probability > 0.5, as the ISIC scoring computes its per-category values;
- ``sensitivity`` / ``specificity`` per class: from the confusion matrix of the predicted
  (highest-probability) class, so balanced accuracy is the mean of the sensitivities;
- sensitivity at 80/90/95 % specificity: the best sensitivity of the malignant probability over
  the thresholds whose specificity reaches the level, with that threshold;
- expected calibration error (ECE): 15 equal-width bins of confidence over [0, 1] (the first
  bin closed, the others open on the left), ECE = Σ (n_b / N)·|accuracy_b − confidence_b|.
  For the diagnosis head, confidence is the top class's probability and accuracy whether that
  class is right (top-label ECE, Guo et al. 2017); for the malignant head, the bins are of the
  malignant probability and accuracy is the fraction that is malignant.

Temperature scaling divides both heads' logits by one T, as serving does; T is fitted by
LBFGS on the joint negative log-likelihood of both heads on validation logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn import metrics as skm
from torch.nn import functional as F

from ml.engine.model.taxonomy import DiagnosisClass

ECE_BINS = 15
SPECIFICITY_LEVELS = (0.80, 0.90, 0.95)
ROC_POINTS = 201  # ROC curves kept in a report are thinned to at most this many points


# --- small helpers --------------------------------------------------------------------------


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """float[N, C] logits -> float[N, C] probabilities (computed in float64)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return torch.softmax(z, dim=1).numpy()


def sigmoid(logits, temperature: float = 1.0) -> np.ndarray:
    """float[N] logits -> float[N] probabilities (computed in float64)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return torch.sigmoid(z).numpy()


def malignant_targets(targets, classes: Sequence[DiagnosisClass]) -> np.ndarray:
    """int[N] class indices -> int[N] 0/1, 1 where the class's category is malignant."""
    is_malignant = np.array([c.category == "malignant" for c in classes], dtype=int)
    return is_malignant[np.asarray(targets, dtype=int)]


def _number(value) -> float | None:
    """A JSON-able float; NaN/inf (an undefined metric) becomes None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any() and not y.all())


# --- discrimination -------------------------------------------------------------------------


def predicted_classes(probabilities) -> np.ndarray:
    """float[N, C] -> int[N]: the highest-probability class (first one on an exact tie)."""
    return np.asarray(probabilities).argmax(axis=1)


def confusion(targets, probabilities, num_classes: int) -> np.ndarray:
    """int[C, C] confusion matrix: rows true class, columns predicted class."""
    return skm.confusion_matrix(
        np.asarray(targets), predicted_classes(probabilities), labels=np.arange(num_classes)
    )


def balanced_accuracy(targets, probabilities) -> float:
    """The ISIC challenge's balanced multi-class accuracy (mean recall over present classes).

    sklearn's ``balanced_accuracy_score`` averages over the classes of targets *and*
    predictions (with a warning when they differ); ISIC averages over the true classes only.
    """
    probabilities = np.asarray(probabilities)
    matrix = confusion(targets, probabilities, probabilities.shape[1])
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((matrix.diagonal()[present] / support[present]).mean())


def auc_above_sensitivity(y_true, scores, sensitivity: float = 0.80) -> float | None:
    """Partial ROC AUC over the part of the curve with sensitivity ≥ ``sensitivity``.

    The ISIC challenge's ``auc_sens_80``: the area under the curve (∫ sensitivity d(1 −
    specificity)) from where sensitivity reaches the level to the end, not McClish-normalised:
    a perfect classifier scores 1, chance (1 − s²)/2 (0.18 at 80 %).
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if not _both_classes(y_true):
        return None
    fpr, tpr, _ = skm.roc_curve(y_true, scores, drop_intermediate=False)
    # The point where the curve crosses the sensitivity level, interpolated, starts the segment.
    at = int(tpr.searchsorted(sensitivity, side="left"))
    fpr_at = np.interp(sensitivity, tpr[at - 1 : at + 1], fpr[at - 1 : at + 1])
    return float(skm.auc(np.insert(fpr[at:], 0, fpr_at), np.insert(tpr[at:], 0, sensitivity)))


def sensitivity_at_specificity(
    y_true, scores, levels: Sequence[float] = SPECIFICITY_LEVELS
) -> dict[str, dict]:
    """For each specificity level: the best sensitivity reaching it, and its threshold.

    Returns ``{"80": {"sensitivity": s, "specificity": sp, "threshold": t}, ...}`` where a
    score ≥ t is called positive; values are None when ``y_true`` lacks either class.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    result: dict[str, dict] = {}
    defined = _both_classes(y_true)
    if defined:
        fpr, tpr, thresholds = skm.roc_curve(y_true, scores, drop_intermediate=False)
    for level in levels:
        key = f"{round(level * 100)}"
        if not defined:
            result[key] = {"sensitivity": None, "specificity": None, "threshold": None}
            continue
        allowed = np.flatnonzero(fpr <= 1 - level + 1e-12)
        best = allowed[np.argmax(tpr[allowed])]
        result[key] = {
            "sensitivity": float(tpr[best]),
            "specificity": float(1 - fpr[best]),
            "threshold": _number(thresholds[best]),  # inf (nothing called positive) -> None
        }
    return result


def operating_curve(y_true, scores, *, max_points: int = 101) -> list[dict]:
    """The malignant head's ROC with its thresholds, thinned, for choosing an operating point:
    ``[{"threshold": t, "sensitivity": s, "specificity": sp}]`` where a score ≥ t is positive.
    Empty when ``y_true`` lacks either class."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if not _both_classes(y_true):
        return []
    fpr, tpr, thresholds = skm.roc_curve(y_true, scores, drop_intermediate=True)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if len(thresholds) > max_points:
        keep = np.unique(np.linspace(0, len(thresholds) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return [
        {"threshold": float(t), "sensitivity": float(s), "specificity": float(1 - f)}
        for t, s, f in zip(thresholds, tpr, fpr, strict=True)
    ]


def _thin(fpr: np.ndarray, tpr: np.ndarray) -> dict:
    if len(fpr) > ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def roc_curves(
    targets, probabilities, classes: Sequence[DiagnosisClass], malignant_probabilities=None
) -> dict[str, dict]:
    """One-vs-rest ROC curves per class code (and ``"malignant"``), thinned, JSON-able."""
    targets, probabilities = np.asarray(targets), np.asarray(probabilities)
    curves = {}
    for index, cls in enumerate(classes):
        y = targets == index
        if _both_classes(y):
            fpr, tpr, _ = skm.roc_curve(y, probabilities[:, index])
            curves[cls.code] = _thin(fpr, tpr)
    if malignant_probabilities is not None:
        y = malignant_targets(targets, classes)
        if _both_classes(y):
            fpr, tpr, _ = skm.roc_curve(y, np.asarray(malignant_probabilities))
            curves["malignant"] = _thin(fpr, tpr)
    return curves


def per_class_metrics(targets, probabilities, classes: Sequence[DiagnosisClass]) -> dict[str, dict]:
    """Per class code: support, sensitivity, specificity, AUC, ISIC partial AUC, AP, and the
    ISIC-style one-vs-rest sensitivity/specificity at probability > 0.5."""
    targets, probabilities = np.asarray(targets), np.asarray(probabilities)
    predicted = predicted_classes(probabilities)
    # [C, 2, 2] of [[tn, fp], [fn, tp]] per class, for the predicted (argmax) class.
    per_class_cm = skm.multilabel_confusion_matrix(
        targets, predicted, labels=np.arange(len(classes))
    )
    result = {}
    for index, cls in enumerate(classes):
        (tn, fp), (fn, tp) = per_class_cm[index]
        y = targets == index
        scores = probabilities[:, index]
        called = scores > 0.5
        t_tp, t_fn = int((y & called).sum()), int((y & ~called).sum())
        t_tn, t_fp = int((~y & ~called).sum()), int((~y & called).sum())
        both = _both_classes(y)
        result[cls.code] = {
            "name": cls.name,
            "category": cls.category,
            "support": int(y.sum()),
            "predicted": int((predicted == index).sum()),
            "sensitivity": _number(tp / (tp + fn)) if tp + fn else None,
            "specificity": _number(tn / (tn + fp)) if tn + fp else None,
            "auc": float(skm.roc_auc_score(y, scores)) if both else None,
            "auc_sens_80": auc_above_sensitivity(y, scores, 0.80),
            "ap": float(skm.average_precision_score(y, scores)) if both else None,
            "threshold_sensitivity": t_tp / (t_tp + t_fn) if t_tp + t_fn else None,
            "threshold_specificity": t_tn / (t_tn + t_fp) if t_tn + t_fp else None,
        }
    return result


def classification_metrics(
    probabilities, malignant_probabilities, targets, classes: Sequence[DiagnosisClass]
) -> dict:
    """Discrimination metrics of both heads (no calibration): a JSON-able dict."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=int)
    per_class = per_class_metrics(targets, probabilities, classes)
    aucs = [m["auc"] for m in per_class.values() if m["auc"] is not None]
    partial = [m["auc_sens_80"] for m in per_class.values() if m["auc_sens_80"] is not None]
    result = {
        "images": int(len(targets)),
        "classes": [c.code for c in classes],
        "balanced_accuracy": _number(balanced_accuracy(targets, probabilities)),
        "accuracy": _number(skm.accuracy_score(targets, predicted_classes(probabilities)))
        if len(targets)
        else None,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_auc_sens_80": float(np.mean(partial)) if partial else None,
        "per_class": per_class,
        "confusion_matrix": confusion(targets, probabilities, len(classes)).tolist(),
    }
    y_malignant = malignant_targets(targets, classes)
    result["malignant_prevalence"] = float(y_malignant.mean()) if len(targets) else None
    is_malignant_class = np.array([c.category == "malignant" for c in classes])
    from_classes = probabilities[:, is_malignant_class].sum(axis=1)
    defined = _both_classes(y_malignant)
    result["malignant_auc_from_classes"] = (
        float(skm.roc_auc_score(y_malignant, from_classes)) if defined else None
    )
    if malignant_probabilities is not None:
        malignant_probabilities = np.asarray(malignant_probabilities, dtype=np.float64)
        result["malignant_auc"] = (
            float(skm.roc_auc_score(y_malignant, malignant_probabilities)) if defined else None
        )
        result["sensitivity_at_specificity"] = sensitivity_at_specificity(
            y_malignant, malignant_probabilities
        )
    result["roc"] = roc_curves(targets, probabilities, classes, malignant_probabilities)
    return result


# --- calibration ----------------------------------------------------------------------------


def reliability_bins(confidences, outcomes, n_bins: int = ECE_BINS) -> dict:
    """Equal-width confidence bins over [0, 1] (see the module docstring).

    ``confidences`` float[N] in [0, 1], ``outcomes`` float[N] of 0/1. Returns lists per bin:
    ``lower``, ``upper``, ``count``, ``confidence`` (mean), ``accuracy`` (mean outcome), with
    None for empty bins, and ``ece``.
    """
    confidences = np.asarray(confidences, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True puts a value equal to an upper edge in that bin; 0 joins the first bin.
    index = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidences, minlength=n_bins)
    outcome_sum = np.bincount(index, weights=outcomes, minlength=n_bins)
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


def expected_calibration_error(probabilities, targets, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE of float[N, C] probabilities, or binary ECE of float[N] probabilities.

    With float[N, C]: ``targets`` are class indices; with float[N]: 0/1 outcomes.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets)
    if probabilities.ndim == 1:
        return reliability_bins(probabilities, targets, n_bins)["ece"]
    correct = predicted_classes(probabilities) == targets
    return reliability_bins(probabilities.max(axis=1), correct, n_bins)["ece"]


def fit_temperature(
    class_logits,
    targets,
    malignant_logits=None,
    malignant_target_values=None,
    *,
    max_iter: int = 200,
) -> float:
    """The temperature T > 0 minimising the NLL of ``class_logits / T`` (float[N, C], targets
    int[N]) plus, when given, the binary NLL of ``malignant_logits / T`` (float[N], 0/1
    targets). Fitted on validation logits, never on the test split."""
    z = torch.as_tensor(np.asarray(class_logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if len(y) == 0:
        return 1.0
    m = mt = None
    if malignant_logits is not None:
        m = torch.as_tensor(np.asarray(malignant_logits), dtype=torch.float64)
        mt = torch.as_tensor(np.asarray(malignant_target_values), dtype=torch.float64)
    # Optimise log T: T stays positive and the problem is better conditioned.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        t = log_t.exp()
        loss = F.cross_entropy(z / t, y)
        if m is not None:
            loss = loss + F.binary_cross_entropy_with_logits(m / t, mt)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(min(max(math.exp(log_t.item()), 0.05), 20.0))


def negative_log_likelihood(probabilities, targets) -> float:
    """Mean NLL of float[N, C] probabilities at int[N] targets."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=int)
    picked = probabilities[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


# --- the report -----------------------------------------------------------------------------


def report(
    class_logits,
    malignant_logits,
    targets,
    classes: Sequence[DiagnosisClass],
    *,
    temperature: float = 1.0,
) -> dict:
    """Everything about one set of predictions, as a JSON-able dict.

    ``class_logits`` float[N, C], ``malignant_logits`` float[N], ``targets`` int[N]. The
    discrimination metrics use the probabilities the model serves, i.e. with ``temperature``
    applied; ``ece``/``nll`` are before calibration (T = 1), ``ece_calibrated`` /
    ``nll_calibrated`` after. Keys include ``balanced_accuracy``, ``malignant_auc``,
    ``macro_auc``, ``ece``, ``ece_calibrated``, ``temperature``, ``per_class``,
    ``confusion_matrix``, ``sensitivity_at_specificity``, ``roc`` and ``reliability``.
    """
    targets = np.asarray(targets, dtype=int)
    raw = softmax(class_logits)
    calibrated = softmax(class_logits, temperature)
    raw_malignant = sigmoid(malignant_logits)
    calibrated_malignant = sigmoid(malignant_logits, temperature)
    y_malignant = malignant_targets(targets, classes)

    result = classification_metrics(calibrated, calibrated_malignant, targets, classes)
    correct_raw = predicted_classes(raw) == targets
    correct = predicted_classes(calibrated) == targets
    reliability = {
        "uncalibrated": reliability_bins(raw.max(axis=1), correct_raw),
        "calibrated": reliability_bins(calibrated.max(axis=1), correct),
        "malignant_uncalibrated": reliability_bins(raw_malignant, y_malignant),
        "malignant_calibrated": reliability_bins(calibrated_malignant, y_malignant),
    }
    result.update(
        {
            "temperature": float(temperature),
            "ece_bins": ECE_BINS,
            "ece": reliability["uncalibrated"]["ece"],
            "ece_calibrated": reliability["calibrated"]["ece"],
            "malignant_ece": reliability["malignant_uncalibrated"]["ece"],
            "malignant_ece_calibrated": reliability["malignant_calibrated"]["ece"],
            "nll": negative_log_likelihood(raw, targets) if len(targets) else None,
            "nll_calibrated": negative_log_likelihood(calibrated, targets)
            if len(targets)
            else None,
            "reliability": reliability,
        }
    )
    return result


def format_report(result: dict) -> str:
    """A plain-text metrics table of a report, for a terminal or a log."""

    def fmt(value) -> str:
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


# --- plots ----------------------------------------------------------------------------------


def save_plots(
    result: dict,
    probabilities=None,
    targets=None,
    out_dir: str | Path = ".",
    *,
    malignant_probabilities=None,
    classes: Sequence[DiagnosisClass] | None = None,
) -> dict[str, Path]:
    """Confusion matrix, ROC curves and reliability diagram as PNG files in ``out_dir``.

    Drawn from the report alone, so a stored report can be plotted again; when
    ``probabilities`` (float[N, C]) and ``targets`` (int[N]) are given (and ``classes``, or the
    report's class codes are used), the ROC curves are drawn at full resolution from them.
    Returns ``{"confusion_matrix": path, "roc": path, "reliability": path}``.
    """
    # Figure without pyplot: no global backend switch, no GUI, safe in worker processes.
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = result["classes"]
    paths: dict[str, Path] = {}

    matrix = np.asarray(result["confusion_matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig = Figure(figsize=(1.0 + 0.7 * len(codes), 0.8 + 0.7 * len(codes)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(codes)):
        for j in range(len(codes)):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(codes)), codes, rotation=45)
    ax.set_yticks(range(len(codes)), codes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (balanced accuracy {_fmt(result['balanced_accuracy'])})")
    fig.colorbar(image, ax=ax, label="fraction of true class")
    paths["confusion_matrix"] = out_dir / "confusion_matrix.png"
    fig.savefig(paths["confusion_matrix"], dpi=110)

    curves = dict(result.get("roc") or {})
    if probabilities is not None and targets is not None:
        stand_in = classes or [
            DiagnosisClass(code, code, result["per_class"][code]["category"]) for code in codes
        ]
        curves.update(roc_curves(targets, probabilities, stand_in, malignant_probabilities))
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for code in codes:
        if code in curves:
            auc = result["per_class"][code]["auc"]
            ax.plot(curves[code]["fpr"], curves[code]["tpr"], lw=1, label=f"{code} {_fmt(auc)}")
    if "malignant" in curves:
        ax.plot(
            curves["malignant"]["fpr"],
            curves["malignant"]["tpr"],
            lw=2.5,
            color="black",
            label=f"malignant {_fmt(result.get('malignant_auc'))}",
        )
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"ROC curves (macro AUC {_fmt(result['macro_auc'])})")
    ax.legend(loc="lower right", fontsize=8, title="AUC")
    paths["roc"] = out_dir / "roc.png"
    fig.savefig(paths["roc"], dpi=110)

    fig = Figure(figsize=(11, 5), layout="constrained")
    reliability = result.get("reliability") or {}
    for position, (title, before, after) in enumerate(
        [
            ("Diagnosis (top class)", "uncalibrated", "calibrated"),
            ("Malignant head", "malignant_uncalibrated", "malignant_calibrated"),
        ]
    ):
        ax = fig.add_subplot(1, 2, position + 1)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
        for key, colour, label in ((before, "tab:red", "T = 1"), (after, "tab:blue", "T fitted")):
            bins = reliability.get(key)
            if not bins:
                continue
            xs = [c for c in bins["confidence"] if c is not None]
            ys = [a for a in bins["accuracy"] if a is not None]
            ax.plot(xs, ys, marker="o", color=colour, label=f"{label}: ECE {bins['ece']:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean predicted probability (bin)")
        ax.set_ylabel("observed frequency (bin)")
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
    temperature = result.get("temperature", 1.0)
    fig.suptitle(f"Reliability, {ECE_BINS} equal-width bins (T = {temperature:.3f})")
    paths["reliability"] = out_dir / "reliability.png"
    fig.savefig(paths["reliability"], dpi=110)
    return paths


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"
