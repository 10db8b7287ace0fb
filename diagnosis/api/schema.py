"""The OpenAPI schema's error responses, in one place.

Every error body is ``ErrorDetail`` (``{"detail": "..."}``: 401, 403, 404, 409, 429, 503) or
``ValidationError`` (``{"field": ["message", ...]}``: 400), as DRF's exception handler makes
them. ``AutoSchema.error_statuses`` says which an operation can really return; a view adds its
own with ``extend_schema(responses=...)`` or a ``documented_errors`` attribute keyed by action or
method (``{"list": {403: "Only clinic admins ..."}}``, or ``"action.method"``).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance, is_serializer
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.throttling import ScopedRateThrottle

from diagnosis.middleware import UNAVAILABLE_MESSAGE

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

ERROR_DETAIL_SCHEMA = {
    "type": "object",
    "description": "An error with one message (DRF's shape).",
    "properties": {"detail": {"type": "string", "description": "What went wrong, for people."}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Invalid input: each offending field (or `non_field_errors`, or `detail` for a malformed "
        "body) maps to its messages. A field usually maps to a list of messages; it may map to "
        "one message, or to an object for a nested field or a list item (keyed by its index)."
    ),
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "string"},
            {"type": "object"},
        ]
    },
}
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}

DEFAULT_DESCRIPTIONS = {
    400: "Invalid input: the messages say which field and why.",
    401: "No token (or session), or the token is invalid or revoked.",
    403: "Not allowed: your role may not do this, or (session authentication) the CSRF check "
    "failed.",
    404: "Not found: no such object, or it belongs to a clinic you are not a member of.",
    409: "Conflict with the current state.",
    429: "Too many requests: wait for Retry-After seconds.",
    503: "The database is not answering: retry after Retry-After seconds.",
}
LIST_404 = "The page does not exist (past the last page)."
EXAMPLE_BODIES = {
    400: {"field": ["This field is required."]},
    401: {"detail": "Authentication credentials were not provided."},
    403: {"detail": "You do not have permission to perform this action."},
    404: {"detail": "No Case matches the given query."},
    409: {"detail": "This Idempotency-Key was already used with a different request."},
    429: {"detail": "Request was throttled. Expected available in 42 seconds."},
    503: {"detail": UNAVAILABLE_MESSAGE},
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema plus the error responses each operation can return."""

    def _component(self, name: str, schema: dict) -> dict:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        self.registry.register_on_missing(component)
        return component.ref

    # What the view does --------------------------------------------------------------------

    def _action_name(self) -> str:
        return getattr(self.view, "action", None) or self.method.lower()

    def _declared_errors(self) -> dict[int, tuple[str, object]]:
        """``documented_errors[action]``: ``{code: description}`` or ``{code: (description,
        example body)}``; without a body, the example is ``{"detail": description}``."""
        declared = getattr(self.view, "documented_errors", {}) or {}
        action = self._action_name()
        entries = {
            **declared.get(action, {}),
            **declared.get(f"{action}.{self.method.lower()}", {}),
        }
        errors = {}
        for code, value in entries.items():
            description, body = value if isinstance(value, tuple) else (value, None)
            errors[int(code)] = (description, body)
        return errors

    def _needs_authentication(self) -> bool:
        permissions = self.view.get_permissions()
        if any(isinstance(p, AllowAny) for p in permissions):
            return False
        return any(isinstance(p, IsAuthenticated) for p in permissions)

    def _accepts_session(self) -> bool:
        return any(isinstance(a, SessionAuthentication) for a in self.view.get_authenticators())

    def _is_throttled(self) -> bool:
        for throttle in self.view.get_throttles():
            if not isinstance(throttle, ScopedRateThrottle):
                return True
            scope = getattr(self.view, throttle.scope_attr, None)
            if scope and scope in throttle.THROTTLE_RATES:
                return True
        return False

    def _has_validated_query(self) -> bool:
        if self.method != "GET" or not self._is_list_view():
            return False
        return bool(
            getattr(self.view, "filterset_class", None)
            or getattr(self.view, "filterset_fields", None)
        )

    def _has_request_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None

    def error_statuses(self) -> dict[int, str]:
        """The errors this operation can return: 400 for writes with a body, validated list
        queries and where declared; 401 where authentication is needed; 403 for writes that
        accept session authentication (CSRF) and declared role checks; 404 for one object (a
        path id), paginated lists (a page past the end) and where declared; 429 (Retry-After)
        when throttled; 503 (Retry-After) always (the database is not answering)."""
        errors: dict[int, str] = {}
        if self._has_request_body() or self._has_validated_query():
            errors[400] = DEFAULT_DESCRIPTIONS[400]
        if self._needs_authentication():
            errors[401] = DEFAULT_DESCRIPTIONS[401]
            if self.method in WRITE_METHODS and self._accepts_session():
                errors[403] = DEFAULT_DESCRIPTIONS[403]
        if "{" in self.path:
            errors[404] = DEFAULT_DESCRIPTIONS[404]
        elif self.method == "GET" and self._is_list_view() and self._get_paginator():
            errors[404] = LIST_404
        if self._is_throttled():
            errors[429] = DEFAULT_DESCRIPTIONS[429]
        errors[503] = DEFAULT_DESCRIPTIONS[503]
        errors.update({code: d for code, (d, _) in self._declared_errors().items()})
        return errors

    # The responses --------------------------------------------------------------------------

    def _model_name(self) -> str | None:
        """The model a path id looks up (what ``get_object`` says it did not find)."""
        try:
            queryset = self.view.get_queryset()  # lazy: nothing is queried
        except Exception:  # noqa: BLE001 - a view that cannot say: a generic message
            return None
        model = getattr(queryset, "model", None)
        return model._meta.object_name if model is not None else None

    def _example_body(self, code: int, description: str, declared: bool):
        body = self._declared_errors().get(code, (None, None))[1]
        if body is not None:
            return body
        if code == 400:
            return self._validation_example()
        if declared:
            return {"detail": description}
        if code == 404:
            if description == LIST_404:
                return {"detail": "Invalid page."}
            name = self._model_name()
            return {"detail": f"No {name} matches the given query." if name else "Not found."}
        return EXAMPLE_BODIES.get(code, {"detail": description})

    def _validation_example(self) -> dict:
        """A 400 body: the first required field of the request body, else the first validated
        query parameter, else the generic one."""
        serializer = self.get_request_serializer() if self._has_request_body() else None
        if isinstance(serializer, dict):
            serializer = next(iter(serializer.values()), None)
        serializer = force_instance(serializer)
        fields = serializer.fields if is_serializer(serializer) else {}
        required = [n for n, f in fields.items() if f.required and not f.read_only]
        if required:
            return {required[0]: ["This field is required."]}
        if self._has_validated_query():
            names = [p["name"] for p in self._get_filter_parameters()]
            names = [n for n in names if n not in ("search", "ordering")]
            if names:
                return {names[0]: ["Enter a valid value."]}
        return EXAMPLE_BODIES[400]

    def _error_response(self, code: int, description: str, declared: bool = False) -> dict:
        if code == 400:
            schema = self._component("ValidationError", VALIDATION_ERROR_SCHEMA)
        else:
            schema = self._component("ErrorDetail", ERROR_DETAIL_SCHEMA)
        example = self._example_body(code, description, declared)
        response = {
            "content": {
                "application/json": {
                    "schema": schema,
                    "examples": {f"Error{code}": {"value": example, "summary": description}},
                }
            },
            "description": description,
        }
        if code in (429, 503):
            response["headers"] = dict(RETRY_AFTER_HEADER)
        return response

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        declared = self._declared_errors()
        for code, description in self.error_statuses().items():
            if str(code) not in responses:
                responses[str(code)] = self._error_response(code, description, code in declared)
        # Declared with @extend_schema and a description only: the real shape and an example
        # whose message is that description.
        for code, existing in list(responses.items()):
            if code.isdigit() and int(code) >= 400 and not existing.get("content"):
                description = existing.get("description", "")
                responses[code] = self._error_response(int(code), description, declared=True)
        return dict(sorted(responses.items()))
