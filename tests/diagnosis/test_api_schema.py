"""The OpenAPI schema documents every operation's bodies, examples and errors, and the API's
real error bodies match it; integers the database cannot hold are a 400 (query) or a 404
(path), never a 500 (runs on SQLite and, with DATABASE_URL, on PostgreSQL)."""

import copy

import jsonschema
import pytest
from django.db import OperationalError
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from diagnosis import services
from diagnosis.models import Role
from ml import selectors as ml_selectors
from tests import images
from tests.conftest import api_client_for, upload
from tests.factories import LesionFactory, MembershipFactory, PatientFactory, predicted_case

METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch", "delete")
HUGE_INTEGERS = [
    str(2**63),
    str(-(2**63) - 1),
    str(10**40),
    "-4.778667978003329e+148",
    "1e400",
]


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(schema, node):
    """The node with every $ref inlined and OpenAPI 3.0's ``nullable`` as JSON Schema's null."""
    if isinstance(node, list):
        return [resolve(schema, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return resolve(schema, schema["components"]["schemas"][name])
    node = {k: resolve(schema, v) for k, v in node.items()}
    if node.pop("nullable", False):
        node = {"anyOf": [node, {"type": "null"}]}
    return node


def response_schema(schema, path, method, status):
    responses = schema["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    content = responses[str(status)]["content"]["application/json"]
    return resolve(schema, content["schema"])


def assert_documented(schema, path, method, response, status):
    assert response.status_code == status, (response.status_code, response.content[:300])
    jsonschema.validate(response.json(), response_schema(schema, path, method, status))


# --- the schema itself ---------------------------------------------------------------------


def _success_problems(name: str, method: str, op: dict, success: dict) -> list[str]:
    """Every 2xx has a body schema and a JSON example; the operation has some example."""
    problems = [] if success else [f"{name}: no 2xx response"]
    for code, response in success.items():
        if code == "204":
            continue
        content = response.get("content") or {}
        if not any("schema" in body for body in content.values()):
            problems.append(f"{name}: {code} without a body schema")
        json_body = content.get("application/json")
        if json_body is not None and not json_body.get("examples"):
            problems.append(f"{name}: {code} without an example")
    bodies = [*op.get("requestBody", {}).get("content", {}).values()]
    bodies += [b for r in op["responses"].values() for b in (r.get("content") or {}).values()]
    if not any(body.get("examples") for body in bodies):
        problems.append(f"{name}: no example at all")
    request_bodies = op.get("requestBody", {}).get("content", {}).values()
    if method in ("post", "put", "patch") and op.get("requestBody"):
        if not any(b.get("examples") for b in request_bodies):
            problems.append(f"{name}: request body without an example")
    return problems


def _is_list(op: dict) -> bool:
    ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {})
    return "Paginated" in ok.get("schema", {}).get("$ref", "")


def _expected_errors(path: str, method: str, op: dict) -> set[str]:
    expected = {"503"}
    if {} not in op.get("security", [{}]):
        expected.add("401")
    if "{" in path or (method == "get" and _is_list(op)):
        expected.add("404")  # an object not yours, or a page past the end
    if method in ("post", "put", "patch") and op.get("requestBody"):
        expected.add("400")
    return expected


def _error_problems(name: str, path: str, method: str, op: dict) -> list[str]:
    """The expected errors are documented, each as its schema with an example."""
    responses = op["responses"]
    missing = _expected_errors(path, method, op) - set(responses)
    problems = [f"{name}: missing {sorted(missing)}"] if missing else []
    for code, response in responses.items():
        if int(code) < 400:
            continue
        body = (response.get("content") or {}).get("application/json")
        want = "ValidationError" if code == "400" else "ErrorDetail"
        if body is None or body["schema"] != {"$ref": f"#/components/schemas/{want}"}:
            problems.append(f"{name}: {code} is not documented as {want}")
        elif not body.get("examples"):
            problems.append(f"{name}: {code} without an example")
        if code in ("429", "503") and "Retry-After" not in response.get("headers", {}):
            problems.append(f"{name}: {code} without Retry-After")
    # Not a list, not one object: a 404 only where the view says why.
    can_404 = ("/api/v1/models/active/", "/api/v1/exports/predictions.csv")
    if method == "get" and "{" not in path and not _is_list(op):
        if "404" in responses and path not in can_404:
            problems.append(f"{name}: claims a 404 it cannot return")
    return problems


def test_every_operation_documents_its_bodies_examples_and_errors(schema):
    problems = []
    ops = list(operations(schema))
    assert len(ops) >= 35
    for path, method, op in ops:
        name = f"{method.upper()} {path}"
        success = {c: r for c, r in op["responses"].items() if c.startswith("2")}
        problems += _success_problems(name, method, op, success)
        problems += _error_problems(name, path, method, op)
    assert not problems, "\n".join(problems)


def test_errors_are_documented_where_the_api_returns_them(schema):
    ops = {(m, p): op["responses"] for p, m, op in operations(schema)}
    # Role checks
    for method, path in [
        ("get", "/api/v1/audit-events/"),
        ("get", "/api/v1/memberships/"),
        ("get", "/api/v1/review-queue/"),
        ("get", "/api/v1/exports/predictions.csv"),
        ("post", "/api/v1/cases/{id}/reviews/"),
    ]:
        assert "403" in ops[(method, path)], (method, path)
    # Read-only, unrestricted operations claim no 403; the token endpoint no 401.
    assert "403" not in ops[("get", "/api/v1/cases/{id}/")]
    assert "403" not in ops[("get", "/api/v1/cases/{id}/reviews/")]
    assert "401" not in ops[("post", "/api/v1/auth/token/")]
    assert "400" not in ops[("get", "/api/v1/cases/{id}/")]
    assert "400" not in ops[("get", "/api/v1/me/")]
    # Retries and limits
    assert {"409", "429"} <= set(ops[("post", "/api/v1/cases/")])
    assert "409" in ops[("post", "/api/v1/cases/{id}/reviews/")]
    assert "429" in ops[("post", "/api/v1/auth/token/")]
    assert "429" not in ops[("get", "/api/v1/cases/")]


def test_every_example_matches_the_schema_it_illustrates(schema):
    checked = 0
    for path, method, op in operations(schema):
        bodies = [
            (f"{method} {path} request", b)
            for b in op.get("requestBody", {}).get("content", {}).values()
        ]
        for code, response in op["responses"].items():
            for media, body in (response.get("content") or {}).items():
                if media == "application/json":
                    bodies.append((f"{method} {path} {code}", body))
        for where, body in bodies:
            if "schema" not in body:
                continue
            body_schema = resolve(schema, body["schema"])
            for name, example in (body.get("examples") or {}).items():
                try:
                    jsonschema.validate(example["value"], body_schema)
                except jsonschema.ValidationError as exc:
                    pytest.fail(f"{where} example {name!r}: {exc.message}")
                checked += 1
    assert checked > 100


# --- the real error bodies match the documented ones ---------------------------------------


def _check_400(schema, api, derm, clinician, lesion, mine):
    check = assert_documented
    # 400: a body, a filter, an upload refused by content, a query parameter, a bad login
    check(schema, "/api/v1/patients/", "post", api.post("/api/v1/patients/", {}), 400)
    response = api.get("/api/v1/cases/", {"model_version": "abc"})
    check(schema, "/api/v1/cases/", "get", response, 400)
    response = api.post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(b"GIF89a not an image", name="x.gif")},
        format="multipart",
    )
    check(schema, "/api/v1/cases/", "post", response, 400)
    assert "image" in response.json()
    response = api.get(f"/api/v1/cases/{mine.pk}/thumbnail/", {"size": "5"})
    check(schema, "/api/v1/cases/{id}/thumbnail/", "get", response, 400)
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": clinician.username, "password": "wrong"}
    )
    check(schema, "/api/v1/auth/token/", "post", response, 400)
    response = api.get("/api/v1/exports/predictions.csv", {"created_after": "yesterday"})
    assert response.status_code == 403  # the role comes first
    response = derm.get("/api/v1/exports/predictions.csv", {"created_after": "yesterday"})
    check(schema, "/api/v1/exports/predictions.csv", "get", response, 400)


def _check_401_and_403(schema, api, clinician, mine):
    check = assert_documented
    # 401: no token, a bad token, revoking without a token
    check(schema, "/api/v1/cases/", "get", APIClient().get("/api/v1/cases/"), 401)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    check(schema, "/api/v1/lesions/", "post", bad.post("/api/v1/lesions/", {}), 401)
    response = APIClient().delete("/api/v1/auth/token/")
    check(schema, "/api/v1/auth/token/", "delete", response, 401)

    # 403: roles, and CSRF for session authentication
    check(schema, "/api/v1/review-queue/", "get", api.get("/api/v1/review-queue/"), 403)
    check(schema, "/api/v1/audit-events/", "get", api.get("/api/v1/audit-events/"), 403)
    response = api.post(
        f"/api/v1/cases/{mine.pk}/reviews/", {"verdict": "agree", "management": "no_action"}
    )
    check(schema, "/api/v1/cases/{id}/reviews/", "post", response, 403)
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(clinician)
    response = session.post("/api/v1/patients/", {"identifier": "X-1"})
    check(schema, "/api/v1/patients/", "post", response, 403)
    assert "CSRF" in response.json()["detail"]


def _check_404(schema, api, derm, other_clinic, theirs):
    check = assert_documented
    # 404: another clinic's object, a page past the end, a clinic not yours
    response = api.get(f"/api/v1/cases/{theirs.pk}/")
    check(schema, "/api/v1/cases/{id}/", "get", response, 404)
    response = api.patch(f"/api/v1/patients/{theirs.lesion.patient_id}/", {"sex": "male"})
    check(schema, "/api/v1/patients/{id}/", "patch", response, 404)
    check(schema, "/api/v1/cases/", "get", api.get("/api/v1/cases/", {"page": 99}), 404)
    response = derm.get("/api/v1/exports/predictions.csv", {"clinic": other_clinic.pk})
    check(schema, "/api/v1/exports/predictions.csv", "get", response, 404)


def _check_409(schema, api, derm, clinician, lesion):
    check = assert_documented
    # 409: an Idempotency-Key reused for another image; a review of an unpredicted case
    key = {"HTTP_IDEMPOTENCY_KEY": "retry-1"}
    for color, status in (((1, 2, 3), 202), ((4, 5, 6), 409)):
        response = api.post(
            "/api/v1/cases/",
            {"lesion": lesion.pk, "image": upload(images.jpeg_bytes(color=color))},
            format="multipart",
            **key,
        )
        if status == 409:
            check(schema, "/api/v1/cases/", "post", response, 409)
        else:
            assert response.status_code in (200, 202)
    unpredicted = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.png_bytes())
    ).case
    unpredicted.predictions.all().delete()
    response = derm.post(
        f"/api/v1/cases/{unpredicted.pk}/reviews/", {"verdict": "agree", "management": "no_action"}
    )
    check(schema, "/api/v1/cases/{id}/reviews/", "post", response, 409)


def _check_429_and_503(schema, api, monkeypatch):
    check = assert_documented
    # 429 with Retry-After: token requests and uploads
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "token", "1/min")
    anonymous = APIClient()
    anonymous.post("/api/v1/auth/token/", {"username": "nobody", "password": "x"})
    response = anonymous.post("/api/v1/auth/token/", {"username": "nobody", "password": "x"})
    check(schema, "/api/v1/auth/token/", "post", response, 429)
    assert int(response["Retry-After"]) > 0

    # 503 with Retry-After: the database stops answering in the middle of a request
    def outage(_user):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ml_selectors, "cases_for_user", outage)
    response = api.get("/api/v1/cases/")
    check(schema, "/api/v1/cases/", "get", response, 503)
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_error_bodies_match_the_schema(
    schema, clinician, colleague, outsider, clinic, other_clinic, active_model, monkeypatch
):
    api = api_client_for(clinician)
    derm = api_client_for(colleague)
    mine = predicted_case(clinic, clinician, active_model)
    theirs = predicted_case(other_clinic, outsider, active_model, seed=9)
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    _check_400(schema, api, derm, clinician, lesion, mine)
    _check_401_and_403(schema, api, clinician, mine)
    _check_404(schema, api, derm, other_clinic, theirs)
    _check_409(schema, api, derm, clinician, lesion)
    _check_429_and_503(schema, api, monkeypatch)


@pytest.mark.django_db
def test_the_last_clinic_admin_cannot_leave_and_the_body_is_documented(schema, clinic):
    admin = MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN)
    response = api_client_for(admin.user).delete(f"/api/v1/memberships/{admin.pk}/")
    assert_documented(schema, "/api/v1/memberships/{id}/", "delete", response, 400)


# --- integers the database cannot hold -----------------------------------------------------


def integer_query_parameters(schema):
    for path, method, op in operations(schema):
        if method != "get" or "{" in path:
            continue
        for parameter in op.get("parameters", []):
            if parameter["in"] == "query" and parameter["schema"].get("type") == "integer":
                yield path, parameter["name"]


@pytest.mark.usefixtures("colleague")
@pytest.mark.django_db
def test_huge_integers_in_query_parameters_are_a_400_not_a_500(
    schema, clinician, clinic, active_model
):
    predicted_case(clinic, clinician, active_model)
    admin = MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN).user
    api = api_client_for(admin)  # every list answers an admin (the queue, the audit trail)
    params = list(integer_query_parameters(schema))
    names = {name for _, name in params}
    assert {"patient", "model_version", "lesion", "clinic"} <= names, names
    failures = []
    for path, name in params:
        for value in HUGE_INTEGERS:
            response = api.get(path, {name: value})
            # page/page_size are forgiving (an unusable page size is the default; a page
            # past the end is a 404); every filter refuses the value.
            expected = {"page": {404}, "page_size": {200}}.get(name, {400})
            if response.status_code not in expected:
                failures.append(f"GET {path}?{name}={value}: {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_the_reported_overflow_on_a_cases_reviews(clinician, clinic, active_model):
    case = predicted_case(clinic, clinician, active_model)
    api = api_client_for(clinician)
    for value in HUGE_INTEGERS:
        response = api.get(f"/api/v1/cases/{case.pk}/reviews/", {"model_version": value})
        assert response.status_code == 400, (value, response.content)
        assert "model_version" in response.json()
        response = api.get("/api/v1/review-queue/", {"model_version": value})
        assert response.status_code in (400, 403)
    response = api.get("/api/v1/cases/", {"patient": str(2**63 - 1)})
    assert response.status_code == 200
    assert response.json()["count"] == 0


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db
def test_huge_path_ids_are_a_404_for_every_operation(
    schema,
    clinic,
):
    admin = MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN).user
    api = api_client_for(admin)
    failures = []
    for path, method, _ in operations(schema):
        if "{id}" not in path:
            continue
        for value in (str(2**63), str(10**40), str(-(2**63) - 1), "0", "-1"):
            url = path.replace("{id}", value)
            response = getattr(api, method)(url, {}, format="json")
            if response.status_code != 404:
                failures.append(f"{method.upper()} {url}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_integer_filters_are_bounded():
    """No filter of the API is an unbounded NumberFilter (a decimal that overflows a column)."""
    from django_filters import NumberFilter

    from diagnosis.api.filters import BoundedIntegerFilter
    from diagnosis.api.views import AuditEventFilter
    from ml.api.cases import CaseFilter
    from ml.api.predictions import ReviewQueueFilter

    for filterset in (CaseFilter, AuditEventFilter, ReviewQueueFilter):
        for name, filter_ in filterset.base_filters.items():
            if isinstance(filter_, NumberFilter):
                assert isinstance(filter_, BoundedIntegerFilter), (filterset.__name__, name)
                assert filter_.extra["max_value"] <= 2**63 - 1


def test_resolve_keeps_nullable_references():
    schema = {"components": {"schemas": {"A": {"type": "string"}}}}
    node = {"allOf": [{"$ref": "#/components/schemas/A"}], "nullable": True}
    resolved = resolve(schema, copy.deepcopy(node))
    jsonschema.validate(None, resolved)
    jsonschema.validate("x", resolved)
