import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from diagnosis import services
from diagnosis.audit import audit_record
from diagnosis.models import AppendOnlyError, AuditAction, AuditEvent
from tests import images
from tests.conftest import api_client_for, drain, logged_in_client, upload
from tests.factories import PASSWORD, LesionFactory, MembershipFactory, PatientFactory

pytestmark = pytest.mark.django_db


def events(action, target_type=None):
    queryset = AuditEvent.objects.filter(action=action)
    if target_type:
        queryset = queryset.filter(target_type=target_type)
    return list(queryset)


@pytest.fixture
def case(clinic, clinician):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    return services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case


def test_login_logout_and_failed_login_are_recorded_with_the_address(client, clinician):
    client.post(
        "/accounts/login/",
        {"username": clinician.username, "password": "wrong"},
        REMOTE_ADDR="10.1.2.3",
    )
    client.post(
        "/accounts/login/",
        {"username": clinician.username, "password": PASSWORD},
        REMOTE_ADDR="10.1.2.3",
    )
    client.post("/accounts/logout/", REMOTE_ADDR="10.1.2.3")
    (failed,) = events(AuditAction.LOGIN_FAILED)
    assert failed.actor is None
    assert failed.actor_username == clinician.username
    assert failed.ip == "10.1.2.3"
    assert "wrong" not in str(failed.detail)
    (login,) = events(AuditAction.LOGIN)
    (logout,) = events(AuditAction.LOGOUT)
    assert login.actor == clinician == logout.actor
    assert login.ip == "10.1.2.3"


def test_creating_patient_lesion_and_case_is_recorded(clinician, clinic):
    patient = services.patient_create(user=clinician, clinic=clinic, identifier="A-1")
    lesion = services.lesion_create(user=clinician, patient=patient, label="arm")
    case = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    created = {(e.target_type, e.target_id) for e in events(AuditAction.CREATE)}
    assert created == {
        ("patient", str(patient.pk)),
        ("lesion", str(lesion.pk)),
        ("case", str(case.pk)),
    }
    assert all(e.clinic == clinic and e.actor == clinician for e in events(AuditAction.CREATE))


def test_a_duplicate_image_creates_no_second_case_event(clinician, case):
    services.case_submit(user=clinician, lesion=case.lesion, upload=upload(images.jpeg_bytes()))
    assert len(events(AuditAction.CREATE, "case")) == 1


def test_viewing_patient_case_and_image_pages_is_recorded(client, colleague, case):
    logged_in_client(client, colleague)
    client.get(case.lesion.patient.get_absolute_url())
    client.get(case.get_absolute_url())
    drain(client.get(reverse("diagnosis:case-image", args=[case.pk])))
    viewed = {(e.target_type, e.target_id, e.actor) for e in events(AuditAction.VIEW)}
    assert viewed == {
        ("patient", str(case.lesion.patient_id), colleague),
        ("case", str(case.pk), colleague),
        ("case_image", str(case.pk), colleague),
    }


def test_api_reads_and_updates_are_recorded(colleague, case):
    api = api_client_for(colleague)
    api.get(f"/api/v1/cases/{case.pk}/")
    drain(api.get(f"/api/v1/cases/{case.pk}/image/"))
    before = case.lesion.patient.sex
    api.patch(
        f"/api/v1/patients/{case.lesion.patient_id}/", {"sex": "male", "reason": "typo at intake"}
    )
    assert {e.target_type for e in events(AuditAction.VIEW)} == {"case", "case_image"}
    (update,) = events(AuditAction.UPDATE)
    assert update.target_type == "patient"
    assert update.detail == {
        "reason": "typo at intake",
        "changes": {"sex": {"before": before, "after": "male"}},
    }


def test_an_outsider_refused_with_404_leaves_no_view_event(client, outsider, case):
    logged_in_client(client, outsider)
    assert client.get(case.get_absolute_url()).status_code == 404
    assert events(AuditAction.VIEW) == []


def test_audit_events_cannot_be_changed_or_deleted_by_the_app(clinician):
    event = audit_record(action=AuditAction.EXPORT, actor=clinician, target_type="export")
    event.action = AuditAction.VIEW
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action=AuditAction.VIEW)
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.EXPORT


def test_the_database_refuses_changes_to_audit_events(clinician):
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's (SQLite relies on the model guard)")
    event = audit_record(action=AuditAction.EXPORT, actor=clinician, target_type="export")
    for statement in (
        "UPDATE diagnosis_auditevent SET action = 'view' WHERE id = %s",
        "DELETE FROM diagnosis_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk, action=AuditAction.EXPORT).exists()


def test_staff_can_browse_the_trail_in_the_admin_but_not_change_it(client, clinician, admin_user):
    event = audit_record(action=AuditAction.EXPORT, actor=clinician, target_type="export")
    client.force_login(admin_user)
    listing = client.get(reverse("admin:diagnosis_auditevent_changelist"), {"action": "export"})
    assert listing.status_code == 200
    assert clinician.username.encode() in listing.content
    change = reverse("admin:diagnosis_auditevent_change", args=[event.pk])
    client.post(change, {"action": "view"})
    delete = client.post(
        reverse("admin:diagnosis_auditevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.EXPORT


def test_audit_events_api_for_admins_and_staff_only(clinician, clinic, other_clinic, admin_user):
    from rest_framework.test import APIClient

    admin_member = MembershipFactory(clinic=clinic, role="clinic_admin").user
    api_client_for(clinician).get("/api/v1/me/")
    assert api_client_for(clinician).get("/api/v1/audit-events/").status_code == 403
    outsider = MembershipFactory(clinic=other_clinic).user
    api_client_for(outsider)  # a login in another clinic
    events = api_client_for(admin_member).get("/api/v1/audit-events/").json()["results"]
    seen = {(e["actor_username"], e["action"]) for e in events}
    assert (clinician.username, "login") in seen
    assert outsider.username not in {e["actor_username"] for e in events}
    staff = APIClient()
    staff.force_authenticate(admin_user)
    assert staff.get("/api/v1/audit-events/", {"action": "login"}).status_code == 200
