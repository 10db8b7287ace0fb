"""What a review states: a final diagnosis from the whole ISIC hierarchy (mapped to the model's
class), a send-back reason, a management decision with its follow-up date; and what the review
screen shows the dermatologist to decide with."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from diagnosis.models import Patient
from ml.models import Review
from ml.services import review_submit
from ml.services.review import add_months
from tests.conftest import api_client_for, logged_in_client
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def prediction(clinic, clinician, active_model):
    return predicted_case(
        clinic, clinician, active_model, malignant=0.2, top="NV"
    ).predictions.get()


def submit(reviewer, prediction, **fields):
    return review_submit(reviewer=reviewer, prediction=prediction, **fields)


@pytest.mark.parametrize(
    ("term", "isic_name", "model_class", "category"),
    [
        ("MEL", "Malignant melanocytic proliferations (Melanoma)", "MEL", "malignant"),
        ("Melanoma in situ", "Melanoma in situ", "MEL", "malignant"),
        ("melanoma   IN situ", "Melanoma in situ", "MEL", "malignant"),
        ("Seborrheic keratosis", "Seborrheic keratosis", "BKL", "benign"),
        ("Actinic keratosis, Bowenoid", "Actinic keratosis, Bowenoid", "AK", "indeterminate"),
        ("Lentigo simplex", "Lentigo simplex", "", "benign"),
        ("Kaposi sarcoma", "Kaposi sarcoma", "", "malignant"),
    ],
)
def test_a_final_diagnosis_is_any_isic_term_mapped_to_the_model_class(
    colleague, prediction, term, isic_name, model_class, category
):
    review = submit(
        colleague, prediction, verdict="override", final_diagnosis=term, management="biopsy"
    )
    review.refresh_from_db()
    assert review.final_isic_diagnosis.split(":")[-1] == isic_name
    assert review.final_diagnosis == model_class
    assert review.final_diagnosis_name == isic_name
    assert review.final_category == category


def test_an_unknown_final_diagnosis_is_refused_with_the_reason(colleague, prediction):
    with pytest.raises(ValidationError) as raised:
        submit(
            colleague,
            prediction,
            verdict="override",
            final_diagnosis="Melanomma",
            management="biopsy",
        )
    assert "not a diagnosis of the ISIC hierarchy" in str(raised.value.message_dict)
    assert not Review.objects.exists()


def test_agree_stores_the_top_class_with_its_isic_term(colleague, prediction):
    review = submit(colleague, prediction, verdict="agree", management="no_action")
    assert review.final_diagnosis == "NV"
    assert review.final_isic_diagnosis == "Benign:Benign melanocytic proliferations:Nevus"


def test_agree_or_a_diagnosis_needs_a_management_decision(colleague, prediction):
    for verdict, extra in (("agree", {}), ("override", {"final_diagnosis": "MEL"})):
        with pytest.raises(ValidationError) as raised:
            submit(colleague, prediction, verdict=verdict, **extra)
        assert "management" in raised.value.message_dict
    assert not Review.objects.exists()


def test_monitor_needs_an_interval_and_sets_the_due_date(colleague, prediction):
    with pytest.raises(ValidationError) as raised:
        submit(colleague, prediction, verdict="agree", management="monitor")
    assert "follow_up_months" in raised.value.message_dict
    with pytest.raises(ValidationError):
        submit(colleague, prediction, verdict="agree", management="monitor", follow_up_months=99)
    review = submit(
        colleague, prediction, verdict="agree", management="monitor", follow_up_months=6
    )
    assert review.follow_up_due == add_months(review.created_at.date(), 6)
    assert review.management_display == "Monitor: see again in 6 months"


def test_refer_names_whom_and_fields_of_other_decisions_are_refused(colleague, prediction):
    with pytest.raises(ValidationError) as raised:
        submit(colleague, prediction, verdict="agree", management="refer")
    assert "refer_to" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        submit(colleague, prediction, verdict="agree", management="excision", follow_up_months=3)
    assert "follow_up_months" in raised.value.message_dict
    review = submit(
        colleague, prediction, verdict="agree", management="refer", refer_to="Plastic surgery"
    )
    assert review.management_display == "Refer to Plastic surgery"


def test_a_send_back_names_a_reason_and_nothing_else(colleague, prediction):
    with pytest.raises(ValidationError) as raised:
        submit(colleague, prediction, verdict="send_back")
    assert "send_back_reason" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        submit(colleague, prediction, verdict="send_back", send_back_reason="other")
    assert "notes" in raised.value.message_dict  # "other" says what in the notes
    with pytest.raises(ValidationError) as raised:
        submit(
            colleague,
            prediction,
            verdict="send_back",
            send_back_reason="blurry",
            management="excision",
        )
    assert "management" in raised.value.message_dict
    review = submit(colleague, prediction, verdict="send_back", send_back_reason="no_dermoscopy")
    assert (review.final_diagnosis, review.final_isic_diagnosis, review.management) == ("", "", "")


def test_one_refused_review_lists_every_problem(colleague, prediction):
    with pytest.raises(ValidationError) as raised:
        submit(
            colleague,
            prediction,
            verdict="override",
            final_diagnosis="",
            management="monitor",
            send_back_reason="blurry",
        )
    assert {"final_diagnosis", "follow_up_months", "send_back_reason"} <= set(
        raised.value.message_dict
    )


def test_add_months_keeps_the_day_or_takes_the_month_end():
    assert add_months(datetime.date(2026, 1, 31), 1) == datetime.date(2026, 2, 28)
    assert add_months(datetime.date(2026, 11, 15), 3) == datetime.date(2027, 2, 15)
    assert add_months(datetime.date(2026, 12, 1), 12) == datetime.date(2027, 12, 1)


def test_the_api_takes_and_gives_the_whole_review(colleague, clinician, prediction):
    case = prediction.case
    api = api_client_for(colleague)
    refused = api.post(
        f"/api/v1/cases/{case.pk}/reviews/", {"verdict": "agree", "management": "monitor"}
    )
    assert refused.status_code == 400
    assert "follow_up_months" in refused.json()
    created = api.post(
        f"/api/v1/cases/{case.pk}/reviews/",
        {
            "verdict": "override",
            "final_diagnosis": "Melanoma in situ",
            "management": "excision",
            "notes": "excise with margins",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["final_diagnosis"] == "MEL"
    assert body["final_diagnosis_name"] == "Melanoma in situ"
    assert body["final_isic_diagnosis"].startswith("Malignant:")
    assert body["management"] == "excision"
    latest = api_client_for(clinician).get(f"/api/v1/cases/{case.pk}/").json()["latest_review"]
    assert latest["management"] == "excision"
    assert latest["final_diagnosis_name"] == "Melanoma in situ"


def test_the_review_screen_shows_what_the_dermatologist_decides_with(
    client, clinic, clinician, colleague, active_model
):
    earlier = predicted_case(clinic, clinician, active_model, seed=1)
    submit(
        colleague,
        earlier.predictions.get(),
        verdict="agree",
        management="monitor",
        follow_up_months=3,
    )
    case = predicted_case(clinic, clinician, active_model, seed=2)
    case.lesion = earlier.lesion
    case.captured_at = earlier.captured_at + datetime.timedelta(days=90)
    case.notes = "Grew 2 mm since the last visit; itches."
    case.save()
    patient = Patient.objects.get(pk=earlier.lesion.patient_id)
    patient.sex, patient.year_of_birth, patient.fitzpatrick_type = "female", 1970, "II"
    patient.save()
    page = logged_in_client(client, colleague).get(reverse("ml:review-case", args=[case.pk]))
    html = page.content.decode()
    assert "Grew 2 mm since the last visit; itches." in html
    assert "Female" in html
    assert f"{case.captured_at.year - 1970}" in html
    assert "Fitzpatrick type" in html
    assert "Monitor: see again in 3 months" in html  # the earlier image's review
    assert 'list="isic-diagnoses"' in html
    assert "Melanoma in situ" in html  # the whole hierarchy is offered
    assert "Why is it sent back?" in html
    response = client.post(
        reverse("ml:review-case", args=[case.pk]),
        {"verdict": "override", "final_diagnosis": "Dysplastic nevus", "management": ""},
    )
    assert response.status_code == 400  # no management: refused, what was typed kept
    assert 'value="Dysplastic nevus"' in response.content.decode()
