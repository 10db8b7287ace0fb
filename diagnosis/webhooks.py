"""Webhooks: signed JSON POSTs to a clinic's systems, delivered and retried by Celery.

Signature: ``X-SkinSense-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the
webhook's secret, and ``X-SkinSense-Timestamp`` (Unix seconds) so receivers can refuse replays.
Payloads carry ids and the model's answer, never patient identifiers or images.
In production only https URLs on public addresses are accepted; the address is checked again at
delivery time, so a DNS name that later points inside the network is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from typing_extensions import override

from diagnosis.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from diagnosis.queue import send_task

logger = logging.getLogger(__name__)

DELIVER_TASK = "diagnosis.tasks.deliver_webhook_task"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _addresses(host: str) -> list[ipaddress._BaseAddress]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValidationError(f"The webhook host {host!r} does not resolve ({exc}).")
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def validate_url(url: str) -> None:
    """Refuse what a webhook must never reach (rules relaxed only by explicit settings)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError("The webhook URL must be an absolute https URL.")
    if parts.scheme != "https" and not settings.WEBHOOKS_ALLOW_HTTP:
        raise ValidationError("Webhook URLs must use https.")
    if parts.username or parts.password:
        raise ValidationError("Put no credentials in the webhook URL; use its secret.")
    if settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES:
        return
    for address in _addresses(parts.hostname):
        if not address.is_global or address.is_multicast:
            raise ValidationError(
                "Webhooks cannot be sent to loopback, private, link-local or reserved addresses."
            )


def dispatch(*, clinic, event: WebhookEvent, payload: dict) -> list[int]:
    """Create a delivery for each active webhook of the clinic that wants this event, and send
    them once the current transaction commits."""
    deliveries = [
        WebhookDelivery.objects.create(webhook=hook, event=event, payload=payload)
        for hook in Webhook.objects.filter(clinic=clinic, is_active=True)
        if event in hook.events
    ]
    ids = [d.pk for d in deliveries]
    if ids:

        def send():
            for delivery_id in ids:  # not sent (broker down): stays pending, resent later
                _send_delivery(delivery_id)

        transaction.on_commit(send)
    return ids


def _send_delivery(delivery_id: int) -> bool:
    return send_task(DELIVER_TASK, f"webhook delivery {delivery_id}", delivery_id)


class DeliveryFailed(Exception):
    pass


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere (inside the network too): treat it as a failure."""

    @override
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_RefuseRedirects)


def deliver(delivery_id: int) -> WebhookDelivery:
    """POST one delivery. Raises DeliveryFailed (after recording why) so the task retries."""
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    if delivery.status == DeliveryStatus.SUCCEEDED:
        return delivery
    hook = delivery.webhook
    body = json.dumps(
        {"event": delivery.event, "delivery": delivery.pk, **delivery.payload},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    timestamp = int(time.time())
    delivery.attempts += 1
    try:
        validate_url(hook.url)
        request = urllib.request.Request(  # noqa: S310 - scheme checked by validate_url
            hook.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SkinSense-Webhook/1",
                "X-SkinSense-Event": delivery.event,
                "X-SkinSense-Delivery": str(delivery.pk),
                "X-SkinSense-Timestamp": str(timestamp),
                "X-SkinSense-Signature": sign(hook.secret, timestamp, body),
            },
        )
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as answer:
            delivery.last_status_code = answer.status
    except urllib.error.HTTPError as exc:
        delivery.last_status_code = exc.code
        delivery.last_error = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValidationError) as exc:
        delivery.last_error = str(getattr(exc, "reason", None) or exc)[:500]
    else:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = timezone.now()
        delivery.last_error = ""
    delivery.save()
    if delivery.status != DeliveryStatus.SUCCEEDED:
        raise DeliveryFailed(delivery.last_error)
    return delivery


def mark_failed(delivery_id: int) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(status=DeliveryStatus.SUCCEEDED).update(
        status=DeliveryStatus.FAILED
    )


def resend_pending(*, older_than_seconds: int = 600) -> int:
    """Queue again the deliveries that never got a first attempt (the broker was down)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    pending = WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, attempts=0, created_at__lt=cutoff
    ).values_list("pk", flat=True)[:1000]
    return sum(_send_delivery(delivery_id) for delivery_id in pending)
