"""The report's figures as PNG files: confusion matrix, ROC curves, reliability diagram.

Drawn from a stored report alone (so any stored report can be plotted again), with matplotlib's
``Figure`` and no pyplot: no global backend switch, no GUI, safe in worker processes. Used by
training (``plots/``) and by the web app when a model version is registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ml.engine.eval.calibration import ECE_BINS
from ml.engine.eval.metrics import Curve, roc_curves
from ml.engine.model.taxonomy import DiagnosisClass

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def save_plots(
    result: dict[str, Any],
    probabilities: ArrayLike | None = None,
    targets: ArrayLike | None = None,
    out_dir: str | Path = ".",
    *,
    malignant_probabilities: ArrayLike | None = None,
    classes: Sequence[DiagnosisClass] | None = None,
) -> dict[str, Path]:
    """Confusion matrix, ROC curves and reliability diagram as PNG files in ``out_dir``.

    Drawn from the report alone, so a stored report can be plotted again; when
    ``probabilities`` (float[N, C]) and ``targets`` (int[N]) are given (and ``classes``, or the
    report's class codes are used), the ROC curves are drawn at full resolution from them.
    Returns ``{"confusion_matrix": path, "roc": path, "reliability": path}``.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    curves: dict[str, Curve] = dict(result.get("roc") or {})
    if probabilities is not None and targets is not None:
        stand_in = classes or [
            DiagnosisClass(code, code, result["per_class"][code]["category"])
            for code in result["classes"]
        ]
        curves.update(roc_curves(targets, probabilities, stand_in, malignant_probabilities))
    figures = {
        "confusion_matrix": _confusion_figure(result),
        "roc": _roc_figure(result, curves),
        "reliability": _reliability_figure(result),
    }
    paths: dict[str, Path] = {}
    for name, figure in figures.items():
        paths[name] = folder / f"{name}.png"
        figure.savefig(paths[name], dpi=DPI)
    return paths


def _confusion_figure(result: dict[str, Any]) -> Figure:
    from matplotlib.figure import Figure

    codes = result["classes"]
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
    return fig


def _roc_figure(result: dict[str, Any], curves: dict[str, Curve]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for code in result["classes"]:
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
    return fig


def _reliability_figure(result: dict[str, Any]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5), layout="constrained")
    reliability = result.get("reliability") or {}
    panels = [
        ("Diagnosis (top class)", "uncalibrated", "calibrated"),
        ("Malignant head", "malignant_uncalibrated", "malignant_calibrated"),
    ]
    for position, (title, before, after) in enumerate(panels):
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
    return fig


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
