"""The pages that correct records: forms with a reason, confirm steps for withdraw and merge,
messages, refused forms that keep what was typed, and the clinic admins' withdrawn cases."""

import pytest
from django.urls import reverse

from diagnosis import corrections
from diagnosis.models import AuditAction, AuditEvent, Case, Patient, Role
from tests.conftest import drain, logged_in_client
from tests.diagnosis.test_corrections import REASON, reviewed
from tests.factories import LesionFactory, MembershipFactory, PatientFactory, predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic_admin(clinic):
    return MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN, user__username="boss").user


@pytest.fixture
def case(clinic, clinician, active_model):
    return predicted_case(clinic, clinician, active_model)


def text(response) -> str:
    return response.content.decode()


def test_the_patient_page_links_to_the_corrections(client, clinician, case):
    logged_in_client(client, clinician)
    page = text(client.get(case.lesion.patient.get_absolute_url()))
    assert reverse("diagnosis:patient-edit", args=[case.lesion.patient_id]) in page
    assert reverse("diagnosis:patient-merge", args=[case.lesion.patient_id]) in page
    assert reverse("diagnosis:lesion-edit", args=[case.lesion_id]) in page


def test_a_patient_is_corrected_on_its_page(client, clinician, case):
    patient = case.lesion.patient
    url = reverse("diagnosis:patient-edit", args=[patient.pk])
    logged_in_client(client, clinician)
    form = client.get(url)
    assert form.status_code == 200
    assert f'value="{patient.identifier}"' in text(form)
    refused = client.post(url, {"identifier": "MRN-TYPED", "sex": "male", "reason": ""})
    assert refused.status_code == 400
    assert 'value="MRN-TYPED"' in text(refused)  # what was typed is kept
    assert "Nothing was changed" in text(refused)
    done = client.post(
        url, {"identifier": "MRN-TYPED", "sex": "male", "year_of_birth": "1970", "reason": REASON}
    )
    assert done.status_code == 302
    assert done["Location"] == patient.get_absolute_url()
    patient.refresh_from_db()
    assert (patient.identifier, patient.sex) == ("MRN-TYPED", "male")
    assert "was corrected" in text(client.get(done["Location"]))


def test_an_identifier_clash_is_shown_on_the_form(client, clinician, clinic, case):
    PatientFactory(clinic=clinic, identifier="TAKEN-9")
    logged_in_client(client, clinician)
    response = client.post(
        reverse("diagnosis:patient-edit", args=[case.lesion.patient_id]),
        {"identifier": "TAKEN-9", "sex": "female", "reason": REASON},
    )
    assert response.status_code == 400
    assert "already has a patient with this identifier" in text(response)


def test_a_lesion_is_corrected_with_the_site_picker(client, clinician, case):
    url = reverse("diagnosis:lesion-edit", args=[case.lesion_id])
    logged_in_client(client, clinician)
    assert "site-picker" in text(client.get(url))
    response = client.post(
        url,
        {
            "label": "left shin",
            "anatomic_site_region": "Lower extremity",
            "anatomic_site": "Lower extremity:Lower leg",
            "reason": REASON,
        },
    )
    assert response.status_code == 302
    case.lesion.refresh_from_db()
    assert (case.lesion.label, case.lesion.anatomic_site) == (
        "left shin",
        "Lower extremity:Lower leg",
    )


def test_a_case_is_moved_to_another_patients_lesion(client, clinician, clinic, other_clinic, case):
    right = LesionFactory(patient=PatientFactory(clinic=clinic), label="right one")
    foreign = LesionFactory(patient=PatientFactory(clinic=other_clinic))
    url = reverse("diagnosis:case-move", args=[case.pk])
    logged_in_client(client, clinician)
    page = text(client.get(url))
    assert "right one" in page
    assert f'value="{foreign.pk}"' not in page
    assert client.post(url, {"lesion": foreign.pk, "reason": REASON}).status_code == 400
    response = client.post(url, {"lesion": right.pk, "reason": REASON})
    assert response.status_code == 302
    assert Case.objects.get(pk=case.pk).lesion == right


def test_withdrawing_says_what_happens_then_the_case_is_gone(client, clinician, case):
    url = reverse("diagnosis:case-withdraw", args=[case.pk])
    logged_in_client(client, clinician)
    confirm = text(client.get(url))
    assert "What happens" in confirm
    assert "restore" in confirm
    assert client.post(url, {"reason": ""}).status_code == 400
    assert not Case.all_objects.get(pk=case.pk).is_withdrawn
    response = client.post(url, {"reason": REASON})
    assert response.status_code == 302
    assert response["Location"] == case.lesion.patient.get_absolute_url()
    patient_page = text(client.get(response["Location"]))
    assert f"Case {case.pk} was withdrawn" in patient_page
    assert reverse("diagnosis:case-thumbnail", args=[case.pk, 256]) not in patient_page
    assert client.get(case.get_absolute_url()).status_code == 404
    assert client.get(reverse("diagnosis:case-image", args=[case.pk])).status_code == 404


def test_a_reviewed_case_page_tells_a_clinician_to_ask_a_clinic_admin(
    client, clinician, colleague, case
):
    reviewed(case, colleague)
    url = reverse("diagnosis:case-withdraw", args=[case.pk])
    logged_in_client(client, clinician)
    page = client.get(url)
    assert page.status_code == 403
    assert "only a clinic admin can withdraw it" in text(page)
    assert client.post(url, {"reason": REASON}).status_code == 403
    assert not Case.all_objects.get(pk=case.pk).is_withdrawn


def test_clinic_admins_see_withdrawn_cases_and_restore_them(
    client, clinician, clinic, clinic_admin, outsider, case
):
    corrections.case_withdraw(user=clinician, case=case, reason="Wrong body site.")
    listing = reverse("diagnosis:withdrawn-cases", args=[clinic.pk])
    restore = reverse("diagnosis:case-restore", args=[case.pk])
    logged_in_client(client, clinician)
    assert client.get(listing).status_code == 403
    assert client.post(restore, {"reason": REASON}).status_code == 404
    client.logout()
    logged_in_client(client, outsider)
    assert client.get(listing).status_code == 404
    client.logout()

    logged_in_client(client, clinic_admin)
    page = text(client.get(listing))
    assert "Wrong body site." in page
    assert f"by {clinician.username}" in page
    thumbnail = client.get(reverse("diagnosis:case-thumbnail", args=[case.pk, 256]))
    assert thumbnail.status_code == 200
    drain(thumbnail)
    assert drain(client.get(reverse("diagnosis:case-image", args=[case.pk])))
    assert client.post(restore, {"reason": "", "back": "withdrawn"}).status_code == 400
    response = client.post(restore, {"reason": "By mistake.", "back": "withdrawn"})
    assert response.status_code == 302
    assert response["Location"] == listing
    assert "No withdrawn cases" in text(client.get(listing))
    assert Case.objects.filter(pk=case.pk).exists()


def test_merging_shows_what_will_happen_before_it_merges(client, clinician, clinic, case):
    kept = case.lesion.patient
    duplicate = PatientFactory(clinic=clinic, sex="male")
    LesionFactory(patient=duplicate, label="scalp")
    url = reverse("diagnosis:patient-merge", args=[kept.pk])
    logged_in_client(client, clinician)
    assert duplicate.identifier in text(client.get(url))
    step_one = client.post(url, {"duplicate": duplicate.pk, "reason": "Registered twice."})
    assert step_one.status_code == 200
    confirm = text(step_one)
    assert "What happens" in confirm
    assert "“scalp”" in confirm
    assert "The two records disagree" in confirm  # female here, male there
    assert Patient.objects.filter(pk=duplicate.pk).exists()  # nothing merged yet
    assert not AuditEvent.objects.filter(action=AuditAction.MERGE).exists()
    done = client.post(
        url, {"duplicate": duplicate.pk, "reason": "Registered twice.", "confirm": "on"}
    )
    assert done.status_code == 302
    assert "was merged into" in text(client.get(done["Location"]))
    assert client.get(duplicate.get_absolute_url()).status_code == 404
    assert AuditEvent.objects.filter(action=AuditAction.MERGE).count() == 2


def test_a_merge_with_clashing_labels_is_refused_on_the_form(client, clinician, clinic, case):
    duplicate = PatientFactory(clinic=clinic)
    LesionFactory(patient=duplicate, label=case.lesion.label)
    logged_in_client(client, clinician)
    response = client.post(
        reverse("diagnosis:patient-merge", args=[case.lesion.patient_id]),
        {"duplicate": duplicate.pk, "reason": "Registered twice."},
    )
    assert response.status_code == 400
    assert "rename one of them" in text(response)
    assert "Registered twice." in text(response)  # the reason typed is kept
