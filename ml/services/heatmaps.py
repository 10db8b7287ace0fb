"""The Grad-CAM heatmap of a stored prediction, drawn after the result is shown (PyTorch,
whatever the serving backend) and stored as a private file."""

from __future__ import annotations

from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction

from ml.models import Prediction
from ml.services.predictors import load_case_image, torch_predictor_for


def prediction_heatmap_compute(*, prediction_id: int) -> bool:
    """Compute and store the heatmap of a stored prediction. Idempotent: a prediction that has
    one is left alone. Returns whether a heatmap was stored."""
    prediction = (
        Prediction.objects.select_related("case", "model_version").filter(pk=prediction_id).first()
    )
    if prediction is None or prediction.heatmap:
        return False
    predictor = torch_predictor_for(prediction.model_version)
    image = load_case_image(prediction.case, predictor.preprocessing)
    png = _heatmap_png(predictor, image)
    stored = None
    try:
        with transaction.atomic():
            locked = Prediction.objects.select_for_update().get(pk=prediction_id)
            if locked.heatmap:
                return False
            stored = _attach_heatmap(locked, png)
    except BaseException:
        if stored:  # the row that would name it was rolled back: leave no orphan
            Prediction.heatmap.field.storage.delete(stored)
        raise
    return True


def _heatmap_png(predictor: Any, image: Any) -> bytes:
    from ml.engine.serve.gradcam import render_overlay

    cam = predictor.grad_cam(image)
    png: bytes = render_overlay(
        cam, width=image.width, height=image.height, preprocessing=predictor.preprocessing
    )
    return png


def _attach_heatmap(prediction: Prediction, png: bytes) -> str:
    """Store the heatmap privately and name it on the prediction; returns the stored name.
    A heatmap it replaces is deleted once the transaction commits."""
    previous = prediction.heatmap.name or None
    storage = prediction.heatmap.storage
    prediction.heatmap.save("heatmap.png", ContentFile(png), save=False)
    stored = prediction.heatmap.name
    try:
        prediction.save(update_fields=["heatmap"])
    except BaseException:
        storage.delete(stored)
        raise
    if previous and previous != stored:
        transaction.on_commit(lambda: storage.delete(previous))
    return stored
