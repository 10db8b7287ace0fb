"""The clinician's dashboard: "reviewed since you last looked", "sent back to you" and
"follow-ups due", each a count and a list, from the latest reviews of the user's own cases."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from ml import selectors
from ml.models import Review
from ml.services import review_submit
from tests.conftest import logged_in_client
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


def review(colleague, case, **fields):
    return review_submit(reviewer=colleague, prediction=case.predictions.get(), **fields)


def test_a_review_shows_until_the_clinician_opens_the_case(
    client, clinic, clinician, colleague, active_model
):
    case = predicted_case(clinic, clinician, active_model)
    assert not selectors.reviewed_since_last_looked(clinician).exists()
    review(colleague, case, verdict="agree", management="no_action")
    assert list(selectors.reviewed_since_last_looked(clinician)) == [case]
    assert not selectors.reviewed_since_last_looked(colleague).exists()  # not the filer
    page = logged_in_client(client, clinician).get(reverse("ml:dashboard")).content.decode()
    assert "Reviewed since you last looked" in page
    assert f"Case {case.pk}" in page
    client.get(case.get_absolute_url())
    assert not selectors.reviewed_since_last_looked(clinician).exists()
    review(colleague, case, verdict="override", final_diagnosis="MEL", management="excision")
    assert list(selectors.reviewed_since_last_looked(clinician)) == [case]  # a newer review


def test_a_send_back_stays_until_a_newer_image_of_the_lesion_arrives(
    client, clinic, clinician, colleague, active_model
):
    case = predicted_case(clinic, clinician, active_model)
    review(colleague, case, verdict="send_back", send_back_reason="blurry", notes="retake")
    assert list(selectors.sent_back_to_user(clinician)) == [case]
    page = logged_in_client(client, clinician).get(reverse("ml:dashboard")).content.decode()
    assert "Sent back to you" in page
    assert "Blurred or out of focus" in page
    assert f"{reverse('diagnosis:case-new')}?follows={case.pk}" in page
    newer = predicted_case(clinic, clinician, active_model, seed=3)
    newer.lesion = case.lesion
    newer.save()
    assert not selectors.sent_back_to_user(clinician).exists()


def test_follow_ups_due_soon_or_overdue_are_listed_by_due_date(
    client, clinic, clinician, colleague, active_model
):
    soon = predicted_case(clinic, clinician, active_model, seed=1)
    later = predicted_case(clinic, clinician, active_model, seed=2)
    overdue = predicted_case(clinic, clinician, active_model, seed=3)
    review(colleague, soon, verdict="agree", management="monitor", follow_up_months=1)
    review(colleague, later, verdict="agree", management="monitor", follow_up_months=12)
    review(colleague, overdue, verdict="agree", management="monitor", follow_up_months=3)
    Review.objects.filter(prediction__case=overdue).update(
        follow_up_due=timezone.localdate() - datetime.timedelta(days=2)
    )
    assert list(selectors.follow_ups_due(clinician)) == [overdue, soon]
    page = logged_in_client(client, clinician).get(reverse("ml:dashboard")).content.decode()
    assert "Follow-ups due" in page
    assert "overdue" in page
    # in a year, the 12-month one is due too
    in_a_year = timezone.localdate() + datetime.timedelta(days=366)
    assert later in selectors.follow_ups_due(clinician, today=in_a_year)
