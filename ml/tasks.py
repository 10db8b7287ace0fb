"""Celery tasks: thin, take a primary key, call one service, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

from ml import services

logger = logging.getLogger(__name__)

MAX_RETRIES = 3


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def predict_case_task(self, case_id: int, model_version_id: int | None = None) -> None:
    """Predict one case; retried with exponential backoff, marked failed with a reason at last.

    With ``model_version_id`` of a model that is not the active one, this is a shadow run: its
    failures are logged and never touch the case's status.
    """
    shadow_of = None
    if model_version_id is not None:
        from ml.models import ModelVersion

        shadow_of = ModelVersion.objects.filter(pk=model_version_id, is_active=False).first()
        if shadow_of is None and not ModelVersion.objects.filter(pk=model_version_id).exists():
            logger.warning("case %s: model version %s no longer exists", case_id, model_version_id)
            return
    try:
        services.predict_case(
            case_id=case_id,
            model_version=shadow_of,
            shadow=shadow_of is not None,
        )
    except services.PermanentPredictionError as exc:
        if shadow_of is not None:
            logger.warning("shadow run of case %s with %s failed: %s", case_id, shadow_of, exc)
            return
        services.case_mark_failed(case_id=case_id, reason=str(exc))
    except SoftTimeLimitExceeded:
        if shadow_of is not None:
            return
        services.case_mark_failed(
            case_id=case_id,
            reason=f"The prediction took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s "
            "and was stopped.",
        )
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            logger.exception("case %s: prediction failed after retries", case_id)
            if shadow_of is not None:
                return
            services.case_mark_failed(
                case_id=case_id,
                reason=f"The prediction failed after {self.max_retries + 1} attempts "
                f"({type(exc).__name__}).",
            )
            return
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1))


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=2,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def heatmap_task(self, prediction_id: int) -> None:
    """The Grad-CAM heatmap of a stored prediction. A heatmap is an aid, not the result: after
    its retries a failure is logged and the prediction stays without one."""
    try:
        services.prediction_heatmap_compute(prediction_id=prediction_id)
    except services.PermanentPredictionError as exc:
        logger.warning("heatmap of prediction %s: %s", prediction_id, exc)
    except SoftTimeLimitExceeded:
        logger.warning("heatmap of prediction %s: stopped at the time limit", prediction_id)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            logger.exception("heatmap of prediction %s failed after retries", prediction_id)
            return
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1))


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
