import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from diagnosis import services, webhooks
from diagnosis.models import DeliveryStatus, Webhook, WebhookDelivery
from tests import images
from tests.conftest import api_client_for, upload
from tests.factories import LesionFactory, MembershipFactory, PatientFactory

pytestmark = pytest.mark.django_db


class Receiver:
    """A clinic system on loopback that records what it is sent."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.headers, body))  # case-insensitive
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def clinic_admin(clinic):
    return MembershipFactory(clinic=clinic, role="clinic_admin").user


def test_a_completed_prediction_is_posted_signed(
    receiver, clinic, clinician, clinic_admin, active_model, django_capture_on_commit_callbacks
):
    api = api_client_for(clinic_admin)
    created = api.post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "events": ["prediction.completed", "review.created"]},
    )
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert "secret" not in api.get(f"/api/v1/webhooks/{created.json()['id']}/").json()

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="SECRET-MRN"))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
        ).case
    ((headers, body),) = receiver.requests
    payload = json.loads(body)
    assert payload["event"] == "prediction.completed"
    assert payload["case"] == case.pk
    assert payload["prediction"]["model_version"] == active_model.pk
    assert b"SECRET-MRN" not in body  # no patient identifiers leave the platform
    message = headers["X-SkinSense-Timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    assert headers["X-SkinSense-Signature"] == expected
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert delivery.last_status_code == 200
    log = api.get(f"/api/v1/webhooks/{created.json()['id']}/deliveries/").json()
    assert [d["status"] for d in log["results"]] == ["succeeded"]


@pytest.mark.usefixtures("active_model")
def test_a_failing_endpoint_is_retried_then_marked_failed(
    clinic, colleague, django_capture_on_commit_callbacks
):
    from ml.services import predict_case, review_submit

    failing = Receiver(status=503)
    try:
        Webhook.objects.create(clinic=clinic, url=failing.url, events=["review.created"])
        lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
        case = services.case_submit(
            user=colleague, lesion=lesion, upload=upload(images.jpeg_bytes())
        ).case
        prediction = predict_case(case_id=case.pk)
        with django_capture_on_commit_callbacks(execute=True):
            review_submit(
                reviewer=colleague,
                prediction=prediction,
                verdict="send_back",
                send_back_reason="blurry",
            )
        delivery = WebhookDelivery.objects.get(event="review.created")
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.attempts == 6
        assert len(failing.requests) == 6
        assert delivery.last_status_code == 503
    finally:
        failing.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.org/hook", "https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.0.0.5/hook", "private"),
        ("https://[::1]/hook", "loopback"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://user:pw@example.org/hook", "credentials"),
        ("ftp://example.org/hook", "https"),
    ],
)
def test_production_refuses_insecure_or_internal_urls(settings, url, reason):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(ValidationError) as refused:
        webhooks.validate_url(url)
    assert reason in str(refused.value) or "https" in str(refused.value)


def test_only_clinic_admins_manage_webhooks(clinician, clinic_admin, receiver, other_clinic):
    refused = api_client_for(clinician).post(
        "/api/v1/webhooks/", {"url": receiver.url, "events": ["review.created"]}
    )
    assert refused.status_code == 400
    assert not Webhook.objects.exists()
    foreign = api_client_for(clinic_admin).post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "events": ["review.created"], "clinic": other_clinic.pk},
    )
    assert foreign.status_code == 400
    assert "clinic" in foreign.json()
    assert api_client_for(clinician).get("/api/v1/webhooks/").json()["results"] == []


def test_delivery_refuses_an_address_that_turned_private(settings, clinic):
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = False
    hook = Webhook.objects.create(
        clinic=clinic, url="https://localhost/hook", events=["review.created"]
    )
    delivery = WebhookDelivery.objects.create(webhook=hook, event="review.created", payload={})
    with pytest.raises(webhooks.DeliveryFailed):
        webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert "loopback" in delivery.last_error
    assert delivery.status == DeliveryStatus.PENDING
