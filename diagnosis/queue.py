"""Sending a Celery task by its name, for both apps: the sender needs no import of the task
module (no import cycle, and a web process never loads what the task runs). A broker outage is
logged, never raised: each caller has a sweeper that sends again what was not sent."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app

logger = logging.getLogger(__name__)


def send_task(task: str, what: str, *args: Any, **kwargs: Any) -> bool:
    """Send one message (run at once where tasks are eager: a signature by name runs the
    registered task's own ``apply_async``); False when the broker is down."""
    try:
        current_app.signature(task, args=args, kwargs=kwargs).apply_async(retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds when the broker is down
        logger.warning("could not enqueue %s (%s); it is sent again later", what, exc)
        return False
    return True
