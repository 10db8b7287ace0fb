"""Idempotency-Key for case uploads: a client may retry a POST without creating a second case."""

from __future__ import annotations

import hashlib
import json

from django.db import IntegrityError, transaction
from rest_framework.exceptions import APIException

from diagnosis.models import IdempotencyKey


class IdempotencyConflict(APIException):
    status_code = 409
    default_detail = "This Idempotency-Key was already used with a different request."
    default_code = "idempotency_conflict"


def fingerprint(data: dict) -> str:
    """SHA-256 over the request's fields and the image's bytes."""
    upload = data["image"]
    upload.seek(0)
    image = hashlib.sha256()
    for chunk in upload.chunks():
        image.update(chunk)
    upload.seek(0)
    fields = {
        "lesion": data["lesion"].pk,
        "image": image.hexdigest(),
        "image_type": data.get("image_type", ""),
        "notes": data.get("notes", ""),
        "captured_at": data["captured_at"].isoformat() if data.get("captured_at") else None,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def lookup(*, user, key: str, fingerprint: str) -> IdempotencyKey | None:
    stored = IdempotencyKey.objects.filter(user=user, key=key).first()
    if stored is not None and stored.request_sha256 != fingerprint:
        raise IdempotencyConflict()
    return stored


def remember(*, user, key: str, fingerprint: str, case, response_status: int) -> None:
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                user=user,
                key=key,
                request_sha256=fingerprint,
                case=case,
                response_status=response_status,
            )
    except IntegrityError:
        lookup(user=user, key=key, fingerprint=fingerprint)  # a concurrent twin: same or 409
