"""What a locked-out login sees (django-axes calls ``lockout_response``; the API token view too).

A username that failed ``AXES_FAILURE_LIMIT`` times from one address is refused from that address
for ``AXES_COOLOFF_TIME``: 429 Too Many Requests with Retry-After, a page for the web login and
``{"detail": ...}`` for the API.
"""

from __future__ import annotations

import math

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

USERNAME_MAX_LENGTH = 150  # django.contrib.auth's User.username


def attempted_username(request, credentials=None) -> str | None:
    """The username a login attempt names, as django-axes counts it: cut to the longest a username
    can be (150). A longer one names no user, and axes's table (255) would refuse to store it,
    turning a failed login into a server error."""
    if credentials:
        username = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        data = getattr(request, "data", None) or request.POST
        username = data.get(settings.AXES_USERNAME_FORM_FIELD)
    return None if username is None else str(username)[:USERNAME_MAX_LENGTH]


def cool_off_seconds(request=None) -> int:
    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else 0


def lockout_message(request=None) -> str:
    minutes = math.ceil(cool_off_seconds(request) / 60)
    return (
        f"Too many failed logins for this user from your address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


def lockout_response(request, *args, **kwargs):  # axes also passes its response, credentials
    seconds = cool_off_seconds(request)
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": lockout_message(request)}, status=429)
    else:
        context = {
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_minutes": math.ceil(seconds / 60),
        }
        response = render(request, "registration/locked_out.html", context, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
