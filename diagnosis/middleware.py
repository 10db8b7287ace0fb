"""Middleware of the pages: the user's time zone, and a database outage as a 503.

``TimeZoneMiddleware`` shows every date in the zone the browser reported (cookie ``tz``, set by
``static/js/timezone.js``); an unknown or missing name leaves the default (``TIME_ZONE``).

A database outage answers 503 Service Unavailable with Retry-After, never a 500.

While PostgreSQL is stopped or unreachable every request that needs it fails with
``OperationalError`` (or ``InterfaceError`` on a connection that died under it). Browsers get a
short page, API clients ``{"detail": ...}``; both are told when to retry. Nothing is kept between
requests, so the app recovers by itself as soon as the database answers again (with
``CONN_HEALTH_CHECKS`` a dead persistent connection is replaced rather than reused).
"""

from __future__ import annotations

import logging
import zoneinfo
from functools import cache

from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 30
UNAVAILABLE_MESSAGE = (
    "SkinSense is briefly unavailable (its database is not answering). Try again shortly."
)


def is_database_outage(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


def log_database_outage(request, exc: BaseException) -> None:
    """Log the outage without anything from the request's data or the driver's message (which
    may quote connection parameters or statement values): the error class, its SQLSTATE code when
    the driver gave one, and the method and path."""
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None) or "-"
    logger.error(
        "database unavailable (%s, SQLSTATE %s) on %s %s: answered 503",
        type(cause).__name__,
        sqlstate,
        request.method,
        request.path,
    )


def database_unavailable_response(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": UNAVAILABLE_MESSAGE}, status=503)
    else:
        # Rendered without the request: its context processors would ask the database for the user.
        response = HttpResponse(
            render_to_string("503.html", {"message": UNAVAILABLE_MESSAGE}), status=503
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    response.database_unavailable = True  # SessionMiddleware leaves the session alone
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_database_outage(exception):
            return None
        log_database_outage(request, exception)
        return database_unavailable_response(request)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, for sessions stored in the database that is down.

    With ``SESSION_SAVE_EVERY_REQUEST`` Django reads the session's expiry on every response, 5xx
    included, so an outage would turn our 503 into a 500. A 503 for a database outage leaves the
    session (and its cookie) untouched, and a database failure while saving the session is a 503
    too: the clinician stays logged in once the database is back.
    """

    def process_response(self, request, response):
        if getattr(response, "database_unavailable", False):
            return response
        try:
            return super().process_response(request, response)
        except DATABASE_ERRORS as exc:
            log_database_outage(request, exc)
            response.close()  # replaced, so the server never closes it: release its open file
            return database_unavailable_response(request)


TIME_ZONE_COOKIE = "tz"


@cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone_named(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The IANA time zone of this name ("Europe/Berlin"), or None for a missing or unknown
    one. Only names of the installed time-zone database are looked up: a name is never a
    path."""
    if not name or name not in _known_time_zones():
        return None
    return zoneinfo.ZoneInfo(name)


class TimeZoneMiddleware:
    """Activates the user's time zone (cookie ``tz``) for the request: dates are shown, and
    naive dates read, in it. Without a valid cookie the default zone stays."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with timezone.override(time_zone_named(request.COOKIES.get(TIME_ZONE_COOKIE))):
            return self.get_response(request)
