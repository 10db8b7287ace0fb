"""Worker faults against real services: a prefork Celery worker whose pool processes are
SIGKILLed mid-inference, and a poison image on which every attempt stalls until the worker is
killed. Nothing here mocks the worker: the kills are real signals to real processes, the stall
is a real blocking read (the stored image replaced by a FIFO that nobody writes)."""

import os
import signal
import time

import pytest

from diagnosis.models import Case, CaseStatus
from ml.models import Prediction
from tests.services import BROKER_URL, Worker, submit_cases, use_broker, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def prefork_worker(real_services, tmp_path, settings):  # noqa: ARG001 - a fixture asked for its effect
    started = []

    def start(**extra_env):
        worker = Worker(tmp_path, settings, pool="prefork", extra_env=extra_env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def kill_children(worker) -> int:
    killed = 0
    for pid in worker.children():
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def wait_until_processing(case_ids, *, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = Case.objects.filter(pk__in=case_ids, status=CaseStatus.PROCESSING).first()
        if busy is not None:
            return busy.pk
        if (
            not Case.objects.filter(pk__in=case_ids)
            .exclude(status__in=[CaseStatus.DONE, CaseStatus.FAILED])
            .exists()
        ):
            return None
        time.sleep(0.02)
    return None


@pytest.mark.usefixtures("active_model")
def test_a_worker_killed_mid_inference_loses_and_duplicates_nothing(
    prefork_worker,
    clinician,
    clinic,
):
    worker = prefork_worker()
    case_ids = submit_cases(clinic, clinician, 6)
    # Kill the pool whenever a new attempt has started (the worker may run several waiting
    # cases in one pass: a kill then interrupts all of them).
    kills, last_started = 0, -1
    deadline = time.monotonic() + 180
    while kills < 3 and time.monotonic() < deadline:
        cases = Case.objects.filter(pk__in=case_ids)
        if not cases.exclude(status__in=[CaseStatus.DONE, CaseStatus.FAILED]).exists():
            break
        started = sum(cases.values_list("attempts", flat=True))
        if started > last_started and cases.filter(status=CaseStatus.PROCESSING).exists():
            if kill_children(worker):
                kills += 1
                last_started = started
        time.sleep(0.02)
    assert kills >= 3, "the kills did not land mid-inference"
    cases = [wait_for(case_id, timeout=240) for case_id in case_ids]
    assert [c.status for c in cases] == [CaseStatus.DONE] * 6, [c.error for c in cases]
    for case_id in case_ids:
        assert Prediction.objects.filter(case_id=case_id).count() == 1
    attempts = sum(c.attempts for c in cases)
    print(
        f"\nSIGKILLed the pool {kills} times mid-inference; 6 cases, {attempts} attempts: "
        "0 lost, 0 duplicated"
    )


@pytest.mark.usefixtures("active_model")
def test_a_poison_image_fails_after_its_attempts_without_blocking_the_others(
    prefork_worker, clinician, clinic, settings
):
    from ml.tasks import predict_case_task

    worker = prefork_worker()
    use_broker("memory://", eager=False)  # rig the poison before the worker sees it
    poison, *others = submit_cases(clinic, clinician, 4)
    # Every attempt on this image stalls until the worker is killed: a poison image.
    stored = settings.PRIVATE_MEDIA_ROOT / Case.objects.get(pk=poison).image.name
    stored.unlink()
    os.mkfifo(stored)
    use_broker(BROKER_URL, eager=False)
    for case_id in [poison, *others]:
        predict_case_task.delay(case_id)
    kills, killed_attempt = 0, 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        case = Case.objects.get(pk=poison)
        if case.status == CaseStatus.FAILED:
            break
        # Kill once per attempt: when a new attempt has started (and stalled on the image).
        if case.status == CaseStatus.PROCESSING and case.attempts > killed_attempt:
            time.sleep(0.5)
            if kill_children(worker):
                kills += 1
                killed_attempt = case.attempts
        time.sleep(0.05)
    case = wait_for(poison)
    assert case.status == CaseStatus.FAILED
    assert "never finished" in case.error
    assert case.attempts == settings.PREDICT_MAX_ATTEMPTS
    assert kills == settings.PREDICT_MAX_ATTEMPTS
    assert [wait_for(pk, timeout=240).status for pk in others] == [CaseStatus.DONE] * 3


@pytest.mark.usefixtures("active_model")
def test_a_hung_inference_is_stopped_at_the_time_limit(prefork_worker, clinician, clinic, settings):
    """An attempt that blocks forever (reading an image nobody writes) is stopped by the soft
    time limit of the worker's settings: the case fails with the reason, the worker goes on
    with the next cases."""
    from ml.services import enqueue_prediction

    worker = prefork_worker(PREDICT_SOFT_TIME_LIMIT="2", PREDICT_TIME_LIMIT="10")
    use_broker("memory://", eager=False)
    hung, *others = submit_cases(clinic, clinician, 3)
    stored = settings.PRIVATE_MEDIA_ROOT / Case.objects.get(pk=hung).image.name
    stored.unlink()
    os.mkfifo(stored)
    use_broker(BROKER_URL, eager=False)
    for case_id in [hung, *others]:
        assert enqueue_prediction(case_id=case_id)
    # From the start of the attempt (not of the queue wait or the worker's model load): stopped
    # by the soft limit, well before the hard one.
    assert wait_until_processing([hung]) == hung
    started = time.monotonic()
    case = wait_for(hung, timeout=60)
    stopped_after = time.monotonic() - started
    assert case.status == CaseStatus.FAILED
    assert "longer than 2 s" in case.error, case.error
    assert case.attempts == 1  # stopped, not killed and retried
    assert stopped_after < 10, f"stopped after {stopped_after:.1f} s"
    assert [wait_for(pk, timeout=60).status for pk in others] == [CaseStatus.DONE] * 2
    assert worker.process.poll() is None
    print(f"\na hung inference was stopped after {stopped_after:.1f} s (soft limit 2 s)")
