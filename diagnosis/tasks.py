"""Celery tasks of the clinical side: webhook deliveries."""

from __future__ import annotations

from celery import shared_task

from diagnosis import webhooks

MAX_ATTEMPTS = 6


@shared_task(
    bind=True, acks_late=True, max_retries=MAX_ATTEMPTS - 1, soft_time_limit=60, time_limit=90
)
def deliver_webhook_task(self, delivery_id: int) -> None:
    """POST one webhook delivery; retried with exponential backoff (2, 4, 8, … s), then failed."""
    try:
        webhooks.deliver(delivery_id)
    except webhooks.DeliveryFailed as exc:
        if self.request.retries >= self.max_retries:
            webhooks.mark_failed(delivery_id)
            return
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1))


@shared_task(soft_time_limit=60, time_limit=90)
def resend_pending_webhooks_task() -> int:
    return webhooks.resend_pending()
