"""The prediction flow against real services: PostgreSQL, Redis and a Celery worker process.

They skip with a reason when the services are absent, and fail instead when CI=true.
"""

import time

import pytest
from django.conf import settings

from diagnosis.models import Case, CaseStatus
from ml.models import Prediction
from tests import images
from tests.conftest import api_client_for, upload
from tests.factories import LesionFactory, PatientFactory
from tests.services import BROKER_URL, Worker, use_broker, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(real_services, tmp_path, settings):  # noqa: ARG001 - a fixture asked for its effect
    running = Worker(tmp_path, settings)
    yield running.process
    running.stop()


@pytest.mark.usefixtures("worker")
def test_upload_through_the_api_is_predicted_by_a_real_worker(
    clinician, clinic, active_model, sample_jpeg_bytes
):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    api = api_client_for(clinician)
    started = time.monotonic()
    response = api.post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(sample_jpeg_bytes)},
        format="multipart",
    )
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    case = wait_for(response.json()["id"])
    elapsed = time.monotonic() - started
    assert case.status == CaseStatus.DONE, case.error
    body = api.get(f"/api/v1/cases/{case.pk}/").json()
    assert body["prediction"]["model_version"]["id"] == active_model.pk
    assert Prediction.objects.filter(case=case).count() == 1
    print(f"\nupload → done through PostgreSQL + Redis + worker: {elapsed:.2f} s")


@pytest.mark.usefixtures("worker", "active_model")
def test_the_same_task_delivered_twice_stores_one_prediction(
    clinician,
    clinic,
):
    from ml.tasks import predict_case_task

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes())},
        format="multipart",
    )
    case_id = response.json()["id"]
    for _ in range(3):
        predict_case_task.delay(case_id)
    wait_for(case_id)
    time.sleep(2)  # let the duplicates run too
    assert Prediction.objects.filter(case_id=case_id).count() == 1
    assert Case.objects.get(pk=case_id).status == CaseStatus.DONE


@pytest.mark.usefixtures("worker")
def test_a_weights_file_changed_on_disk_is_refused_and_the_case_fails_readably(
    clinician, clinic, active_model
):
    with open(active_model.weights_path, "ab") as handle:
        handle.write(b"tampered")
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes())},
        format="multipart",
    )
    case = wait_for(response.json()["id"])
    assert case.status == CaseStatus.FAILED
    assert "refus" in case.error
    assert "SHA-256" in case.error
    assert not Prediction.objects.filter(case=case).exists()


@pytest.mark.usefixtures("worker", "active_model")
def test_the_sweeper_recovers_a_case_whose_message_was_lost(
    clinician,
    clinic,
):
    from ml.services import requeue_stuck_cases

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    use_broker("memory://", eager=False)  # the message goes nowhere: "lost"
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes())},
        format="multipart",
    )
    case_id = response.json()["id"]
    use_broker(BROKER_URL, eager=False)
    time.sleep(1)
    assert Case.objects.get(pk=case_id).status == CaseStatus.QUEUED
    Case.objects.filter(pk=case_id).update(enqueued_at=None)
    assert requeue_stuck_cases() >= 1
    assert wait_for(case_id).status == CaseStatus.DONE
    assert settings.CELERY_BEAT_SCHEDULE["requeue-stuck-cases"]["task"] == (
        "ml.tasks.requeue_stuck_cases_task"
    )
