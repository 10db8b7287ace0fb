"""DRF's exception handler, plus 503 + Retry-After when the database is not answering."""

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from diagnosis.middleware import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    is_database_outage,
    log_database_outage,
)


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
    return drf_exception_handler(exc, context)
