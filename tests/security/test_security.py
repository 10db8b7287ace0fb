"""Security of the web app and the API: login throttling, session expiry, security headers and
CSP, CSRF on every form (generated from the URLconf), and no secrets or patient data in logs."""

import base64
import itertools
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.views import APIView

from diagnosis import services
from diagnosis.models import AuditAction, AuditEvent, Role, Webhook
from tests import images
from tests.conftest import Client, api_client_for, drain, logged_in_client, require, upload
from tests.factories import (
    PASSWORD,
    LesionFactory,
    MembershipFactory,
    PatientFactory,
    predicted_case,
)
from tests.security.routes import OBJECT_OF_ROUTE

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
LOGIN_URL = "/accounts/login/"
TOKEN_URL = "/api/v1/auth/token/"


# --- login throttling (django-axes) --------------------------------------------------------


def fail_web_login(client, username, **extra):
    return client.post(LOGIN_URL, {"username": username, "password": "not-the-password"}, **extra)


def test_the_defaults_lock_out_after_5_failures_for_15_minutes(settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_repeated_failed_logins_lock_the_user_out_with_a_429_page(client, clinician):
    assert clinician.password.startswith("argon2")  # the lockout sits in front of Argon2
    for _ in range(4):
        response = fail_web_login(client, clinician.username)
        assert response.status_code == 200
        assert b"didn't match" in response.content
    locked = fail_web_login(client, clinician.username)
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    assert b"15 minutes" in locked.content
    assert locked["Retry-After"] == "900"
    # Now even the right password is refused, and no session is made.
    right = client.post(LOGIN_URL, {"username": clinician.username, "password": PASSWORD})
    assert right.status_code == 429
    assert client.get("/").status_code == 302
    # Every attempt, the refused right one included, is in the audit trail; no login is.
    failed = AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED)
    assert failed.count() == 6
    assert set(failed.values_list("actor_username", flat=True)) == {clinician.username}
    assert not AuditEvent.objects.filter(action=AuditAction.LOGIN).exists()


def test_the_lockout_is_per_username_and_address(client, clinician, colleague):
    for _ in range(5):
        fail_web_login(client, clinician.username)
    assert fail_web_login(client, clinician.username).status_code == 429
    # A colleague at the same address, and the same user from another address, still log in.
    response = client.post(LOGIN_URL, {"username": colleague.username, "password": PASSWORD})
    assert response.status_code == 302
    other = Client()
    response = other.post(
        LOGIN_URL,
        {"username": clinician.username, "password": PASSWORD},
        REMOTE_ADDR="10.9.8.7",
    )
    assert response.status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, clinician, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        fail_web_login(client, clinician.username)
    assert fail_web_login(client, clinician.username).status_code == 429
    # The failures are 16 minutes old: past the 15-minute cool-off.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = client.post(LOGIN_URL, {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert not AccessAttempt.objects.exists()  # a successful login clears the count


def test_the_api_token_endpoint_counts_failures_and_locks_out_with_429(clinician):
    from rest_framework.test import APIClient

    api = APIClient()
    for _ in range(4):
        response = api.post(TOKEN_URL, {"username": clinician.username, "password": "nope"})
        assert response.status_code == 400
    locked = api.post(TOKEN_URL, {"username": clinician.username, "password": "nope"})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.json()["detail"]
    assert locked["Retry-After"] == "900"
    right = api.post(TOKEN_URL, {"username": clinician.username, "password": PASSWORD})
    assert right.status_code == 429
    assert "token" not in right.json()
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).count() == 6
    # The web login shares the count: the same username from the same address is locked there.
    assert fail_web_login(Client(), clinician.username).status_code == 429


def test_a_very_long_username_is_a_failed_login_not_a_server_error(client):
    from rest_framework.test import APIClient

    long_name = "u" * 400  # longer than axes's username column (255): PostgreSQL would refuse it
    for _ in range(2):  # web and API share one count: 4 failures
        assert fail_web_login(client, long_name).status_code == 200
        response = APIClient().post(TOKEN_URL, {"username": long_name, "password": "x"})
        assert response.status_code == 400
    assert fail_web_login(client, long_name).status_code == 429  # and it is still counted
    assert {len(a.username) for a in AccessAttempt.objects.all()} == {150}


def test_behind_a_proxy_a_client_cannot_dodge_the_lockout_with_x_forwarded_for(
    client, clinician, settings
):
    settings.USE_X_FORWARDED_FOR = True
    for n in range(5):  # a made-up address each time, then the one the proxy saw
        fail_web_login(client, clinician.username, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 203.0.113.9")
    response = fail_web_login(client, clinician.username, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 429
    junk = fail_web_login(client, "someone", HTTP_X_FORWARDED_FOR="not-an-address")
    assert junk.status_code == 200  # falls back to the peer address; nothing to store refused
    addresses = set(AuditEvent.objects.values_list("ip", flat=True))
    assert addresses == {"203.0.113.9", "127.0.0.1"}


def test_failures_below_the_limit_are_forgotten_after_a_successful_login(client, clinician):
    for _ in range(4):
        fail_web_login(client, clinician.username)
    assert logged_in_client(client, clinician)  # the test client's login() passes a request
    client.post(LOGIN_URL, {"username": clinician.username, "password": PASSWORD})
    client.logout()
    for _ in range(4):
        assert fail_web_login(client, clinician.username).status_code == 200


# --- sessions expire after inactivity ------------------------------------------------------


def session_row(client) -> Session:
    return Session.objects.get(session_key=client.session.session_key)


def test_sessions_last_30_idle_minutes_by_default(settings):
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


def test_every_request_pushes_the_session_expiry_forward(client, clinician, settings):
    logged_in_client(client, clinician)
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() + timedelta(seconds=30)
    )
    response = client.get("/")
    assert response.status_code == 200
    remaining = session_row(client).expire_date - timezone.now()
    assert timedelta(seconds=settings.SESSION_COOKIE_AGE - 60) < remaining
    assert remaining <= timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert response.cookies["sessionid"]["max-age"] == settings.SESSION_COOKIE_AGE


def test_a_session_idle_past_its_age_is_logged_out(client, clinician):
    logged_in_client(client, clinician)
    assert client.get("/").status_code == 200
    # As if the clinician walked away for longer than SESSION_COOKIE_AGE.
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)
    assert client.get("/api/v1/me/").status_code in (401, 403)


# --- security headers and CSP ---------------------------------------------------------------

CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def assert_security_headers(response):
    csp = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    for directive, value in CSP_DIRECTIVES.items():
        assert csp.get(directive) == value, (directive, csp)
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_pages_api_responses_and_images_carry_the_security_headers(
    client, clinician, clinic, active_model
):
    case = predicted_case(clinic, clinician, active_model)
    logged_in_client(client, clinician)
    for url in (LOGIN_URL, "/", reverse("ml:case-detail", args=[case.pk])):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_security_headers(response)
    api = api_client_for(clinician)
    response = api.get("/api/v1/patients/")
    assert response.status_code == 200
    assert_security_headers(response)
    for image_url in (
        reverse("diagnosis:case-image", args=[case.pk]),
        f"/api/v1/cases/{case.pk}/image/",
    ):
        response = (client if image_url.startswith("/cases") else api).get(image_url)
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        drain(response)
        assert_security_headers(response)


def test_hsts_is_sent_over_https_when_configured(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    response = client.get(LOGIN_URL, secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def settings_with(**env) -> dict:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in ('SECURE_HSTS_SECONDS', "
        "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SECURE_SSL_REDIRECT', "
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "skinsense_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_hsts_is_on_in_production_and_off_in_development():
    production = settings_with(
        DEBUG="false", SECRET_KEY="p" * 50, ALLOWED_HOSTS="skinsense.example.org"
    )
    assert production == {
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }
    no_preload = settings_with(
        DEBUG="false",
        SECRET_KEY="p" * 50,
        ALLOWED_HOSTS="skinsense.example.org",
        SECURE_HSTS_PRELOAD="false",
    )
    assert no_preload["SECURE_HSTS_PRELOAD"] is False
    assert settings_with(DEBUG="true")["SECURE_HSTS_SECONDS"] == 0


INLINE_CODE = [
    ("an inline <script>", r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>"),
    ("an inline <style>", r"<style[\s>]"),
    ("a style attribute", r"\sstyle=[\"']"),
    ("an event-handler attribute", r"\son[a-z]+=[\"']"),
    ("a javascript: URL", r"javascript:"),
]


def test_no_template_or_view_has_inline_script_or_style():
    import re

    sources = [*ROOT.glob("templates/**/*.html")]
    sources += [p for app in ("diagnosis", "ml") for p in (ROOT / app).rglob("*.py")]
    found = []
    for path in sources:
        text = path.read_text()
        text = re.sub(r"{% comment %}.*?{% endcomment %}", "", text, flags=re.S)
        for what, pattern in INLINE_CODE:
            if path.suffix == ".py" and what == "an inline <style>":
                continue
            for match in re.finditer(pattern, text):
                found.append(f"{path.relative_to(ROOT)}: {what}: {match.group(0)!r}")
    assert not found, "the CSP blocks these:\n" + "\n".join(found)


def test_api_docs_page_has_nothing_inline_and_its_script_is_a_file(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert_security_headers(response)
    html = response.content.decode()
    assert "<style" not in html
    assert "<script>" not in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


@pytest.mark.usefixtures("active_model")
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_pages_and_api_docs_render_in_a_browser_without_csp_violations(
    live_server, clinic, monkeypatch
):
    chromium = "/usr/bin/chromium"
    require(os.path.exists(chromium), "needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    reviewer = MembershipFactory(
        clinic=clinic, role=Role.CLINIC_ADMIN, user__username="csp-admin"
    ).user
    # Committed, so the (eager) prediction runs at once: the case page shows a result.
    case = services.case_submit(
        user=reviewer,
        lesion=LesionFactory(patient=PatientFactory(clinic=clinic)),
        upload=upload(images.jpeg_bytes()),
    ).case
    case.refresh_from_db()
    assert case.status == "done", case.error
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    violations = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = browser.new_context().new_page()
        page.set_default_timeout(15_000)
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(live_server.url + LOGIN_URL)
        page.fill("#id_username", reviewer.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        for path in (
            reverse("ml:case-detail", args=[case.pk]),
            reverse("ml:review-case", args=[case.pk]),
            reverse("diagnosis:case-new"),
        ):
            page.goto(live_server.url + path)
            page.wait_for_load_state("networkidle")
        # The probability bars are drawn (a <meter> per diagnosis, with a width).
        page.goto(live_server.url + reverse("ml:case-detail", args=[case.pk]))
        assert page.locator("meter.bar").first.bounding_box()["width"] > 20
        page.goto(live_server.url + "/api/docs/")
        page.wait_for_selector(".opblock-tag", timeout=20_000)
        assert page.locator(".opblock").count() > 10
        browser.close()
    assert not violations, violations


# --- CSRF on every form (generated from the URLconf) ----------------------------------------


def csrf_rejected(response) -> bool:
    return response.status_code == 403 and b"CSRF" in response.content


@pytest.fixture
def member_objects(clinic, active_model):
    """A clinic admin (also a reviewer) and one object of each kind in their own clinic."""
    member = MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN, user__username="boss").user
    case = predicted_case(clinic, member, active_model)
    other = MembershipFactory(clinic=clinic, role=Role.CLINICIAN, user__username="temp")
    return member, {
        "case": case,
        "lesion": case.lesion,
        "patient": case.lesion.patient,
        "auditevent": AuditEvent.objects.filter(clinic=clinic).first(),
        "webhook": Webhook.objects.create(clinic=clinic, url="https://example.org/hook"),
        "membership": other,
        "clinic": clinic,
    }


def is_drf(entry: URLPattern) -> bool:
    return issubclass(getattr(entry.callback, "cls", object), APIView)


def routes(*, drf: bool):
    """(name, pattern) for every named route of Django views (``drf=False``: forms, pages, the
    admin) or of DRF views (``drf=True``: the API, whose session-authenticated writes DRF checks
    for CSRF itself)."""

    def walk(patterns, namespace=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                space = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from walk(entry.url_patterns, space)
            elif isinstance(entry, URLPattern) and entry.name and is_drf(entry) == drf:
                if "format" not in entry.pattern.regex.groupindex:
                    yield namespace + entry.name, entry

    yield from walk(get_resolver().url_patterns)


def route_url(name: str, entry: URLPattern, objects: dict) -> str | None:
    """A URL for the route: ``pk`` names an object of the member's clinic, other parameters get
    sample values (the CSRF check runs before any view looks at them)."""
    groups = list(entry.pattern.regex.groupindex)
    short = name.split(":")[-1]
    choices = []
    for group in groups:
        key = short if short in OBJECT_OF_ROUTE else short.rsplit("-", 1)[0]
        if group == "pk" and key in OBJECT_OF_ROUTE:
            choices.append([objects[OBJECT_OF_ROUTE[key]].pk])
        else:
            choices.append(["1", "diagnosis", "x"])
    for values in itertools.product(*choices):
        try:
            return reverse(name, kwargs=dict(zip(groups, values, strict=True)))
        except NoReverseMatch:
            continue
    return None


def test_every_form_post_needs_the_csrf_token(member_objects):
    member, objects = member_objects
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN_URL)
    token = client.cookies["csrftoken"].value
    takes_post = []
    for name, entry in routes(drf=False):
        url = route_url(name, entry, objects)
        if url is None:
            continue
        if "_auth_user_id" not in client.session:  # a logout route ended the session
            client.force_login(member)
        refused = client.post(url, {})
        assert csrf_rejected(refused), (url, refused.status_code)
        accepted = client.post(url, {"csrfmiddlewaretoken": token})
        if accepted.status_code == 405:  # the view takes no POST at all
            continue
        assert accepted.status_code != 403, (url, accepted.status_code)
        takes_post.append(name)
    assert {
        "login",
        "logout",
        "password_change",
        "password_reset",
        "diagnosis:case-new",
        "diagnosis:case-retry",
        "ml:review-case",
        "ml:operating-point",
        "ml:notifications",
        "admin:login",
    } <= set(takes_post), takes_post


UNSAFE = ("post", "put", "patch", "delete")
# The token endpoint authenticates no one on POST (it is the login of API clients and returns the
# token in the body, never a cookie): CSRF does not apply to it.
CSRF_EXEMPT_BY_DESIGN = {"api:token"}


def api_writes():
    for name, entry in routes(drf=True):
        view = entry.callback
        actions = getattr(view, "actions", None)
        cls = getattr(view, "cls", None)
        if cls is None:
            continue
        if actions is not None:
            methods = [m for m in UNSAFE if m in actions and m in cls.http_method_names]
        else:
            methods = [m for m in UNSAFE if hasattr(cls, m)]
        for method in methods:
            yield name, entry, method


def test_session_authenticated_api_writes_need_the_csrf_token(member_objects):
    member, objects = member_objects
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    client.get(LOGIN_URL)
    token = client.cookies["csrftoken"].value
    checked, exempt = [], set()
    for name, entry, method in api_writes():
        url = route_url(name, entry, objects)
        send = getattr(client, method)
        refused = send(url, {}, content_type="application/json")
        if name in CSRF_EXEMPT_BY_DESIGN:
            assert not csrf_rejected(refused), url
            exempt.add(name)
            continue
        assert csrf_rejected(refused), (method, url, refused.status_code, refused.content[:200])
        accepted = send(url, {}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert not csrf_rejected(accepted), (method, url)
        assert accepted.status_code != 403, (method, url)
        checked.append((method, name))
    assert exempt == CSRF_EXEMPT_BY_DESIGN
    assert ("post", "api:patient-list") in checked
    assert ("post", "api:case-list") in checked
    assert len(checked) >= 12


def test_token_authenticated_api_writes_need_no_csrf_token(clinician):
    api = api_client_for(clinician)
    api.enforce_csrf_checks = True
    response = api.post("/api/v1/patients/", {"identifier": "CSRF-TOKEN-1"})
    assert response.status_code == 201


# --- no patient identifiers, tokens, passwords or image bytes in the logs --------------------


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def texts(self):
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in self.records:
            yield record.name, formatter.format(record) + " " + repr(record.args)


@pytest.fixture
def every_log_record():
    """Every logger at DEBUG, every record captured (what LOG_LEVEL=DEBUG in production would
    write; with DEBUG off Django logs no SQL, as in production)."""
    capture = Capture()
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(capture)
    for logger in loggers[1:]:
        if not logger.propagate:
            logger.addHandler(capture)
    yield capture
    logging.getLogger().removeHandler(capture)
    for logger, level, propagate in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        if capture in logger.handlers:
            logger.removeHandler(capture)


@pytest.mark.usefixtures("clinic", "active_model")
def test_no_patient_identifier_token_password_or_image_bytes_reach_the_logs(
    every_log_record, client, clinician, django_capture_on_commit_callbacks
):
    mrn = "MRN-QX-77310-ZED"
    name = "Zebulon Quackenbush"
    password = "Hunter2-Sekrit-Pa55"
    image = images.gradient_jpeg(size=(96, 80))

    api = api_client_for(clinician)
    token = api._credentials["HTTP_AUTHORIZATION"].split()[1]
    patient = api.post("/api/v1/patients/", {"identifier": mrn, "year_of_birth": 1950})
    assert patient.status_code == 201
    assert api.post("/api/v1/patients/", {"identifier": mrn}).status_code == 400  # duplicate
    lesion = api.post(
        "/api/v1/lesions/", {"patient": patient.json()["id"], "label": f"{name}, left calf"}
    )
    assert lesion.status_code == 201
    with django_capture_on_commit_callbacks(execute=True):  # the (eager) prediction runs too
        case = api.post(
            "/api/v1/cases/",
            {"lesion": lesion.json()["id"], "image": upload(image), "notes": f"{name} {mrn}"},
            format="multipart",
        )
    assert case.status_code == 202
    assert api.get(f"/api/v1/cases/{case.json()['id']}/").json()["status"] == "done"
    assert api.get(f"/api/v1/cases/{case.json()['id']}/").status_code == 200
    assert api.get(f"/api/v1/patients/?search={mrn}").status_code == 200
    assert api.get("/api/v1/patients/999999/").status_code == 404
    # A broken upload (refused with a message) and failed logins with a distinctive password.
    broken = api.post(
        "/api/v1/cases/",
        {"lesion": lesion.json()["id"], "image": upload(image[: len(image) // 2])},
        format="multipart",
    )
    assert broken.status_code == 400
    fail_web_login(client, "zebulon.q")
    client.post(LOGIN_URL, {"username": clinician.username, "password": password})
    from rest_framework.test import APIClient

    APIClient().post(TOKEN_URL, {"username": clinician.username, "password": password})
    logged_in_client(client, clinician)
    assert client.get(f"/patients/?q={mrn}").status_code == 200
    assert client.get(reverse("ml:case-detail", args=[case.json()["id"]])).status_code == 200

    records = list(every_log_record.texts())
    assert len(records) > 5  # the flow did log (inference, axes, django.request…)
    secrets = {"patient identifier": mrn, "name": name, "token": token, "password": password}
    windows = [image[i : i + 16] for i in range(0, len(image) - 16, max(1, len(image) // 40))]
    for logger_name, text in records:
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in a {logger_name} log record: {text[:300]}"
        for window in windows:
            for encoded in (
                repr(window)[2:-1],
                window.hex(),
                base64.b64encode(window).decode()[:16],
                window.decode("latin-1"),
            ):
                assert encoded not in text, f"image bytes in a {logger_name} log record"
