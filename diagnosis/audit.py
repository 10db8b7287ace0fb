"""The audit trail: one call records who did what to which object, from which address.

The client address of the current request is kept in a context variable by
``AuditContextMiddleware``, so services record it without being handed the request.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging

from django.conf import settings

from diagnosis.models import AuditAction, AuditEvent

logger = logging.getLogger(__name__)
_client_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)


def client_ip(request) -> str | None:
    """The client's address, for the audit trail and the login lockout (django-axes).

    Behind a reverse proxy (``USE_X_FORWARDED_FOR``) it is the right-most X-Forwarded-For entry:
    the one our proxy added. Entries to its left come from the client and could be anything, so
    trusting them would let a client pick a fresh address for every login attempt (and a value
    that is not an address at all could not be stored)."""
    if settings.USE_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR") or None


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _client_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            _client_ip.reset(token)


def audit_record(
    *,
    action: AuditAction | str,
    actor=None,
    clinic=None,
    target=None,
    target_type: str = "",
    target_id: str | int = "",
    detail: dict | None = None,
    actor_username: str = "",
) -> AuditEvent:
    """Append one audit event. ``target`` may be a model instance (type and pk are taken from it).
    ``detail`` must hold no patient identifiers, tokens or image bytes."""
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target.pk
        if clinic is None:
            clinic = getattr(target, "clinic", None)
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_username=actor_username or (user.get_username() if user else ""),
        clinic=clinic,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id != "" else "",
        ip=_client_ip.get(),
        detail=detail or {},
    )
