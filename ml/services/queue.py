"""Sending work to the Celery workers, by task name: the web tier enqueues without importing
the task modules (and the model code behind them). What a broker outage kept from being sent,
the periodic sweeper sends again."""

from __future__ import annotations

from diagnosis import services as case_services
from diagnosis.queue import send_task
from ml.models import ModelVersion

PREDICT_TASK = "ml.tasks.predict_case_task"
HEATMAP_TASK = "ml.tasks.heatmap_task"


def enqueue_prediction(*, case_id: int) -> bool:
    """Send the case to the inference queue; a case not sent stays ``queued`` for the sweeper."""
    case_services.case_mark_enqueued(case_id=case_id)
    return send_task(PREDICT_TASK, f"case {case_id}", case_id)


def enqueue_heatmap(*, prediction_id: int) -> bool:
    """Send a stored prediction to the heatmap queue."""
    return send_task(HEATMAP_TASK, f"the heatmap of prediction {prediction_id}", prediction_id)


def shadow_run_enqueue(*, case_ids: list[int], model_version: ModelVersion) -> int:
    """Re-run cases with another model version, for comparison; their shown results stay.
    Returns how many were sent."""
    return sum(
        send_task(
            PREDICT_TASK,
            f"a shadow run of case {case_id}",
            case_id,
            model_version_id=model_version.pk,
        )
        for case_id in case_ids
    )
