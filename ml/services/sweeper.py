"""The periodic sweeper: sends again what waited too long (a lost message, a broker outage, a
worker killed mid-task)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from diagnosis.models import Case, CaseStatus, not_withdrawn
from ml.models import Prediction
from ml.services.queue import enqueue_heatmap, enqueue_prediction

BATCH = 1000  # at most this many of each kind per sweep


def requeue_stuck_cases() -> int:
    """Enqueue again the stuck cases, and the heatmaps of the last day still missing; returns
    how many were sent."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.CASE_REQUEUE_AFTER_SECONDS)
    processing_cutoff = now - timedelta(seconds=settings.PREDICT_TIME_LIMIT * 2)
    stuck = (  # Case.objects: withdrawn cases are never sent again
        Case.objects.filter(status=CaseStatus.QUEUED, enqueued_at__lt=cutoff)
        | Case.objects.filter(status=CaseStatus.QUEUED, enqueued_at__isnull=True)
        | Case.objects.filter(status=CaseStatus.PROCESSING, updated_at__lt=processing_cutoff)
    )
    count = sum(
        enqueue_prediction(case_id=case_id)
        for case_id in stuck.values_list("pk", flat=True)[:BATCH]
    )
    if settings.PREDICTION_HEATMAPS:
        missing = Prediction.objects.filter(
            not_withdrawn("case"),
            heatmap="",
            created_at__lt=cutoff,
            created_at__gte=now - timedelta(days=1),
        )
        count += sum(
            enqueue_heatmap(prediction_id=prediction_id)
            for prediction_id in missing.values_list("pk", flat=True)[:BATCH]
        )
    return count
