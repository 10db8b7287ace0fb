import io

import pytest
from rest_framework.test import APIClient

from diagnosis import services
from diagnosis.models import Case, CaseStatus, Lesion, Patient
from tests import images
from tests.conftest import api_client_for, drain, stored_files, upload
from tests.factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory

pytestmark = pytest.mark.django_db


def test_token_endpoint_gives_a_token_for_valid_credentials_only(clinician):
    api = APIClient()
    ok = api.post(
        "/api/v1/auth/token/",
        {"username": clinician.username, "password": "correct-horse-battery-staple"},
    )
    assert ok.status_code == 200
    assert len(ok.json()["token"]) == 40
    bad = api.post("/api/v1/auth/token/", {"username": clinician.username, "password": "nope"})
    assert bad.status_code == 400
    assert "token" not in bad.json()


def test_anonymous_requests_are_401():
    assert APIClient().get("/api/v1/patients/").status_code == 401


def test_patient_lesion_case_flow_ends_with_a_prediction(
    clinician, clinic, active_model, sample_jpeg_bytes, django_capture_on_commit_callbacks
):
    api = api_client_for(clinician)
    patient = api.post(
        "/api/v1/patients/", {"identifier": "API-1", "sex": "male", "year_of_birth": 1950}
    )
    assert patient.status_code == 201, patient.content
    assert patient.json()["clinic"] == clinic.pk  # implied: the user's only clinic
    lesion = api.post(
        "/api/v1/lesions/",
        {"patient": patient.json()["id"], "anatomic_site": "Trunk", "label": "chest"},
    )
    assert lesion.status_code == 201, lesion.content
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/v1/cases/",
            {"lesion": lesion.json()["id"], "image": upload(sample_jpeg_bytes), "notes": "itchy"},
            format="multipart",
        )
    assert created.status_code == 202, created.content
    assert created.json()["status"] == "queued"
    case_id = created.json()["id"]

    body = api.get(f"/api/v1/cases/{case_id}/").json()
    assert body["status"] == "done"
    assert body["error"] == ""
    prediction = body["prediction"]
    assert prediction["model_version"]["id"] == active_model.pk
    assert prediction["category"] in {"benign", "indeterminate", "malignant"}
    assert 0 <= prediction["malignant_probability"] <= 1
    assert set(prediction["diagnosis_probabilities"]) == {c["code"] for c in active_model.classes}
    assert prediction["top_diagnosis"] in prediction["diagnosis_probabilities"]
    assert isinstance(prediction["uncertain"], bool)
    assert "heatmap_url" in prediction
    assert "not a diagnosis" in prediction["disclaimer"]

    image = api.get(f"/api/v1/cases/{case_id}/image/")
    assert image.status_code == 200
    assert image["Cache-Control"] == "no-store, private"
    from PIL import Image

    stored = Image.open(io.BytesIO(drain(image)))
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (224, 224))


@pytest.mark.usefixtures("clinic")
def test_a_member_of_several_clinics_must_name_the_clinic(
    clinician,
):
    second = ClinicFactory()
    MembershipFactory(user=clinician, clinic=second)
    api = api_client_for(clinician)
    missing = api.post("/api/v1/patients/", {"identifier": "X-1"})
    assert missing.status_code == 400
    assert "clinic" in missing.json()
    ok = api.post("/api/v1/patients/", {"identifier": "X-1", "clinic": second.pk})
    assert ok.status_code == 201
    assert ok.json()["clinic"] == second.pk


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (images.jpeg_bytes(size=(300, 300))[:400], "truncated.jpg", "damaged or truncated"),
        (images.png_bomb(), "bomb.png", "pixels"),
        (b"plain text\n" * 50, "photo.jpg", "Only JPEG and PNG"),
        (b"\xff\xd8\xff" + b"\0" * (25 * 1024 * 1024), "huge.jpg", "limit is 20.0 MB"),
    ],
    ids=["truncated-jpeg", "png-bomb", "text-as-jpg", "25-mb"],
)
def test_a_refused_upload_is_400_with_a_message_and_leaves_nothing(
    clinician, clinic, private_storage, content, name, message
):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    response = api_client_for(clinician).post(
        "/api/v1/cases/", {"lesion": lesion.pk, "image": upload(content, name)}, format="multipart"
    )
    assert response.status_code == 400
    assert message in " ".join(response.json()["image"])
    assert Case.objects.count() == 0
    assert stored_files(private_storage) == []


def test_the_same_image_twice_returns_the_existing_case(clinician, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    api = api_client_for(clinician)
    content = images.jpeg_bytes()
    first = api.post(
        "/api/v1/cases/", {"lesion": lesion.pk, "image": upload(content)}, format="multipart"
    )
    again = api.post(
        "/api/v1/cases/", {"lesion": lesion.pk, "image": upload(content)}, format="multipart"
    )
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Case.objects.count() == 1


@pytest.fixture
def foreign_records(other_clinic, outsider):
    patient = PatientFactory(clinic=other_clinic)
    lesion = LesionFactory(patient=patient)
    case = services.case_submit(
        user=outsider, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    return patient, lesion, case


def test_outsider_gets_404_for_every_object_of_another_clinic(clinician, foreign_records):
    patient, lesion, case = foreign_records
    api = api_client_for(clinician)
    for url in (
        f"/api/v1/patients/{patient.pk}/",
        f"/api/v1/lesions/{lesion.pk}/",
        f"/api/v1/cases/{case.pk}/",
        f"/api/v1/cases/{case.pk}/image/",
        f"/api/v1/cases/{case.pk}/heatmap/",
    ):
        assert api.get(url).status_code == 404, url
    assert api.patch(f"/api/v1/patients/{patient.pk}/", {"sex": "male"}).status_code == 404
    listing = api.get("/api/v1/cases/").json()
    assert case.pk not in [c["id"] for c in listing["results"]]


def test_colleague_sees_the_clinics_records(clinician, colleague, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    case = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    api = api_client_for(colleague)
    assert api.get(f"/api/v1/cases/{case.pk}/").json()["submitted_by"] == clinician.username
    assert api.get(f"/api/v1/patients/{lesion.patient_id}/").status_code == 200


def test_a_foreign_id_in_a_related_field_is_400_never_a_silent_link(
    clinician, foreign_records, other_clinic
):
    patient, lesion, _ = foreign_records
    api = api_client_for(clinician)
    response = api.post("/api/v1/lesions/", {"patient": patient.pk, "label": "sneaky"})
    assert response.status_code == 400
    assert "patient" in response.json()
    response = api.post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes())},
        format="multipart",
    )
    assert response.status_code == 400
    assert "lesion" in response.json()
    response = api.post("/api/v1/patients/", {"identifier": "P-9", "clinic": other_clinic.pk})
    assert response.status_code == 400
    assert "clinic" in response.json()
    assert Lesion.objects.filter(label="sneaky").count() == 0
    assert not Patient.objects.filter(identifier="P-9").exists()


def test_server_owned_case_fields_cannot_be_set(clinician, clinic, outsider):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {
            "lesion": lesion.pk,
            "image": upload(images.jpeg_bytes()),
            "status": "done",
            "submitted_by": outsider.pk,
            "clinic": 999,
            "error": "x",
        },
        format="multipart",
    )
    assert response.status_code == 202
    case = Case.objects.get()
    assert case.status == CaseStatus.QUEUED
    assert case.submitted_by == clinician
    assert case.clinic == clinic
    assert case.error == ""


def test_models_endpoint_lists_versions_and_the_active_one(clinician, active_model):
    api = api_client_for(clinician)
    listing = api.get("/api/v1/models/").json()
    assert [m["id"] for m in listing["results"]] == [active_model.pk]
    assert api.get("/api/v1/models/active/").json()["name"] == "test-resnet18"


@pytest.mark.usefixtures("clinician")
def test_openapi_schema_and_docs_are_served(
    client,
):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/patients/",
        "/api/v1/lesions/",
        "/api/v1/cases/",
        "/api/v1/cases/{id}/image/",
        "/api/v1/models/",
        "/api/v1/auth/token/",
    ):
        assert path in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # assets are vendored (clinics behind firewalls)
