"""``manage.py seed_demo``: the demo users (a staff auditor who sees model performance only, a
clinic admin) and, with the ISIC sample and an active model, demo patients with dated visits,
predicted and partly reviewed. A second run makes nothing new."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from diagnosis.models import Case, CaseStatus, Lesion, Membership, Patient, Role
from ml.models import Prediction, Review
from tests import images

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug(settings):
    settings.DEBUG = True


def seed(sample_dir) -> str:
    out = io.StringIO()
    call_command("seed_demo", sample_dir=str(sample_dir), stdout=out)
    return out.getvalue()


def test_the_demo_users_have_their_roles_and_the_auditor_sees_model_performance_only(
    client, tmp_path, active_model, settings
):
    output = seed(tmp_path / "no-sample")
    roles = {
        (m.user.username, m.clinic.name, m.role)
        for m in Membership.objects.select_related("user", "clinic")
    }
    assert roles == {
        ("demo", "Demo Clinic", Role.CLINICIAN),
        ("derm", "Demo Clinic", Role.DERMATOLOGIST),
        ("clinicadmin", "Demo Clinic", Role.CLINIC_ADMIN),
        ("outsider", "Other Clinic", Role.CLINICIAN),
    }
    auditor = get_user_model().objects.get(username="auditor")
    assert auditor.is_staff
    assert not auditor.is_superuser
    assert not auditor.memberships.exists()
    assert auditor.get_all_permissions() == {"ml.view_modelversion"}
    assert auditor.check_password(settings.DEMO_PASSWORD)
    assert "auditor" in output
    assert "clinicadmin" in output
    assert "no demo patients" in output

    client.force_login(auditor)
    assert client.get(reverse("admin:ml_modelversion_changelist")).status_code == 200
    performance = reverse("admin:ml_modelversion_performance", args=[active_model.pk])
    assert client.get(performance).status_code == 200
    assert client.get(reverse("admin:diagnosis_patient_changelist")).status_code == 403
    assert client.get(reverse("admin:ml_prediction_changelist")).status_code == 403


def test_a_second_run_makes_no_new_user(tmp_path):
    seed(tmp_path)
    users = get_user_model().objects.count()
    assert "Nothing new" in seed(tmp_path)
    assert get_user_model().objects.count() == users == 5


def test_without_an_active_model_there_are_no_demo_patients():
    images.needs_sample()
    output = seed(images.SAMPLE_DIR)
    assert "No active model" in output
    assert not Patient.objects.exists()


def test_seed_demo_refuses_to_run_with_debug_off(settings, tmp_path):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        seed(tmp_path)
    assert not get_user_model().objects.exists()


def test_with_the_sample_demo_patients_have_dated_visits_predicted_and_partly_reviewed(
    active_model,
):
    images.needs_sample()
    output = seed(images.SAMPLE_DIR)

    patients = Patient.objects.filter(clinic__name="Demo Clinic")
    assert sorted(p.identifier for p in patients) == ["DEMO-001", "DEMO-002", "DEMO-003"]
    # Record numbers only: nothing else about the person is made up.
    assert {(p.sex, p.year_of_birth, p.fitzpatrick_type) for p in patients} == {
        ("unknown", None, "")
    }
    lesions = Lesion.objects.filter(patient__in=patients)
    assert lesions.count() == 4
    assert all(lesion.anatomic_site for lesion in lesions)
    for lesion in lesions:
        visits = list(Case.objects.filter(lesion=lesion).order_by("captured_at"))
        assert len(visits) in (2, 3)
        assert (visits[-1].captured_at - visits[0].captured_at).days >= 150  # months apart
        assert all(case.status == CaseStatus.DONE for case in visits)
        assert all(
            Prediction.objects.filter(case=case, model_version=active_model).exists()
            for case in visits
        )
        # The earlier visits are reviewed; the latest waits in the review queue.
        reviewed = [Review.objects.filter(prediction__case=case).exists() for case in visits]
        assert reviewed == [True] * (len(visits) - 1) + [False]
    reviews = Review.objects.all()
    assert reviews.count() == 6
    assert {r.reviewer.username for r in reviews} == {"derm"}
    assert all(r.management for r in reviews)
    assert "DEMO-001" in output
    assert "6 reviews" in output

    again = seed(images.SAMPLE_DIR)
    assert "Nothing new" in again
    assert Case.objects.count() == 10
    assert Prediction.objects.count() == 10
    assert Review.objects.count() == 6
