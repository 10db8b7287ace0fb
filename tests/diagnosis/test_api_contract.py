"""The API's contract for clinic systems: identity, tokens, retries, limits, lists."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from diagnosis.models import Case, Patient
from tests import images
from tests.conftest import api_client_for, upload
from tests.factories import (
    ClinicFactory,
    LesionFactory,
    MembershipFactory,
    PatientFactory,
    predicted_case,
)

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("clinic")
def test_me_lists_the_users_clinics_and_roles(
    clinician,
):
    second = ClinicFactory(name="Second")
    MembershipFactory(user=clinician, clinic=second, role="clinic_admin")
    me = api_client_for(clinician).get("/api/v1/me/").json()
    assert me["username"] == clinician.username
    assert sorted((c["name"], c["role"]) for c in me["clinics"]) == [
        ("North Clinic", "clinician"),
        ("Second", "clinic_admin"),
    ]


def test_a_revoked_token_no_longer_works(clinician):
    api = api_client_for(clinician)
    assert api.get("/api/v1/me/").status_code == 200
    assert api.delete("/api/v1/auth/token/").status_code == 204
    assert api.get("/api/v1/me/").status_code == 401


def test_token_requests_are_throttled(clinician, monkeypatch):
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "token", "3/min")
    api = APIClient()
    codes = [
        api.post(
            "/api/v1/auth/token/", {"username": clinician.username, "password": "x"}
        ).status_code
        for _ in range(5)
    ]
    assert codes == [400, 400, 400, 429, 429]


def test_uploads_are_throttled_per_user(clinician, colleague, clinic, monkeypatch):
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "uploads", "2/min")
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    api = api_client_for(clinician)
    codes = [
        api.post(
            "/api/v1/cases/",
            {"lesion": lesion.pk, "image": upload(images.jpeg_bytes(color=(60 * i, 0, 0)))},
            format="multipart",
        ).status_code
        for i in range(3)
    ]
    assert codes == [202, 202, 429]
    other = api_client_for(colleague).post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes(color=(9, 9, 9)))},
        format="multipart",
    )
    assert other.status_code == 202  # another user has their own allowance
    assert api.get("/api/v1/cases/").status_code == 200  # reads are not upload-throttled


def test_idempotency_key_gives_back_the_same_case_and_refuses_another_body(clinician, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    api = api_client_for(clinician)
    content = images.jpeg_bytes()

    def post(body_image, key="retry-123", notes=""):
        return api.post(
            "/api/v1/cases/",
            {"lesion": lesion.pk, "image": upload(body_image), "notes": notes},
            format="multipart",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    first, again = post(content), post(content)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    conflict = post(images.jpeg_bytes(color=(1, 1, 1)))
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.json()["detail"]
    assert post(content, notes="different notes").status_code == 409
    assert Case.objects.count() == 1
    # Keys belong to the user: another user's same key is independent.
    other = api_client_for(MembershipFactory(clinic=clinic).user).post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes(color=(2, 2, 2)))},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="retry-123",
    )
    assert other.status_code == 202
    assert Case.objects.count() == 2


def test_page_size_is_capped(clinician, clinic):
    Patient.objects.bulk_create(
        [Patient(clinic=clinic, identifier=f"BULK-{i:04d}") for i in range(205)]
    )
    body = api_client_for(clinician).get("/api/v1/patients/", {"page_size": 1000}).json()
    assert body["count"] == 205
    assert len(body["results"]) == 200
    small = api_client_for(clinician).get("/api/v1/patients/", {"page_size": 7}).json()
    assert len(small["results"]) == 7


def test_cases_filter_by_prediction_and_review(clinician, colleague, clinic, active_model):
    from ml.services import review_submit

    nevus = predicted_case(clinic, clinician, active_model, malignant=0.1, top="NV", seed=1)
    melanoma = predicted_case(clinic, clinician, active_model, malignant=0.9, top="MEL", seed=2)
    review_submit(
        reviewer=colleague,
        prediction=melanoma.predictions.get(),
        verdict="agree",
        management="no_action",
    )
    api = api_client_for(clinician)

    def ids(**params):
        return [c["id"] for c in api.get("/api/v1/cases/", params).json()["results"]]

    assert ids(category="malignant") == [melanoma.pk]
    assert ids(top_diagnosis="NV") == [nevus.pk]
    assert ids(reviewed="true") == [melanoma.pk]
    assert ids(reviewed="false") == [nevus.pk]
    assert sorted(ids(model_version=active_model.pk)) == sorted([nevus.pk, melanoma.pk])
    assert ids(model_version=active_model.pk + 99) == []
    assert ids(patient=nevus.lesion.patient_id) == [nevus.pk]
    assert ids(status="queued") == []


LIST_ENDPOINTS = [
    "/api/v1/patients/",
    "/api/v1/lesions/",
    "/api/v1/cases/",
    "/api/v1/models/",
    "/api/v1/review-queue/",
    "/api/v1/audit-events/",
    "/api/v1/webhooks/",
    "/api/v1/memberships/",
]


def test_every_list_endpoint_is_checked():
    from skinsense_site.api_urls import router

    lists = {f"/api/v1/{prefix}/" for prefix, _, _ in router.registry}
    assert lists == set(LIST_ENDPOINTS)


@pytest.mark.parametrize("url", LIST_ENDPOINTS)
def test_list_endpoints_run_a_constant_number_of_queries(url, clinic, active_model):
    from diagnosis.models import Webhook

    admin = MembershipFactory(clinic=clinic, role="clinic_admin").user  # may read every list
    api = api_client_for(admin)

    def add_rows(seeds):
        for seed in seeds:
            predicted_case(clinic, admin, active_model, seed=seed)
            Webhook.objects.create(clinic=clinic, url=f"https://example.org/{seed}")
            MembershipFactory(clinic=clinic)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(url, {"page_size": 200}).status_code == 200
        return len(captured)

    add_rows([0])
    one = queries()
    add_rows(range(1, 12))
    assert queries() == one


@pytest.mark.parametrize(
    "value", ["0301-07-04T18:31:38-20:03", "0001-01-01T00:00:00+23:59", "2026-01-01T00:00:00Z"]
)
def test_date_filters_in_any_offset_never_break_the_server(clinician, value):
    # found by schemathesis on PostgreSQL: an offset of -20:03 was passed to the database as is
    api = api_client_for(clinician)
    for url in ("/api/v1/cases/", "/api/v1/audit-events/"):
        response = api.get(url, {"created_after": value, "at_after": value})
        assert response.status_code in (200, 400, 403), (url, response.status_code)


def test_clinic_admins_manage_members_and_a_clinic_keeps_an_admin(clinician, clinic, other_clinic):
    from diagnosis.models import AuditAction, AuditEvent, Membership
    from tests.factories import UserFactory

    admin = MembershipFactory(clinic=clinic, role="clinic_admin").user
    newcomer = UserFactory(username="newcomer")
    api = api_client_for(admin)
    assert api_client_for(clinician).get("/api/v1/memberships/").status_code == 403
    refused = api_client_for(clinician).post(
        "/api/v1/memberships/", {"clinic": clinic.pk, "username": "newcomer", "role": "clinician"}
    )
    assert refused.status_code == 403
    added = api.post(
        "/api/v1/memberships/", {"clinic": clinic.pk, "username": "newcomer", "role": "clinician"}
    )
    assert added.status_code == 201, added.content
    foreign = api.post(
        "/api/v1/memberships/",
        {"clinic": other_clinic.pk, "username": "newcomer", "role": "clinician"},
    )
    assert foreign.status_code == 400  # not a clinic of theirs
    membership_id = added.json()["id"]
    promoted = api.patch(f"/api/v1/memberships/{membership_id}/", {"role": "dermatologist"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "dermatologist"
    own = Membership.objects.get(user=admin, clinic=clinic)
    last_admin = api.patch(f"/api/v1/memberships/{own.pk}/", {"role": "clinician"})
    assert last_admin.status_code == 400
    assert "at least one clinic admin" in str(last_admin.json())
    assert api.delete(f"/api/v1/memberships/{membership_id}/").status_code == 204
    assert not Membership.objects.filter(user=newcomer).exists()
    assert AuditEvent.objects.filter(action=AuditAction.CREATE, target_type="membership").exists()
