"""Review events by e-mail, for the clinicians who opted in: the case and the verdict with a
link, never the patient's record number, the diagnosis or the notes."""

import pytest
from django.core import mail
from django.urls import reverse

from ml.models import NotificationPreference
from ml.services import review_submit
from tests.conftest import logged_in_client
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(clinic, clinician, active_model):
    clinician.email = "filer@clinic.example"
    clinician.save()
    return predicted_case(clinic, clinician, active_model)


def override(colleague, case):
    review_submit(
        reviewer=colleague,
        prediction=case.predictions.get(),
        verdict="override",
        final_diagnosis="Melanoma in situ",
        management="excision",
        notes="excise with 5 mm margins",
    )


def test_no_email_unless_the_filer_opted_in(case, colleague, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        override(colleague, case)
    assert mail.outbox == []


def test_an_opted_in_filer_gets_a_link_and_no_clinical_data(
    client, case, clinician, colleague, django_capture_on_commit_callbacks
):
    logged_in_client(client, clinician)
    page = client.get(reverse("ml:notifications"))
    assert page.status_code == 200
    saved = client.post(reverse("ml:notifications"), {"review_emails": "on"})
    assert saved.status_code == 302
    assert NotificationPreference.objects.get(user=clinician).review_emails
    with django_capture_on_commit_callbacks(execute=True):
        override(colleague, case)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["filer@clinic.example"]
    assert f"case {case.pk}" in message.subject
    assert reverse("ml:case-detail", args=[case.pk]) in message.body
    text = message.subject + message.body
    for secret in (case.lesion.patient.identifier, "Melanoma", "excise", "5 mm"):
        assert secret not in text
    client.post(reverse("ml:notifications"), {})  # unticked: off again
    with django_capture_on_commit_callbacks(execute=True):
        override(colleague, case)
    assert len(mail.outbox) == 1


def test_opting_in_without_an_address_is_refused(client, clinician):
    logged_in_client(client, clinician)
    refused = client.post(reverse("ml:notifications"), {"review_emails": "on"})
    assert refused.status_code == 400
    assert b"no e-mail address" in refused.content
    assert not NotificationPreference.objects.filter(user=clinician, review_emails=True).exists()


def test_the_notifications_page_needs_a_login(client):
    response = client.get(reverse("ml:notifications"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
