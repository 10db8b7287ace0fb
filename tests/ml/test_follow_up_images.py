"""A send-back (or a follow-up due) offers "add a new image of this lesion": the new case is
filed under the same lesion and linked to the one it answers, on the page and over the API."""

import pytest
from django.urls import reverse

from diagnosis.models import Case
from ml.services import review_submit
from tests import images
from tests.conftest import api_client_for, logged_in_client
from tests.factories import LesionFactory, predicted_case
from tests.ml.test_pages import new_case_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_back(clinic, clinician, colleague, active_model):
    case = predicted_case(clinic, clinician, active_model)
    review_submit(
        reviewer=colleague,
        prediction=case.predictions.get(),
        verdict="send_back",
        send_back_reason="blurry",
        notes="retake in focus",
    )
    return case


def test_the_send_back_links_to_a_prefilled_new_case_that_answers_it(
    client, clinic, clinician, sent_back
):
    logged_in_client(client, clinician)
    page = client.get(sent_back.get_absolute_url()).content.decode()
    link = f"{reverse('diagnosis:case-new')}?follows={sent_back.pk}"
    assert link in page
    form = client.get(link).content.decode()
    assert f'answering <a href="{sent_back.get_absolute_url()}">case {sent_back.pk}</a>' in form
    assert f'name="follows" value="{sent_back.pk}"' in form
    response = new_case_post(
        client,
        clinic,
        images.jpeg_bytes(color=(10, 200, 30)),
        patient=sent_back.lesion.patient_id,
        new_patient_identifier="",
        lesion=sent_back.lesion_id,
        new_lesion_label="",
        follows=sent_back.pk,
    )
    assert response.status_code == 302
    new = Case.objects.exclude(pk=sent_back.pk).get()
    assert new.follows == sent_back
    assert new.lesion == sent_back.lesion
    earlier_page = client.get(sent_back.get_absolute_url()).content.decode()
    assert f'Answered by <a href="{new.get_absolute_url()}">case {new.pk}</a>' in earlier_page


def test_a_new_image_that_follows_another_lesions_case_is_refused(
    client, clinic, clinician, sent_back
):
    other = LesionFactory(clinic=clinic, patient=sent_back.lesion.patient, label="back")
    logged_in_client(client, clinician)
    response = new_case_post(
        client,
        clinic,
        images.jpeg_bytes(color=(10, 20, 230)),
        patient=other.patient_id,
        new_patient_identifier="",
        lesion=other.pk,
        new_lesion_label="",
        follows=sent_back.pk,
    )
    assert response.status_code == 400
    assert "is of another lesion" in response.content.decode()
    assert Case.objects.count() == 1


def test_the_api_files_a_follow_up_and_refuses_another_clinics_case(
    clinician, sent_back, outsider, other_clinic, active_model
):
    api = api_client_for(clinician)
    created = api.post(
        "/api/v1/cases/",
        {
            "lesion": sent_back.lesion_id,
            "image": images.upload(images.jpeg_bytes(color=(99, 9, 9))),
            "follows": sent_back.pk,
        },
        format="multipart",
    )
    assert created.status_code in (201, 202), created.content
    assert created.json()["follows"] == sent_back.pk
    foreign = predicted_case(other_clinic, outsider, active_model, seed=5)
    refused = api.post(
        "/api/v1/cases/",
        {
            "lesion": sent_back.lesion_id,
            "image": images.upload(images.jpeg_bytes(color=(9, 99, 9))),
            "follows": foreign.pk,
        },
        format="multipart",
    )
    assert refused.status_code == 400
    assert "follows" in refused.json()
