import re
from datetime import UTC

import pytest
from django.urls import reverse

from diagnosis.models import Case, CaseStatus, Lesion, Patient
from ml.models import Prediction
from tests import images
from tests.conftest import drain, logged_in_client, stored_files, upload
from tests.factories import LesionFactory, PatientFactory

pytestmark = pytest.mark.django_db


def new_case_post(client, clinic, content, name="lesion.jpg", **extra):
    data = {
        "clinic": clinic.pk,
        "patient": "",
        "new_patient_identifier": "MRN-NEW-1",
        "new_patient_sex": "female",
        "new_patient_year_of_birth": "1961",
        "lesion": "",
        "new_lesion_label": "left shoulder",
        "new_lesion_anatomic_site": "Upper extremity:Shoulder",
        "image": upload(content, name),
        "image_type": "dermoscopic",
        "notes": "",
    }
    data.update(extra)
    return client.post(reverse("diagnosis:case-new"), data)


def test_login_page_uses_username_and_password_fields(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


def test_pages_require_login(client):
    response = client.get(reverse("ml:dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_passwords_are_hashed_with_argon2(clinician):
    assert clinician.password.startswith("argon2")


def test_password_reset_sends_an_email(client, clinician, mailoutbox):
    clinician.email = "clin@example.org"
    clinician.save()
    response = client.post("/accounts/password_reset/", {"email": "clin@example.org"})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    assert "/accounts/reset/" in mailoutbox[0].body


def test_new_case_page_lets_a_phone_take_a_photo_or_choose_a_file(client, clinician):
    response = logged_in_client(client, clinician).get(reverse("diagnosis:case-new"))
    assert response.status_code == 200
    # Without "capture", a phone offers its camera and its gallery or files alike.
    assert b"capture=" not in response.content
    assert b'accept="image/jpeg,image/png"' in response.content
    assert b'name="viewport"' in response.content


def test_each_lesion_option_names_its_patient_for_the_page_to_filter(client, clinician, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="P-1"))
    page = logged_in_client(client, clinician).get(reverse("diagnosis:case-new"))
    assert f'value="{lesion.pk}" data-patient="{lesion.patient_id}"'.encode() in page.content


def test_a_new_patient_cannot_be_filed_under_another_patients_lesion(client, clinician, clinic):
    """The reported defect: "— new patient —" with an existing lesion filed the image under
    that lesion's patient and dropped the new record number."""
    theirs = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="OTHER-1"))
    logged_in_client(client, clinician)
    response = new_case_post(client, clinic, images.jpeg_bytes(), lesion=theirs.pk)
    assert response.status_code == 400
    assert "A new patient has no lesions yet" in response.content.decode()
    assert b"choose the image again" in response.content
    assert b'value="MRN-NEW-1"' in response.content  # what was typed is kept
    assert not Case.objects.exists()
    assert not Patient.objects.filter(identifier="MRN-NEW-1").exists()


def test_a_lesion_of_another_patient_is_refused(client, clinician, clinic):
    mine = PatientFactory(clinic=clinic, identifier="MINE-1")
    theirs = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="OTHER-1"))
    logged_in_client(client, clinician)
    response = new_case_post(client, clinic, images.jpeg_bytes(), patient=mine.pk, lesion=theirs.pk)
    assert response.status_code == 400
    assert b"This lesion belongs to another patient." in response.content
    assert not Case.objects.exists()


def test_submitting_a_real_image_for_a_new_patient_gives_a_prediction(
    client, clinician, clinic, active_model, sample_jpeg_bytes, django_capture_on_commit_callbacks
):
    logged_in_client(client, clinician)
    with django_capture_on_commit_callbacks(execute=True):
        response = new_case_post(client, clinic, sample_jpeg_bytes)
    assert response.status_code == 302
    case = Case.objects.get()
    assert response["Location"] == case.get_absolute_url()
    assert case.lesion.patient.identifier == "MRN-NEW-1"
    assert case.lesion.anatomic_site == "Upper extremity:Shoulder"
    assert case.status == CaseStatus.DONE
    assert case.submitted_by == clinician
    prediction = Prediction.objects.get(case=case)
    assert prediction.model_version == active_model

    page = client.get(case.get_absolute_url())
    assert page.status_code == 200
    assert prediction.get_category_display().encode() in page.content
    assert str(active_model).encode() in page.content
    assert b"not a diagnosis" in page.content


def test_case_page_polls_until_the_result_arrives(client, clinician, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    logged_in_client(client, clinician)
    # No model registered and no worker ran: the case stays queued.
    from diagnosis import services

    case = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    page = client.get(case.get_absolute_url())
    assert b'data-pending="true"' in page.content
    assert b"case_detail.js" in page.content
    status = client.get(reverse("ml:case-status", args=[case.pk])).json()
    assert status["status"] == "queued"
    assert status["pending"] is True
    assert "Waiting for the model" in status["html"]


def test_a_demo_model_prediction_carries_the_demo_banner(
    client, clinician, clinic, django_capture_on_commit_callbacks
):
    from ml.services import demo_model_ensure

    demo_model_ensure()
    logged_in_client(client, clinician)
    with django_capture_on_commit_callbacks(execute=True):
        new_case_post(client, clinic, images.jpeg_bytes(size=(240, 240)))
    case = Case.objects.get()
    assert case.status == CaseStatus.DONE
    page = client.get(case.get_absolute_url())
    assert b"DEMO model" in page.content
    assert b"predictions are meaningless" in page.content


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (images.jpeg_bytes(size=(300, 300))[:400], "truncated.jpg", "damaged or truncated"),
        (images.png_bomb(), "bomb.png", "pixels"),
        (b"just some text, not an image\n" * 10, "notes.jpg", "Only JPEG and PNG"),
        (b"\xff\xd8\xff" + b"\0" * (25 * 1024 * 1024), "huge.jpg", "limit is 20.0 MB"),
    ],
    ids=["truncated-jpeg", "png-bomb", "text-as-jpg", "25-mb"],
)
def test_a_refused_image_creates_nothing_and_says_why(
    client, clinician, clinic, private_storage, content, name, message
):
    logged_in_client(client, clinician)
    response = new_case_post(client, clinic, content, name=name)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Case.objects.count() == 0
    assert Patient.objects.count() == 0
    assert Lesion.objects.count() == 0
    assert stored_files(private_storage) == []


def test_the_same_image_twice_for_a_lesion_is_one_case(client, clinician, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    logged_in_client(client, clinician)
    content = images.jpeg_bytes()
    for _ in range(2):
        response = new_case_post(
            client, clinic, content, patient=lesion.patient.pk, lesion=lesion.pk
        )
        assert response.status_code == 302
    assert Case.objects.filter(lesion=lesion).count() == 1


def test_an_existing_patient_identifier_is_refused_with_a_message(client, clinician, clinic):
    PatientFactory(clinic=clinic, identifier="MRN-NEW-1")
    logged_in_client(client, clinician)
    response = new_case_post(client, clinic, images.jpeg_bytes())
    assert response.status_code == 400
    assert b"already has a patient with this identifier" in response.content
    assert Case.objects.count() == 0


def test_a_lesion_of_another_clinic_cannot_be_picked(client, clinician, clinic, other_clinic):
    foreign = LesionFactory(patient=PatientFactory(clinic=other_clinic))
    logged_in_client(client, clinician)
    response = new_case_post(
        client, clinic, images.jpeg_bytes(), patient=foreign.patient.pk, lesion=foreign.pk
    )
    assert response.status_code == 400
    assert Case.objects.count() == 0


def test_patient_search_finds_by_identifier_within_the_clinic(
    client, clinician, clinic, other_clinic
):
    PatientFactory(clinic=clinic, identifier="ABC-123")
    PatientFactory(clinic=clinic, identifier="XYZ-999")
    PatientFactory(clinic=other_clinic, identifier="ABC-777")
    response = logged_in_client(client, clinician).get(
        reverse("diagnosis:patient-list"), {"q": "abc"}
    )
    assert b"ABC-123" in response.content
    assert b"XYZ-999" not in response.content
    assert b"ABC-777" not in response.content


def test_patient_page_shows_each_lesion_timeline_oldest_first(client, clinician, clinic):
    from datetime import datetime

    from diagnosis import services

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic), label="back mole")
    later = services.case_submit(
        user=clinician,
        lesion=lesion,
        upload=upload(images.jpeg_bytes(color=(1, 2, 3))),
        captured_at=datetime(2025, 6, 1, tzinfo=UTC),
    ).case
    earlier = services.case_submit(
        user=clinician,
        lesion=lesion,
        upload=upload(images.jpeg_bytes(color=(9, 8, 7))),
        captured_at=datetime(2024, 1, 15, tzinfo=UTC),
    ).case
    page = logged_in_client(client, clinician).get(lesion.patient.get_absolute_url()).content
    assert b"back mole" in page
    first = page.index(reverse("diagnosis:case-thumbnail", args=[earlier.pk, 256]).encode())
    second = page.index(reverse("diagnosis:case-thumbnail", args=[later.pk, 256]).encode())
    assert first < second
    assert b"2024-01-15" in page
    assert b"2025-06-01" in page


@pytest.fixture
def clinic_case(clinic, clinician):
    from diagnosis import services

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    return services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case


def _urls_for(case):
    return [
        case.lesion.patient.get_absolute_url(),
        case.get_absolute_url(),
        reverse("ml:case-status", args=[case.pk]),
        reverse("diagnosis:case-image", args=[case.pk]),
    ]


def test_owner_and_colleague_see_the_case_and_its_image(client, clinic_case, clinician, colleague):
    for user in (clinician, colleague):
        client.logout()
        logged_in_client(client, user)
        for url in _urls_for(clinic_case):
            response = client.get(url)
            if response.streaming:
                drain(response)
            assert response.status_code == 200, url


def test_outsider_gets_404_for_patient_case_status_and_image(client, clinic_case, outsider):
    logged_in_client(client, outsider)
    for url in _urls_for(clinic_case):
        assert client.get(url).status_code == 404, url
    response = client.post(reverse("diagnosis:case-retry", args=[clinic_case.pk]))
    assert response.status_code == 404


def test_outsider_dashboard_and_patient_list_do_not_show_other_clinics(
    client, clinic_case, outsider
):
    logged_in_client(client, outsider)
    identifier = clinic_case.lesion.patient.identifier.encode()
    assert identifier not in client.get(reverse("ml:dashboard")).content
    assert identifier not in client.get(reverse("diagnosis:patient-list")).content


@pytest.mark.usefixtures("settings")
def test_case_image_is_private_and_never_cached(
    client,
    clinic_case,
    clinician,
):
    response = logged_in_client(client, clinician).get(
        reverse("diagnosis:case-image", args=[clinic_case.pk])
    )
    assert response["Cache-Control"] == "no-store, private"
    assert response["Content-Type"] == "image/jpeg"
    with clinic_case.image.open("rb") as stored:
        assert drain(response) == stored.read()
    # The file is under no public URL: guessing its storage path gets nothing.
    for prefix in ("/", "/media/", "/static/", "/private/"):
        guessed = client.get(prefix + clinic_case.image.name)
        assert guessed.status_code == 404, prefix


def test_a_failed_case_shows_its_reason_and_can_be_retried(
    client, clinic_case, clinician, django_capture_on_commit_callbacks
):
    from diagnosis.services import case_mark_failed

    case_mark_failed(case_id=clinic_case.pk, reason="No active model is registered.")
    logged_in_client(client, clinician)
    page = client.get(clinic_case.get_absolute_url())
    assert b"No active model is registered." in page.content
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("diagnosis:case-retry", args=[clinic_case.pk]))
    clinic_case.refresh_from_db()
    # Still no model: it fails again, readably.
    assert clinic_case.status == CaseStatus.FAILED
    assert clinic_case.error == "No active model is registered."


# --- list pages run a constant number of queries ------------------------------------------


def _rows_only_model():
    """A registry row without weights: enough for pages that list predictions."""
    from ml.engine.model.taxonomy import ISIC2019_CLASSES
    from ml.models import ModelVersion

    return ModelVersion.objects.create(
        name="rows-only",
        version="1",
        backbone="resnet18",
        classes=[c.as_dict() for c in ISIC2019_CLASSES],
        weights_file="absent.pt",
        weights_sha256="0" * 64,
        is_active=True,
    )


def _add_cases(clinic, user, model_version, seeds, *, patient=None):
    """Cases in every state a list shows: predicted (some uncertain, some reviewed, one with
    a heatmap name), queued and failed; each on a new patient unless one is given."""
    from diagnosis import services
    from ml.models import Review

    for seed in seeds:
        lesion = (
            LesionFactory(patient=PatientFactory(clinic=clinic))
            if patient is None
            else Lesion.objects.get_or_create(
                patient=patient, clinic=clinic, label=f"lesion {seed % 3}"
            )[0]
        )
        content = images.jpeg_bytes(color=(seed % 256, seed // 256, 77))
        case = services.case_submit(user=user, lesion=lesion, upload=upload(content)).case
        if seed % 4 == 3:
            Case.objects.filter(pk=case.pk).update(status=CaseStatus.FAILED, error="No model.")
            continue
        if seed % 4 == 2:
            continue  # queued
        prediction = Prediction.objects.create(
            case=case,
            model_version=model_version,
            malignant_probability=0.3 + seed % 5 / 10,
            malignant_threshold=0.5,
            diagnosis_probabilities={"NV": 0.6, "MEL": 0.4},
            top_diagnosis="NV",
            top_probability=0.6,
            category="benign",
            uncertain=seed % 2 == 0,
            heatmap=f"heatmaps/{clinic.pk}/absent.png" if seed % 3 == 0 else "",
            inference_ms=12,
        )
        Case.objects.filter(pk=case.pk).update(status=CaseStatus.DONE)
        if seed % 5 == 1:
            Review.objects.create(prediction=prediction, reviewer=user, verdict="agree")


LIST_PAGES = [
    ("dashboard", lambda _patient: reverse("ml:dashboard")),
    ("patient list", lambda _patient: reverse("diagnosis:patient-list")),
    ("patient timeline", lambda patient: patient.get_absolute_url()),
    ("review queue", lambda _patient: reverse("ml:review-queue")),
    ("review queue, all", lambda _patient: reverse("ml:review-queue") + "?state=all"),
    ("case detail", lambda patient: _first_case_of(patient).get_absolute_url()),
]


def _first_case_of(patient) -> Case:
    return Case.objects.filter(lesion__patient=patient).order_by("pk").first()


@pytest.mark.parametrize(("name", "url_for"), LIST_PAGES, ids=[name for name, _ in LIST_PAGES])
def test_list_pages_run_a_constant_number_of_queries(client, clinic, colleague, name, url_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    model_version = _rows_only_model()
    patient = PatientFactory(clinic=clinic)
    logged_in_client(client, colleague)  # a dermatologist: the review queue and its rows

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url_for(patient))
        assert response.status_code == 200
        return len(captured)

    # seed 1 is reviewed: every list (and the dashboard's review lists) has rows from the start
    _add_cases(clinic, colleague, model_version, [1])
    _add_cases(clinic, colleague, model_version, [0, 3], patient=patient)  # one lesion, 2 cases
    few = queries()
    _add_cases(clinic, colleague, model_version, range(2, 21))
    _add_cases(clinic, colleague, model_version, set(range(1, 20)) - {3}, patient=patient)
    many = queries()
    assert many == few, f"{name}: {few} queries with 1 case, {many} with 20"


def test_a_repeated_submit_of_the_new_case_page_lands_on_the_first_case(client, clinician, clinic):
    """The reported defect: a double click said "this clinic already has a patient with this
    identifier" although the first click had made patient and case."""
    logged_in_client(client, clinician)
    page = client.get(reverse("diagnosis:case-new")).content.decode()
    token = re.search(r'name="form_token" value="([0-9a-f-]+)"', page).group(1)
    first = new_case_post(client, clinic, images.jpeg_bytes(), form_token=token)
    second = new_case_post(client, clinic, images.jpeg_bytes(color=(9, 9, 9)), form_token=token)
    case = Case.objects.get()
    assert first.status_code == 302
    assert second.status_code == 302
    assert first["Location"] == second["Location"] == case.get_absolute_url()
    assert Patient.objects.filter(identifier="MRN-NEW-1").count() == 1
    other = new_case_post(client, clinic, images.jpeg_bytes(), new_patient_identifier="MRN-2")
    assert other.status_code == 302  # no token (an old page): an ordinary submit
    assert Case.objects.count() == 2


@pytest.mark.usefixtures("active_model")
def test_the_message_after_an_upload_never_contradicts_the_result(client, clinician, clinic):
    logged_in_client(client, clinician)
    response = new_case_post(client, clinic, images.jpeg_bytes())
    page = client.get(response["Location"]).content.decode()
    assert "Image received" in page
    assert "on its way" not in page  # was shown above a finished result


def test_error_pages_and_small_texts_read_as_a_person_expects(client, clinician, clinic):
    logged_in_client(client, clinician)
    forbidden = client.get(reverse("ml:review-queue"))  # a clinician does not review
    assert forbidden.status_code == 403
    assert "<h1>Not allowed</h1>" in forbidden.content.decode()
    assert "dermatologists and clinic admins" in forbidden.content.decode()
    missing = client.get(reverse("ml:case-detail", args=[987654]))
    assert missing.status_code == 404
    assert "<h1>Not found</h1>" in missing.content.decode()
    new_case = client.get(reverse("diagnosis:case-new")).content.decode()
    assert ">Clinic:<" not in new_case  # one clinic: no empty label
    patients = client.get(reverse("diagnosis:patient-list")).content.decode()
    assert "New patient</a>" in patients
    PatientFactory(clinic=clinic)
    from diagnosis import services

    services.case_submit(
        user=clinician,
        lesion=LesionFactory(patient=PatientFactory(clinic=clinic)),
        upload=upload(images.jpeg_bytes()),
    )
    dashboard = client.get(reverse("ml:dashboard")).content.decode()
    assert "<strong>1</strong> case<" in dashboard
