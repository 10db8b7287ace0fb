"""How a model's two heads are read, without PyTorch: ``PredictionResult`` and ``interpret``.

No Django and no torch here, so a worker serving the ONNX Runtime backend (``serve.onnx``)
never loads torch. ``serve.torch_predictor`` (the PyTorch backend) uses these same definitions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.model.thresholds import DEFAULT_THRESHOLDS

if TYPE_CHECKING:
    from PIL import Image

Thresholds = Mapping[str, float]  # "malignant", "confidence": see model.thresholds


@dataclass(frozen=True)
class PredictionResult:
    malignant_probability: float
    diagnosis_probabilities: dict[str, float]  # class code -> probability, the model's order
    top_diagnosis: str
    top_probability: float
    category: str  # benign | indeterminate | malignant
    uncertain: bool
    malignant_threshold: float
    inference_ms: float


def interpret(
    *,
    malignant_probability: float,
    diagnosis_probabilities: dict[str, float],
    classes: list[DiagnosisClass],
    thresholds: Thresholds,
) -> tuple[str, str, float, bool]:
    """Read the two heads together by one rule. Returns (top_diagnosis, category,
    top_probability, uncertain).

    - The heads agree: the binary head reaches the malignant threshold and the top diagnosis is
      not benign (malignant, or indeterminate such as AK): *malignant*; it stays below and the top
      diagnosis is not malignant: the top diagnosis's category (*benign* or *indeterminate*).
    - The heads disagree (malignant by one, benign or malignant by the other): *indeterminate*
      and uncertain, "indeterminate — refer". Never "malignant" above a benign top diagnosis.
    - Uncertain also when the top diagnosis's probability is below the confidence threshold.
    """
    by_code = {c.code: c for c in classes}
    top_code = max(diagnosis_probabilities, key=diagnosis_probabilities.__getitem__)
    top_probability = diagnosis_probabilities[top_code]
    top_category = by_code[top_code].category
    says_malignant = malignant_probability >= _threshold(thresholds, "malignant")
    uncertain = top_probability < _threshold(thresholds, "confidence")
    disagree = top_category == ("benign" if says_malignant else "malignant")
    if disagree:
        return top_code, "indeterminate", top_probability, True
    category = "malignant" if says_malignant else top_category
    return top_code, category, top_probability, uncertain


def _threshold(thresholds: Thresholds, name: str) -> float:
    return float(thresholds.get(name, DEFAULT_THRESHOLDS[name]))


def read_heads(
    *,
    malignant_probability: float,
    diagnosis_probabilities: dict[str, float],
    classes: list[DiagnosisClass],
    thresholds: Thresholds,
    inference_ms: float,
) -> PredictionResult:
    """One image's calibrated probabilities, read with ``thresholds`` into a PredictionResult."""
    top, category, top_probability, uncertain = interpret(
        malignant_probability=malignant_probability,
        diagnosis_probabilities=diagnosis_probabilities,
        classes=classes,
        thresholds=thresholds,
    )
    return PredictionResult(
        malignant_probability=malignant_probability,
        diagnosis_probabilities=diagnosis_probabilities,
        top_diagnosis=top,
        top_probability=top_probability,
        category=category,
        uncertain=uncertain,
        malignant_threshold=_threshold(thresholds, "malignant"),
        inference_ms=inference_ms,
    )


def read_batch(
    malignant: list[float],
    probabilities: list[list[float]],
    *,
    codes: list[str],
    classes: list[DiagnosisClass],
    thresholds: Thresholds,
    inference_ms: float,
) -> list[PredictionResult]:
    """A batch's rows (malignant probability, class probabilities in ``codes`` order) read."""
    return [
        read_heads(
            malignant_probability=float(m),
            diagnosis_probabilities={code: float(p) for code, p in zip(codes, row, strict=True)},
            classes=classes,
            thresholds=thresholds,
            inference_ms=inference_ms,
        )
        for m, row in zip(malignant, probabilities, strict=True)
    ]


class BatchPredictor:
    """``predict_batch``/``predict`` of both serving backends: time the batch, read each row of
    ``batch_probabilities`` (temperature-scaled malignant and class probabilities, as lists)
    with the model's thresholds, a clinic's own overriding them. Subclasses set ``codes``,
    ``classes`` and ``thresholds``."""

    codes: list[str]
    classes: list[DiagnosisClass]
    thresholds: dict[str, float]

    def batch_probabilities(
        self, images: Sequence[Image.Image]
    ) -> tuple[list[float], list[list[float]]]:
        """(malignant probability per image, class probabilities per image) of ``images``."""
        raise NotImplementedError

    def predict_batch(
        self, images: Sequence[Image.Image], *, thresholds: Thresholds | None = None
    ) -> list[PredictionResult]:
        """``thresholds`` overrides the model's own (a clinic's operating point)."""
        if not images:
            return []
        thresholds = {**self.thresholds, **(thresholds or {})}
        started = time.perf_counter()
        malignant, probabilities = self.batch_probabilities(images)
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(images)
        return read_batch(
            malignant,
            probabilities,
            codes=self.codes,
            classes=self.classes,
            thresholds=thresholds,
            inference_ms=elapsed_ms,
        )

    def predict(
        self, image: Image.Image, *, thresholds: Thresholds | None = None
    ) -> PredictionResult:
        return self.predict_batch([image], thresholds=thresholds)[0]
