"""DRF's exception handler, extended once for the whole API.

- A database outage answers 503 with Retry-After.
- A Django ``ValidationError`` or ``PermissionDenied`` raised by a service becomes DRF's 400 or
  403 with the service's own message, so views call services without translating errors. Field
  errors keep their fields; a message without a field goes under the field the view names for
  the action (``django_error_field``: a name, or a dict by action), else ``non_field_errors``.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from diagnosis.middleware import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    is_database_outage,
    log_database_outage,
)


def _field_for(view) -> str:
    field = getattr(view, "django_error_field", None)
    if isinstance(field, dict):
        field = field.get(getattr(view, "action", None))
    return field or api_settings.NON_FIELD_ERRORS_KEY


def from_django(exc: Exception, view=None) -> Exception:
    """The DRF exception for a Django one (anything else is returned as it is)."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({_field_for(view): exc.messages})
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def exception_handler(exc, context):
    if is_database_outage(exc):
        log_database_outage(context["request"], exc)
        response = Response(
            {"detail": UNAVAILABLE_MESSAGE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )
        response.database_unavailable = True  # SessionMiddleware leaves the session alone
        return response
    return drf_exception_handler(from_django(exc, context.get("view")), context)
