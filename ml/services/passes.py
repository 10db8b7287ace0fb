"""One forward pass over claimed cases: read their images, run the model once, read each
result with its clinic's threshold, store it, and send its heatmap to be drawn."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import transaction

from diagnosis import services as case_services
from diagnosis import webhooks
from diagnosis.models import Case
from ml.models import ModelVersion, Prediction
from ml.services.errors import PermanentPredictionError
from ml.services.operating_point import clinic_thresholds
from ml.services.predictors import load_case_image, predictor_for
from ml.services.queue import enqueue_heatmap
from ml.webhook_payloads import prediction_payload

logger = logging.getLogger(__name__)


def run_pass(
    cases: list[Case], primary: Case | None, model_version: ModelVersion, *, shadow: bool
) -> list[Prediction]:
    """Predict the claimed cases in one pass and store each result. An unreadable image fails
    its own case; only the ``primary`` case's raises."""
    started = time.perf_counter()
    predictor = predictor_for(model_version)
    loaded = _load_images(cases, primary, predictor.preprocessing)
    if not loaded:
        return []
    read = time.perf_counter()
    results = _predict_for_clinics(
        predictor, [image for _, image in loaded], [c for c, _ in loaded], model_version
    )
    inferred = time.perf_counter()
    predictions = [
        _store_prediction(claimed, model_version, result, shadow=shadow)
        for (claimed, _), result in zip(loaded, results, strict=True)
    ]
    stored = time.perf_counter()
    # The result is stored and shown first; its Grad-CAM heatmap follows as a task of its own
    # (queue "heatmaps": about two more passes through the model, and it needs PyTorch).
    for prediction in predictions:
        if settings.PREDICTION_HEATMAPS and not prediction.heatmap:
            enqueue_heatmap(prediction_id=prediction.pk)
    stages = (
        f"read {(read - started) * 1000:.0f} ms, model {(inferred - read) * 1000:.0f} ms, "
        f"store {(stored - inferred) * 1000:.0f} ms, "
        f"heatmap enqueue {(time.perf_counter() - stored) * 1000:.0f} ms"
    )
    ids = ", ".join(str(c.pk) for c, _ in loaded)
    each = results[0].inference_ms
    if len(loaded) > 1:
        logger.info(
            "cases %s predicted in one pass of %d (%.0f ms each; %s)",
            ids,
            len(loaded),
            each,
            stages,
        )
    else:
        logger.info("case %s done in %.0f ms (%s)", ids, each, stages)
    return predictions


def _load_images(
    cases: list[Case], primary: Case | None, preprocessing: dict[str, Any]
) -> list[tuple[Case, Any]]:
    loaded, unreadable = [], []
    for claimed in cases:
        try:
            loaded.append((claimed, load_case_image(claimed, preprocessing)))
        except PermanentPredictionError as exc:
            if primary is not None and claimed.pk == primary.pk:
                raise
            unreadable.append((claimed, exc))  # a companion's own problem: its own failure
    for claimed, exc in unreadable:
        case_services.case_mark_failed(case_id=claimed.pk, reason=str(exc))
    return loaded


def _predict_for_clinics(
    predictor: Any, images: list[Any], cases: list[Case], model_version: ModelVersion
) -> list[Any]:
    """One forward pass for all the images; each result read with its clinic's threshold."""
    from ml.engine.serve.base import read_heads

    by_clinic = {c.clinic_id: clinic_thresholds(c.clinic_id, model_version) for c in cases}
    judged = []
    for case, result in zip(cases, predictor.predict_batch(images), strict=True):
        own = by_clinic[case.clinic_id]
        if own:
            result = read_heads(
                malignant_probability=result.malignant_probability,
                diagnosis_probabilities=result.diagnosis_probabilities,
                classes=predictor.classes,
                thresholds={**predictor.thresholds, **own},
                inference_ms=result.inference_ms,
            )
        judged.append(result)
    return judged


def _store_prediction(
    case: Case, model_version: ModelVersion, result: Any, *, shadow: bool
) -> Prediction:
    with transaction.atomic():
        prediction, _ = Prediction.objects.update_or_create(
            case=case,
            model_version=model_version,
            defaults={
                "malignant_probability": result.malignant_probability,
                "malignant_threshold": result.malignant_threshold,
                "diagnosis_probabilities": result.diagnosis_probabilities,
                "top_diagnosis": result.top_diagnosis,
                "top_probability": result.top_probability,
                "category": result.category,
                "uncertain": result.uncertain,
                "inference_ms": result.inference_ms,
                "shadow": shadow,
            },
        )
        if not shadow:
            case_services.case_mark_done(case_id=case.pk)
            webhooks.dispatch(
                clinic=case.clinic,
                event=webhooks.WebhookEvent.PREDICTION_COMPLETED,
                payload=prediction_payload(prediction),
            )
    return prediction
