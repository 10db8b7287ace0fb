"""Celery tasks: thin, take a primary key, call one service, safe to run twice."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from typing_extensions import override

from diagnosis import services as case_services
from ml import services
from ml.services.notify import review_email_send

logger = logging.getLogger(__name__)

MAX_RETRIES = 3

# Retries with Celery's exponential backoff (about 2, 4, 8 s, with jitter). Time limits are the
# worker's own (skinsense_site/celery.py): these tasks set none, so their messages carry none.
RETRIES = {
    "autoretry_for": (Exception,),
    "retry_backoff": 2,
    "retry_jitter": True,
}


def _shadow_version(model_version_id: int | None):
    """The inactive model version a shadow run uses; None for an ordinary prediction."""
    if model_version_id is None:
        return None
    from ml.models import ModelVersion

    return ModelVersion.objects.filter(pk=model_version_id, is_active=False).first()


class PredictCaseTask(Task):
    @override
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """The last attempt failed: the case is failed with a reason a clinician can read."""
        case_id, model_version_id = (list(args) + [None, None])[:2]
        case_id = kwargs.get("case_id", case_id)
        model_version_id = kwargs.get("model_version_id", model_version_id)
        logger.warning("case %s: prediction failed after retries (%r)", case_id, exc)
        if _shadow_version(model_version_id) is None:
            case_services.case_mark_failed(
                case_id=case_id,
                reason=f"The prediction failed after {self.max_retries + 1} attempts "
                f"({type(exc).__name__}).",
            )


@shared_task(
    base=PredictCaseTask,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    **RETRIES,
)
def predict_case_task(case_id: int, model_version_id: int | None = None) -> None:
    """Predict one case; retried with backoff, marked failed with a reason at last.

    With ``model_version_id`` of a model that is not the active one, this is a shadow run: its
    failures are logged and never touch the case's status.
    """
    shadow_of = _shadow_version(model_version_id)
    if model_version_id is not None and shadow_of is None:
        from ml.models import ModelVersion

        if not ModelVersion.objects.filter(pk=model_version_id).exists():
            logger.warning("case %s: model version %s no longer exists", case_id, model_version_id)
            return
    try:
        services.predict_case(
            case_id=case_id, model_version=shadow_of, shadow=shadow_of is not None
        )
    except services.PermanentPredictionError as exc:
        if shadow_of is not None:
            logger.warning("shadow run of case %s with %s failed: %s", case_id, shadow_of, exc)
            return
        case_services.case_mark_failed(case_id=case_id, reason=str(exc))
    except SoftTimeLimitExceeded:
        if shadow_of is not None:
            return
        case_services.case_mark_failed(
            case_id=case_id,
            reason=f"The prediction took longer than {settings.PREDICT_SOFT_TIME_LIMIT} s "
            "and was stopped.",
        )


class HeatmapTask(Task):
    @override
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """A heatmap is an aid, not the result: the prediction stays without one."""
        logger.error("heatmap of prediction %s failed after retries (%r)", args[:1], exc)


@shared_task(base=HeatmapTask, acks_late=True, reject_on_worker_lost=True, max_retries=2, **RETRIES)
def heatmap_task(prediction_id: int) -> None:
    """The Grad-CAM heatmap of a stored prediction, retried with backoff."""
    try:
        services.prediction_heatmap_compute(prediction_id=prediction_id)
    except services.PermanentPredictionError as exc:
        logger.warning("heatmap of prediction %s: %s", prediction_id, exc)
    except SoftTimeLimitExceeded:
        logger.warning("heatmap of prediction %s: stopped at the time limit", prediction_id)


@shared_task(soft_time_limit=60, time_limit=90)
def requeue_stuck_cases_task() -> int:
    return services.requeue_stuck_cases()


@worker_process_init.connect
def _warm_up_pool_process(**kwargs) -> None:
    """Prefork children load the active model once, before their first task."""
    services.worker_warm_up()


@worker_ready.connect
def _warm_up_solo_worker(sender=None, **kwargs) -> None:
    """Solo/threads pools run tasks in the main process: load the model there once.
    (A prefork parent must not load torch before forking; its children do, above.)"""
    pool_cls = getattr(getattr(sender, "controller", None), "pool_cls", None)
    if pool_cls is not None and "prefork" not in getattr(pool_cls, "__module__", "prefork"):
        services.worker_warm_up()


@shared_task(soft_time_limit=30, time_limit=60, max_retries=5, **RETRIES)
def review_email_task(review_id: int) -> bool:
    return review_email_send(review_id=review_id)
