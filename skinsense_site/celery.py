"""The Celery application. Configured from Django settings (namespace CELERY_)."""

import os

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skinsense_site.settings")

app = Celery("skinsense")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def _worker_time_limits(conf, **kwargs) -> None:
    """Time limits are the worker's (PREDICT_SOFT_TIME_LIMIT, PREDICT_TIME_LIMIT): set here, in
    the worker only, a sender's task classes carry none and so do its messages."""
    from django.conf import settings

    conf.task_soft_time_limit = settings.PREDICT_SOFT_TIME_LIMIT
    conf.task_time_limit = settings.PREDICT_TIME_LIMIT
