"""Correcting records over the API: PATCH a patient or a lesion with a reason, move, withdraw
and restore a case, merge two patients; the same rules as the pages, and bodies as the
OpenAPI schema documents them."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from diagnosis.models import AuditAction, AuditEvent, Case, Role
from tests.conftest import api_client_for
from tests.diagnosis.test_api_schema import assert_documented
from tests.diagnosis.test_corrections import REASON, reviewed
from tests.factories import LesionFactory, MembershipFactory, PatientFactory, predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def clinic_admin(clinic):
    return MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN, user__username="boss").user


@pytest.fixture
def case(clinic, clinician, active_model):
    return predicted_case(clinic, clinician, active_model)


def test_patch_corrects_a_patient_with_a_reason(schema, clinician, case):
    api = api_client_for(clinician)
    url = f"/api/v1/patients/{case.lesion.patient_id}/"
    missing = api.patch(url, {"sex": "male"})
    assert_documented(schema, "/api/v1/patients/{id}/", "patch", missing, 400)
    assert missing.json() == {"reason": ["This field is required."]}
    response = api.patch(url, {"sex": "male", "fitzpatrick_type": "IV", "reason": REASON})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["sex"], body["fitzpatrick_type"]) == ("male", "IV")
    assert "reason" not in body
    event = AuditEvent.objects.get(action=AuditAction.UPDATE, target_type="patient")
    assert event.detail["reason"] == REASON
    assert event.detail["changes"]["sex"] == {"before": "female", "after": "male"}
    unchanged = api.patch(url, {"sex": "male", "reason": REASON})
    assert unchanged.status_code == 400
    assert "Nothing to change" in str(unchanged.json())


def test_a_taken_identifier_is_a_400_on_its_field(clinician, clinic, case):
    PatientFactory(clinic=clinic, identifier="TAKEN-API")
    response = api_client_for(clinician).patch(
        f"/api/v1/patients/{case.lesion.patient_id}/",
        {"identifier": "TAKEN-API", "reason": REASON},
    )
    assert response.status_code == 400
    assert response.json() == {
        "identifier": ["This clinic already has a patient with this identifier."]
    }


def test_patch_corrects_a_lesion_and_put_is_not_offered(schema, clinician, case):
    api = api_client_for(clinician)
    url = f"/api/v1/lesions/{case.lesion_id}/"
    response = api.patch(url, {"label": "right forearm", "patient": 999, "reason": REASON})
    assert_documented(schema, "/api/v1/lesions/{id}/", "patch", response, 200)
    assert response.json()["label"] == "right forearm"
    assert response.json()["patient"] == case.lesion.patient_id  # not moved by a PATCH
    assert api.patch(url, {"label": "x"}).status_code == 400
    assert api.put(url, {"label": "x", "reason": REASON}).status_code == 405


def test_outsiders_get_404_for_every_correction(outsider, case):
    api = api_client_for(outsider)
    body = {"reason": REASON, "sex": "male", "label": "x", "lesion": case.lesion_id}
    for method, url in [
        ("patch", f"/api/v1/patients/{case.lesion.patient_id}/"),
        ("patch", f"/api/v1/lesions/{case.lesion_id}/"),
        ("post", f"/api/v1/patients/{case.lesion.patient_id}/merge/"),
        ("post", f"/api/v1/cases/{case.pk}/move/"),
        ("post", f"/api/v1/cases/{case.pk}/withdraw/"),
        ("post", f"/api/v1/cases/{case.pk}/restore/"),
    ]:
        assert getattr(api, method)(url, body).status_code == 404, url
    assert not AuditEvent.objects.filter(actor=outsider).exclude(action="login").exists()


def test_a_case_moves_to_a_lesion_of_its_clinic_only(schema, clinician, clinic, other_clinic, case):
    api = api_client_for(clinician)
    right = LesionFactory(patient=PatientFactory(clinic=clinic))
    foreign = LesionFactory(patient=PatientFactory(clinic=other_clinic))
    url = f"/api/v1/cases/{case.pk}/move/"
    refused = api.post(url, {"lesion": foreign.pk, "reason": REASON})
    assert_documented(schema, "/api/v1/cases/{id}/move/", "post", refused, 400)
    assert "lesion" in refused.json()
    response = api.post(url, {"lesion": right.pk, "reason": REASON})
    assert_documented(schema, "/api/v1/cases/{id}/move/", "post", response, 200)
    assert (response.json()["lesion"], response.json()["patient"]) == (right.pk, right.patient_id)
    assert api.get(f"/api/v1/cases/{case.pk}/").json()["lesion"] == right.pk


def test_withdrawing_removes_the_case_from_the_api_and_admins_restore_it(
    schema, clinician, colleague, clinic_admin, case
):
    api, admin = api_client_for(clinician), api_client_for(clinic_admin)
    other = predicted_case(case.clinic, clinician, case.predictions.get().model_version, seed=4)
    response = api.post(f"/api/v1/cases/{case.pk}/withdraw/", {"reason": REASON})
    assert_documented(schema, "/api/v1/cases/{id}/withdraw/", "post", response, 200)
    assert response.json()["withdrawn_by"] == clinician.username
    assert response.json()["withdrawal_reason"] == REASON
    for client in (api, admin, api_client_for(colleague)):
        assert [c["id"] for c in client.get("/api/v1/cases/").json()["results"]] == [other.pk]
        assert client.get(f"/api/v1/cases/{case.pk}/").status_code == 404
    queue = api_client_for(colleague).get("/api/v1/review-queue/", {"state": "all"}).json()
    assert [item["case"] for item in queue["results"]] == [other.pk]
    patients = api.get("/api/v1/patients/").json()["results"]
    assert case.lesion.patient_id in [p["id"] for p in patients]  # the patient stays

    listed = admin.get("/api/v1/cases/withdrawn/")
    assert_documented(schema, "/api/v1/cases/withdrawn/", "get", listed, 200)
    assert [c["id"] for c in listed.json()["results"]] == [case.pk]
    forbidden = api.get("/api/v1/cases/withdrawn/")
    assert_documented(schema, "/api/v1/cases/withdrawn/", "get", forbidden, 403)
    # Only clinic admins see withdrawn cases: for anyone else there is nothing to restore.
    assert api.post(f"/api/v1/cases/{case.pk}/restore/", {"reason": REASON}).status_code == 404
    missing = admin.post(f"/api/v1/cases/{case.pk}/restore/", {})
    assert_documented(schema, "/api/v1/cases/{id}/restore/", "post", missing, 400)
    restored = admin.post(f"/api/v1/cases/{case.pk}/restore/", {"reason": "By mistake."})
    assert_documented(schema, "/api/v1/cases/{id}/restore/", "post", restored, 200)
    assert restored.json()["withdrawn_at"] is None
    assert api.get(f"/api/v1/cases/{case.pk}/").status_code == 200


def test_a_reviewed_case_is_withdrawn_over_the_api_by_a_clinic_admin_only(
    schema, clinician, colleague, clinic_admin, case
):
    reviewed(case, colleague)
    url = f"/api/v1/cases/{case.pk}/withdraw/"
    response = api_client_for(clinician).post(url, {"reason": REASON})
    assert_documented(schema, "/api/v1/cases/{id}/withdraw/", "post", response, 403)
    assert "clinic admin" in response.json()["detail"]
    assert not Case.all_objects.get(pk=case.pk).is_withdrawn
    assert api_client_for(clinic_admin).post(url, {"reason": REASON}).status_code == 200


def test_two_patients_are_merged_over_the_api(schema, clinician, clinic, other_clinic, case):
    api = api_client_for(clinician)
    duplicate = case.lesion.patient
    kept = PatientFactory(clinic=clinic)
    url = f"/api/v1/patients/{kept.pk}/merge/"
    itself = api.post(url, {"duplicate": kept.pk, "reason": REASON})
    assert_documented(schema, "/api/v1/patients/{id}/merge/", "post", itself, 400)
    assert itself.json() == {"duplicate": ["A record cannot be merged into itself."]}
    foreign = api.post(url, {"duplicate": PatientFactory(clinic=other_clinic).pk, "reason": "x"})
    assert foreign.status_code == 400
    assert "duplicate" in foreign.json()
    response = api.post(url, {"duplicate": duplicate.pk, "reason": REASON})
    assert_documented(schema, "/api/v1/patients/{id}/merge/", "post", response, 200)
    assert response.json()["id"] == kept.pk
    assert api.get(f"/api/v1/patients/{duplicate.pk}/").status_code == 404
    assert api.get(f"/api/v1/cases/{case.pk}/").json()["lesion"] == case.lesion_id
    assert api.get(f"/api/v1/lesions/{case.lesion_id}/").json()["patient"] == kept.pk


def test_the_schema_documents_the_corrections_with_examples(schema):
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/patients/{id}/", "patch"),
        ("/api/v1/lesions/{id}/", "patch"),
        ("/api/v1/patients/{id}/merge/", "post"),
        ("/api/v1/cases/{id}/move/", "post"),
        ("/api/v1/cases/{id}/withdraw/", "post"),
        ("/api/v1/cases/{id}/restore/", "post"),
    ]:
        operation = paths[path][method]
        body = operation["requestBody"]["content"]["application/json"]
        assert body.get("examples"), (path, method)
        assert "200" in operation["responses"], (path, method)
    assert "get" in paths["/api/v1/cases/withdrawn/"]
    components = schema["components"]["schemas"]
    assert "reason" in components["PatchedPatientUpdateRequest"]["properties"]
    assert "reason" in components["PatchedLesionUpdateRequest"]["properties"]
    assert components["CaseMoveRequest"]["required"] == ["lesion", "reason"]
    record = components["CaseRecord"]["properties"]
    assert {"withdrawn_at", "withdrawn_by", "withdrawal_reason"} <= set(record)
