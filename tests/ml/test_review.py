import pytest
from django.urls import reverse

from diagnosis.models import AuditAction, AuditEvent, Patient
from ml.models import Review
from ml.selectors import review_queue
from tests.conftest import api_client_for, logged_in_client
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(clinic, clinician, active_model):
    return predicted_case(clinic, clinician, active_model)


def review_url(case):
    return reverse("ml:review-case", args=[case.pk])


def test_a_clinician_cannot_review(client, clinician, case):
    logged_in_client(client, clinician)
    assert client.get(reverse("ml:review-queue")).status_code == 403
    assert (
        client.post(review_url(case), {"verdict": "agree", "management": "no_action"}).status_code
        == 403
    )
    api = api_client_for(clinician)
    assert (
        api.post(
            f"/api/v1/cases/{case.pk}/reviews/", {"verdict": "agree", "management": "no_action"}
        ).status_code
        == 403
    )
    assert not Review.objects.exists()


def test_a_dermatologist_reviews_only_in_their_clinic(client, case, other_clinic):
    from tests.factories import MembershipFactory

    foreign_derm = MembershipFactory(clinic=other_clinic, role="dermatologist").user
    logged_in_client(client, foreign_derm)
    assert client.get(review_url(case)).status_code == 404
    assert (
        client.post(review_url(case), {"verdict": "agree", "management": "no_action"}).status_code
        == 404
    )
    api = api_client_for(foreign_derm)
    assert (
        api.post(
            f"/api/v1/cases/{case.pk}/reviews/", {"verdict": "agree", "management": "no_action"}
        ).status_code
        == 404
    )
    assert case.pk not in [p.case_id for p in review_queue(foreign_derm)]
    assert not Review.objects.exists()


def test_an_override_is_saved_audited_and_leaves_the_queue(client, colleague, case):
    logged_in_client(client, colleague)
    queue = client.get(reverse("ml:review-queue"))
    assert f"Case {case.pk}".encode() in queue.content
    page = client.get(review_url(case))
    assert page.status_code == 200
    assert b"regions that influenced the model" in page.content
    response = client.post(
        review_url(case),
        {
            "verdict": "override",
            "final_diagnosis": "MEL",
            "management": "excision",
            "notes": "asymmetry",
        },
    )
    assert response.status_code == 302
    review = Review.objects.get()
    assert (review.verdict, review.final_diagnosis, review.reviewer) == (
        "override",
        "MEL",
        colleague,
    )
    assert AuditEvent.objects.filter(
        action=AuditAction.REVIEW, actor=colleague, target_id=str(case.pk)
    ).exists()
    assert f"Case {case.pk}".encode() not in client.get(reverse("ml:review-queue")).content
    overridden = client.get(reverse("ml:review-queue"), {"state": "override"})
    assert f"Case {case.pk}".encode() in overridden.content


def test_an_override_without_a_diagnosis_is_refused(client, colleague, case):
    logged_in_client(client, colleague)
    response = client.post(review_url(case), {"verdict": "override", "final_diagnosis": ""})
    assert response.status_code == 400
    assert b"needs the final diagnosis" in response.content
    api = api_client_for(colleague)
    bad = api.post(
        f"/api/v1/cases/{case.pk}/reviews/", {"verdict": "override", "final_diagnosis": "XYZ"}
    )
    assert bad.status_code == 400
    assert "final_diagnosis" in bad.json()
    assert not Review.objects.exists()


@pytest.mark.usefixtures("client")
def test_several_reviewers_each_keep_their_review(colleague, clinic, case):
    from tests.factories import MembershipFactory

    second = MembershipFactory(clinic=clinic, role="clinic_admin").user
    api_client_for(colleague).post(
        f"/api/v1/cases/{case.pk}/reviews/", {"verdict": "agree", "management": "no_action"}
    )
    api_client_for(second).post(
        f"/api/v1/cases/{case.pk}/reviews/",
        {"verdict": "send_back", "send_back_reason": "blurry", "notes": "blurred"},
    )
    listed = api_client_for(colleague).get(f"/api/v1/cases/{case.pk}/reviews/").json()["results"]
    assert sorted(r["verdict"] for r in listed) == ["agree", "send_back"]
    agree = Review.objects.get(verdict="agree", management="no_action")
    assert agree.final_diagnosis == "NV"  # agreeing adopts the model's top diagnosis


def test_queue_puts_unreviewed_and_riskiest_first(clinic, clinician, colleague, active_model):
    low = predicted_case(clinic, clinician, active_model, malignant=0.1, seed=1)
    high = predicted_case(clinic, clinician, active_model, malignant=0.9, top="MEL", seed=2)
    unsure = predicted_case(clinic, clinician, active_model, malignant=0.3, uncertain=True, seed=3)
    reviewed = predicted_case(clinic, clinician, active_model, malignant=0.99, top="BCC", seed=4)
    from ml.services import review_submit

    review_submit(
        reviewer=colleague,
        prediction=reviewed.predictions.get(),
        verdict="agree",
        management="no_action",
    )
    everything = [p.case_id for p in review_queue(colleague, state="all")]
    assert everything == [unsure.pk, high.pk, low.pk, reviewed.pk]
    assert [p.case_id for p in review_queue(colleague)] == [unsure.pk, high.pk, low.pk]
    assert [p.case_id for p in review_queue(colleague, diagnosis="MEL")] == [high.pk]
    assert [p.case_id for p in review_queue(colleague, state="agree")] == [reviewed.pk]
    assert review_queue(colleague, model_version=active_model.pk + 1000).count() == 0


def test_staff_read_everything_in_the_admin_but_edit_no_clinical_record(client, admin_user, case):
    client.force_login(admin_user)
    for model in ("patient", "lesion", "case"):
        assert client.get(reverse(f"admin:diagnosis_{model}_changelist")).status_code == 200
    assert client.get(reverse("admin:ml_prediction_changelist")).status_code == 200
    patient = case.lesion.patient
    change = reverse("admin:diagnosis_patient_change", args=[patient.pk])
    client.post(change, {"identifier": "CHANGED", "sex": "male", "clinic": patient.clinic_id})
    assert Patient.objects.get(pk=patient.pk).identifier == patient.identifier
    assert client.get(reverse("admin:diagnosis_patient_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:diagnosis_case_delete", args=[case.pk]), {"post": "yes"}
        ).status_code
        == 403
    )


def test_the_clinician_sees_the_review_on_the_case_page(
    client, clinic, clinician, colleague, active_model
):
    """The reported defect: an override to melanoma with the note "excise" was invisible to the
    clinician; the case page had no "review this case" link for a dermatologist either."""
    from ml.services import review_submit

    case = predicted_case(clinic, clinician, active_model, malignant=0.2, top="NV")
    page = logged_in_client(client, colleague).get(case.get_absolute_url()).content.decode()
    assert "Not reviewed yet." in page
    assert reverse("ml:review-case", args=[case.pk]) in page  # a dermatologist may review
    review_submit(
        reviewer=colleague,
        prediction=case.predictions.get(),
        verdict="override",
        final_diagnosis="MEL",
        management="excision",
        notes="excise",
    )
    client.logout()
    page = logged_in_client(client, clinician).get(case.get_absolute_url()).content.decode()
    assert "Different final diagnosis" in page
    assert "Melanoma" in page
    assert "Excision" in page
    assert "excise" in page
    assert colleague.username in page
    assert reverse("ml:review-case", args=[case.pk]) not in page  # a clinician does not review
    body = api_client_for(clinician).get(f"/api/v1/cases/{case.pk}/").json()
    assert body["latest_review"]["verdict"] == "override"
    assert body["latest_review"]["final_diagnosis"] == "MEL"
    assert body["latest_review"]["notes"] == "excise"


def test_the_queue_and_the_timeline_show_verdicts_in_words(
    client, clinic, clinician, colleague, active_model
):
    from ml.services import review_submit

    case = predicted_case(clinic, clinician, active_model)
    review_submit(
        reviewer=colleague,
        prediction=case.predictions.get(),
        verdict="send_back",
        send_back_reason="blurry",
        notes="blurry",
    )
    queue = logged_in_client(client, colleague).get(reverse("ml:review-queue") + "?state=all")
    assert "Send back for a new image" in queue.content.decode()
    assert ">send_back<" not in queue.content.decode()
    timeline = client.get(reverse("ml:patient-detail", args=[case.lesion.patient_id]))
    assert "Send back for a new image" in timeline.content.decode()
