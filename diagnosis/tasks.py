"""Celery tasks of the clinical side: webhook deliveries."""

from __future__ import annotations

from celery import Task, shared_task
from typing_extensions import override

from diagnosis import webhooks

MAX_ATTEMPTS = 6


class DeliverWebhookTask(Task):
    @override
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """The last attempt was refused or unanswered: the delivery is failed."""
        if isinstance(exc, webhooks.DeliveryFailed):
            webhooks.mark_failed(kwargs.get("delivery_id", args[0] if args else None))


@shared_task(
    base=DeliverWebhookTask,
    acks_late=True,
    autoretry_for=(webhooks.DeliveryFailed,),
    retry_backoff=2,
    retry_jitter=True,
    max_retries=MAX_ATTEMPTS - 1,
    soft_time_limit=60,
    time_limit=90,
)
def deliver_webhook_task(delivery_id: int) -> None:
    """POST one webhook delivery; retried with Celery's exponential backoff, then failed."""
    webhooks.deliver(delivery_id)


@shared_task(soft_time_limit=60, time_limit=90)
def resend_pending_webhooks_task() -> int:
    return webhooks.resend_pending()
