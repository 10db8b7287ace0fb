"""The Celery application. Configured from Django settings (namespace CELERY_)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skinsense_site.settings")

app = Celery("skinsense")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
