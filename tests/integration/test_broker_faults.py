"""Broker faults with real processes: a Redis server of the test's own is killed while
clinicians upload, and restarted empty (every queued message lost). Uploads must still succeed
at once, the cases wait as ``queued``, and Celery beat's stuck-case sweeper sends them again
once Redis is back, so that every case ends ``done`` with exactly one prediction."""

import time

import pytest

from diagnosis.models import Case, CaseStatus
from ml.models import Prediction
from tests import images
from tests.conftest import api_client_for, upload
from tests.factories import LesionFactory, PatientFactory
from tests.services import Beat, PrivateRedis, Worker, use_broker, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# The sweeper, made quick for the test: beat sends it every second, and it re-enqueues a case
# that has waited two seconds.
SWEEPER_ENV = {"REQUEUE_INTERVAL_SECONDS": "1", "CASE_REQUEUE_AFTER_SECONDS": "2"}
CASES = 6


@pytest.fixture
def redis_server(real_services, tmp_path):  # noqa: ARG001 - a fixture asked for its effect
    server = PrivateRedis(tmp_path)
    yield server
    server.kill()


@pytest.fixture
def processes():
    started = []
    yield started
    for process in reversed(started):
        process.stop()
    use_broker("memory://", eager=True)


def upload_cases(api, lesion, count, *, offset=0):
    """Uploads through the API; returns (case ids, the slowest upload in seconds)."""
    ids, slowest = [], 0.0
    for index in range(count):
        content = images.jpeg_bytes(size=(160, 120), color=(20 + 30 * (index + offset), 80, 60))
        started = time.monotonic()
        response = api.post(
            "/api/v1/cases/", {"lesion": lesion.pk, "image": upload(content)}, format="multipart"
        )
        slowest = max(slowest, time.monotonic() - started)
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "queued"
        ids.append(response.json()["id"])
    return ids, slowest


def assert_each_done_once(case_ids, timeout=120):
    cases = [wait_for(case_id, timeout=timeout) for case_id in case_ids]
    assert [case.status for case in cases] == [CaseStatus.DONE] * len(case_ids), [
        case.error for case in cases
    ]
    for case_id in case_ids:
        assert Prediction.objects.filter(case_id=case_id, shadow=False).count() == 1


@pytest.mark.usefixtures("active_model")
def test_uploads_while_redis_is_down_succeed_and_the_sweeper_sends_them_when_it_is_back(
    redis_server,
    processes,
    tmp_path,
    settings,
    clinician,
    clinic,
):
    processes.append(Worker(tmp_path, settings, broker_url=redis_server.url, extra_env=SWEEPER_ENV))
    processes.append(Beat(tmp_path, settings, broker_url=redis_server.url, extra_env=SWEEPER_ENV))
    use_broker(redis_server.url, eager=False)
    api = api_client_for(clinician)
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))

    redis_server.kill()
    case_ids, slowest = upload_cases(api, lesion, CASES)
    assert slowest < 2.0, f"an upload took {slowest:.2f} s with Redis down"
    time.sleep(3)  # Redis is still down: nothing can have run
    assert set(Case.objects.filter(pk__in=case_ids).values_list("status", flat=True)) == {
        CaseStatus.QUEUED
    }
    assert not Prediction.objects.filter(case_id__in=case_ids).exists()

    redis_server.start()  # back, empty: only the sweeper knows about these cases
    started = time.monotonic()
    assert_each_done_once(case_ids)
    recovered = time.monotonic() - started
    print(
        f"\nRedis down: {CASES} uploads accepted (slowest {slowest * 1000:.0f} ms), all queued; "
        f"Redis back: all {CASES} done once, {recovered:.1f} s later"
    )


@pytest.mark.usefixtures("active_model")
def test_a_redis_restart_that_loses_the_queue_is_recovered_by_the_sweeper(
    redis_server,
    processes,
    tmp_path,
    settings,
    clinician,
    clinic,
):
    use_broker(redis_server.url, eager=False)
    api = api_client_for(clinician)
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    # No worker yet: the messages wait in Redis.
    case_ids, _ = upload_cases(api, lesion, CASES, offset=3)
    redis_server.kill()
    redis_server.start()  # nothing is persisted: every queued message is gone
    processes.append(Worker(tmp_path, settings, broker_url=redis_server.url, extra_env=SWEEPER_ENV))
    time.sleep(2)
    assert set(Case.objects.filter(pk__in=case_ids).values_list("status", flat=True)) == {
        CaseStatus.QUEUED
    }, "the queue was not lost"
    processes.append(Beat(tmp_path, settings, broker_url=redis_server.url, extra_env=SWEEPER_ENV))
    started = time.monotonic()
    assert_each_done_once(case_ids)
    print(
        f"\nRedis restarted with its queue lost: the sweeper recovered all {CASES} cases in "
        f"{time.monotonic() - started:.1f} s, each predicted once"
    )


@pytest.mark.usefixtures("processes", "active_model")
def test_broker_messages_carry_ids_only_no_patient_data_tokens_or_image_bytes(
    redis_server,
    clinician,
    clinic,
):
    """What a web process puts on Redis, read back raw: the task name and a case id. No patient
    identifier, no API token, no image bytes, nothing of the upload's file name."""
    import base64
    import json

    import redis

    use_broker(redis_server.url, eager=False)
    api = api_client_for(clinician)
    token = api._credentials["HTTP_AUTHORIZATION"].split()[1]
    patient = PatientFactory(clinic=clinic, identifier="MRN-SECRET-4471")
    lesion = LesionFactory(patient=patient)
    content = images.jpeg_bytes(size=(160, 120))
    response = api.post(
        "/api/v1/cases/",
        {"lesion": lesion.pk, "image": upload(content, name="jane-doe-MRN-SECRET-4471.jpg")},
        format="multipart",
    )
    assert response.status_code == 202
    case_id = response.json()["id"]

    client = redis.Redis.from_url(redis_server.url)
    raw = b""
    bodies = []
    for key in client.scan_iter():
        kind = client.type(key)
        values = client.lrange(key, 0, -1) if kind == b"list" else []
        if kind == b"hash":
            values = list(client.hgetall(key).values())
        for value in values:
            raw += value
            message = json.loads(value)
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            bodies.append((message["headers"], json.loads(body)))
    client.close()
    assert bodies, "no message reached Redis"
    headers, (args, kwargs, _embed) = bodies[0]
    assert headers["task"] == "ml.tasks.predict_case_task"
    assert args == [case_id]
    assert kwargs == {}
    decoded = json.dumps(bodies).encode()  # headers and bodies, base64 undone
    for secret in ("MRN-SECRET-4471", token, "jane-doe", clinician.username):
        assert secret.encode() not in raw, secret
        assert secret.encode() not in decoded, secret
    assert content[200:264] not in raw
    assert base64.b64encode(content[:300])[:64] not in raw
