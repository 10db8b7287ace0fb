import pytest
from django.urls import reverse

from diagnosis.models import CaseStatus
from ml.engine.model.checkpoint import save_checkpoint
from ml.models import Prediction
from ml.selectors import model_comparison
from ml.services import model_version_activate, model_version_register, shadow_run_enqueue
from tests.conftest import api_client_for, small_checkpoint
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate(tmp_path):
    path = tmp_path / "candidate.pt"
    save_checkpoint(small_checkpoint(seed=11), path)
    return model_version_register(path=path, name="candidate", version="2")


def test_activating_a_version_leaves_exactly_one_active(active_model, candidate):
    model_version_activate(model_version=candidate)
    active_model.refresh_from_db()
    assert candidate.is_active
    assert not active_model.is_active


@pytest.mark.usefixtures("client", "django_capture_on_commit_callbacks")
def test_a_shadow_run_adds_a_prediction_without_changing_the_case_result(
    clinic,
    clinician,
    active_model,
    candidate,
):
    case = predicted_case(clinic, clinician, active_model)
    shown = case.predictions.get()
    assert shadow_run_enqueue(case_ids=[case.pk], model_version=candidate) == 1
    shadow = Prediction.objects.get(case=case, model_version=candidate)
    assert shadow.shadow
    assert not shown.shadow
    case.refresh_from_db()
    assert case.status == CaseStatus.DONE
    body = api_client_for(clinician).get(f"/api/v1/cases/{case.pk}/").json()
    assert body["prediction"]["id"] == shown.pk
    # Running it again does not duplicate it.
    shadow_run_enqueue(case_ids=[case.pk], model_version=candidate)
    assert Prediction.objects.filter(case=case, model_version=candidate).count() == 1


def test_the_comparison_lists_the_cases_where_two_versions_disagree(
    client, admin_user, clinic, clinician, active_model, candidate
):
    same = predicted_case(clinic, clinician, active_model, malignant=0.1, top="NV", seed=1)
    differ = predicted_case(clinic, clinician, active_model, malignant=0.9, top="MEL", seed=2)
    only_first = predicted_case(clinic, clinician, active_model, seed=3)
    for case, (malignant, top, category) in (
        (same, (0.12, "NV", "benign")),
        (differ, (0.2, "NV", "benign")),
    ):
        probabilities = {c["code"]: 0.0 for c in candidate.classes} | {top: 1.0}
        Prediction.objects.create(
            case=case,
            model_version=candidate,
            malignant_probability=malignant,
            malignant_threshold=0.5,
            diagnosis_probabilities=probabilities,
            top_diagnosis=top,
            top_probability=1.0,
            category=category,
            uncertain=False,
            inference_ms=1,
            shadow=True,
        )
    comparison = model_comparison(active_model, candidate)
    assert comparison["compared"] == 2
    assert comparison["category_agreement"] == 0.5
    assert [d["case"].pk for d in comparison["disagreements"]] == [differ.pk]
    assert only_first.pk not in [d["case"].pk for d in comparison["disagreements"]]

    client.force_login(admin_user)
    page = client.get(
        reverse("admin:ml_modelversion_compare", args=[active_model.pk, candidate.pk])
    )
    assert page.status_code == 200
    assert b'id="category-agreement">0.500<' in page.content


def test_the_admin_action_queues_shadow_runs(
    client, admin_user, clinic, clinician, active_model, candidate
):
    case = predicted_case(clinic, clinician, active_model)
    client.force_login(admin_user)
    url = reverse("admin:diagnosis_case_changelist")
    form = client.post(url, {"action": "rerun_with_model_version", "_selected_action": [case.pk]})
    assert form.status_code == 200
    assert b"candidate 2" in form.content
    done = client.post(
        url,
        {
            "action": "rerun_with_model_version",
            "_selected_action": [case.pk],
            "model_version": candidate.pk,
            "apply": "Re-run",
        },
    )
    assert done.status_code == 302
    assert Prediction.objects.filter(case=case, model_version=candidate, shadow=True).exists()


@pytest.mark.usefixtures("active_model", "django_capture_on_commit_callbacks")
def test_a_case_started_too_often_without_finishing_is_set_aside(
    clinic,
    clinician,
    settings,
):
    from diagnosis import services
    from diagnosis.models import Case
    from tests import images
    from tests.conftest import upload
    from tests.factories import LesionFactory, PatientFactory

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    case = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    # As if a worker had died this many times mid-inference on it (acks_late redelivers it).
    Case.objects.filter(pk=case.pk).update(attempts=settings.PREDICT_MAX_ATTEMPTS)
    from ml.tasks import predict_case_task

    predict_case_task.delay(case.pk)
    case.refresh_from_db()
    assert case.status == "failed"
    assert "never finished" in case.error
    assert not Prediction.objects.filter(case=case).exists()
