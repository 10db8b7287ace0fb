"""What ``ml`` does when the clinical records change: a queued case is sent to the model."""

from django.dispatch import receiver

from diagnosis.signals import case_queued
from ml.services import queue


@receiver(case_queued, dispatch_uid="ml_enqueue_prediction")
def _enqueue_prediction(*, case_id: int, **kwargs) -> None:
    queue.enqueue_prediction(case_id=case_id)
