import pytest
from django.urls import reverse

from diagnosis import services
from diagnosis.models import AuditAction, AuditEvent
from ml.engine.model.taxonomy import classes_from_dicts
from ml.engine.serve.base import interpret
from ml.models import ClinicOperatingPoint, Prediction
from tests import images
from tests.conftest import logged_in_client, upload
from tests.factories import LesionFactory, MembershipFactory, PatientFactory

pytestmark = pytest.mark.django_db

CURVE = [
    {"threshold": 0.9, "sensitivity": 0.50, "specificity": 0.98},
    {"threshold": 0.6, "sensitivity": 0.80, "specificity": 0.90},
    {"threshold": 0.4, "sensitivity": 0.91, "specificity": 0.75},
    {"threshold": 0.2, "sensitivity": 0.96, "specificity": 0.52},
    {"threshold": 0.05, "sensitivity": 1.00, "specificity": 0.10},
]


@pytest.fixture
def curved_model(active_model):
    active_model.metrics = {"validation_roc": CURVE}
    active_model.save()
    return active_model


@pytest.fixture
def clinic_admin(clinic):
    return MembershipFactory(clinic=clinic, role="clinic_admin").user


def test_the_highest_threshold_reaching_the_target_is_offered(curved_model):
    assert curved_model.operating_point_for(0.90)["threshold"] == 0.4
    assert curved_model.operating_point_for(0.80)["threshold"] == 0.6
    assert curved_model.operating_point_for(0.95) == {
        "threshold": 0.2,
        "sensitivity": 0.96,
        "specificity": 0.52,
    }


def test_a_clinic_admin_chooses_90_percent_sensitivity_and_predictions_use_it(
    client, clinic, clinic_admin, clinician, curved_model, django_capture_on_commit_callbacks
):
    logged_in_client(client, clinic_admin)
    url = reverse("ml:operating-point", args=[clinic.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert b"0.910" in page.content
    assert b"0.750" in page.content
    assert client.post(url, {"sensitivity": "0.9"}).status_code == 302
    point = ClinicOperatingPoint.objects.get(clinic=clinic, model_version=curved_model)
    assert (point.threshold, point.sensitivity, point.specificity) == (0.4, 0.91, 0.75)
    assert AuditEvent.objects.filter(
        action=AuditAction.UPDATE, target_type="clinicoperatingpoint"
    ).exists()
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
        ).case
    prediction = Prediction.objects.get(case=case)
    assert prediction.malignant_threshold == 0.4
    # Read with the clinic's threshold by the one rule (the heads may disagree: indeterminate).
    version = prediction.model_version
    _, category, _, uncertain = interpret(
        malignant_probability=prediction.malignant_probability,
        diagnosis_probabilities=prediction.diagnosis_probabilities,
        classes=classes_from_dicts(version.classes),
        thresholds={**(version.thresholds or {}), "malignant": 0.4},
    )
    assert (prediction.category, prediction.uncertain) == (category, uncertain)


@pytest.mark.usefixtures("curved_model")
def test_only_the_clinics_admins_choose(
    client,
    clinic,
    clinician,
    other_clinic,
):
    logged_in_client(client, clinician)
    assert client.get(reverse("ml:operating-point", args=[clinic.pk])).status_code == 403
    foreign_admin = MembershipFactory(clinic=other_clinic, role="clinic_admin").user
    client.logout()
    logged_in_client(client, foreign_admin)
    assert (
        client.post(
            reverse("ml:operating-point", args=[clinic.pk]), {"sensitivity": "0.9"}
        ).status_code
        == 404
    )
    assert not ClinicOperatingPoint.objects.exists()


@pytest.mark.usefixtures("active_model")
def test_a_model_without_a_curve_keeps_its_default(
    client,
    clinic,
    clinic_admin,
):
    logged_in_client(client, clinic_admin)
    url = reverse("ml:operating-point", args=[clinic.pk])
    assert b"without a validation curve" in client.get(url).content
    response = client.post(url, {"sensitivity": "0.9"})
    assert response.status_code == 400
    assert not ClinicOperatingPoint.objects.exists()
