"""The prediction flow against real services: PostgreSQL, Redis and a Celery worker process.

They skip with a reason when the services are absent, and fail instead when CI=true.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from diagnosis.models import Case, CaseStatus
from ml.models import Prediction
from skinsense_site.celery import app as celery_app
from tests import images
from tests.conftest import api_client_for, upload
from tests.factories import LesionFactory, PatientFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# This run's own keys on the shared Redis, so concurrent test runs never take each other's tasks.
KEY_PREFIX = f"skinsense-test-{os.getpid()}:"
ROOT = Path(__file__).resolve().parents[1]


def _flush_broker():
    import redis

    client = redis.Redis.from_url(BROKER_URL)
    for key in client.scan_iter(match=KEY_PREFIX + "*"):
        client.delete(key)


def _use_broker(url: str, eager: bool) -> None:
    options = dict(celery_app.conf.broker_transport_options or {})
    if url.startswith("redis"):
        options["global_keyprefix"] = KEY_PREFIX
    else:
        options.pop("global_keyprefix", None)
    celery_app.conf.update(
        broker_url=url, task_always_eager=eager, broker_transport_options=options
    )
    # Drop any cached connection pool so the new broker URL takes effect.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


class Worker:
    """A real Celery worker process (its own OS process) consuming this run's Redis queues."""

    def __init__(self, tmp_path, settings, *, pool="solo", extra_env=None):
        _flush_broker()
        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "skinsense_site.settings",
            "DATABASE_URL": (
                f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
                f"{db['PORT'] or 5432}/{db['NAME']}"
            ),
            "CELERY_BROKER_URL": BROKER_URL,
            "CELERY_KEY_PREFIX": KEY_PREFIX,
            "PRIVATE_MEDIA_ROOT": str(settings.PRIVATE_MEDIA_ROOT),
            "MODEL_ROOT": str(settings.MODEL_ROOT),
            "INFERENCE_DEVICE": "cpu",
            "INFERENCE_THREADS": "1",
            **(extra_env or {}),
        }
        self.log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "skinsense_site",
                "worker",
                "-Q",
                "inference,default",
                "--pool",
                pool,
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{os.getpid()}@%h",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while "ready." not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail("the Celery worker did not start:\n" + self.log()[-3000:])
            time.sleep(0.2)
        _use_broker(BROKER_URL, eager=False)

    def log(self) -> str:
        return self.log_path.read_text()

    def children(self) -> list[int]:
        """The prefork pool's child processes (where tasks run)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self):
        _use_broker("memory://", eager=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        _flush_broker()


@pytest.fixture
def worker(real_services, tmp_path, settings):
    running = Worker(tmp_path, settings)
    yield running.process
    running.stop()


def wait_for(case_id: int, *, timeout: float = 90) -> Case:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        case = Case.objects.get(pk=case_id)
        if case.status in (CaseStatus.DONE, CaseStatus.FAILED):
            return case
        time.sleep(0.1)
    pytest.fail(f"case {case_id} did not finish within {timeout} s (status {case.status})")


def test_upload_through_the_api_is_predicted_by_a_real_worker(
    worker, clinician, clinic, active_model, sample_jpeg_bytes
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


def test_the_same_task_delivered_twice_stores_one_prediction(
    worker, clinician, clinic, active_model
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


def test_a_weights_file_changed_on_disk_is_refused_and_the_case_fails_readably(
    worker, clinician, clinic, active_model
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
    assert "refus" in case.error and "SHA-256" in case.error
    assert not Prediction.objects.filter(case=case).exists()


def test_the_sweeper_recovers_a_case_whose_message_was_lost(
    worker, clinician, clinic, active_model
):
    from ml.services import requeue_stuck_cases

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    _use_broker("memory://", eager=False)  # the message goes nowhere: "lost"
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(images.jpeg_bytes())},
        format="multipart",
    )
    case_id = response.json()["id"]
    _use_broker(BROKER_URL, eager=False)
    time.sleep(1)
    assert Case.objects.get(pk=case_id).status == CaseStatus.QUEUED
    Case.objects.filter(pk=case_id).update(enqueued_at=None)
    assert requeue_stuck_cases() >= 1
    assert wait_for(case_id).status == CaseStatus.DONE
    assert settings.CELERY_BEAT_SCHEDULE["requeue-stuck-cases"]["task"] == (
        "ml.tasks.requeue_stuck_cases_task"
    )
