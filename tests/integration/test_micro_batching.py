"""Micro-batching: a worker that takes one case runs the other waiting cases in the same
forward pass; a lone case goes alone at once; retried cases never ride along."""

import time

import pytest

from diagnosis.models import Case, CaseStatus
from ml.engine.serve import torch_predictor as inference
from ml.models import ClinicOperatingPoint, Prediction
from tests.services import Worker, submit_cases, use_broker, wait_for


def queue_cases(clinician, clinic, count, offset=0):
    """Cases saved and enqueued on a broker nobody reads (their messages go nowhere)."""
    use_broker("memory://", eager=False)
    try:
        return submit_cases(clinic, clinician, count, offset=offset, size=(160, 120))
    finally:
        use_broker("memory://", eager=True)


@pytest.fixture
def batches(monkeypatch):
    """Observe the batch sizes the real Predictor runs (it still runs them)."""
    sizes = []
    real = inference.Predictor.predict_batch

    def observe(self, images, **kwargs):
        sizes.append(len(images))
        return real(self, images, **kwargs)

    monkeypatch.setattr(inference.Predictor, "predict_batch", observe)
    return sizes


@pytest.mark.usefixtures("django_capture_on_commit_callbacks")
@pytest.mark.django_db(transaction=True)
def test_waiting_cases_ride_along_in_one_forward_pass(
    clinician,
    clinic,
    active_model,
    settings,
    batches,
):
    from ml.services import predict_case

    settings.PREDICTION_HEATMAPS = False
    settings.INFERENCE_BATCH_MAX = 4
    case_ids = queue_cases(clinician, clinic, 6)
    # A clinic operating point applies to its cases inside a batch too.
    ClinicOperatingPoint.objects.create(
        clinic=clinic, model_version=active_model, threshold=0.01, sensitivity=1.0, specificity=0.0
    )
    predict_case(case_id=case_ids[0])
    assert batches == [4]
    done = list(Case.objects.filter(status=CaseStatus.DONE).values_list("pk", flat=True))
    assert sorted(done) == case_ids[:4]  # the first, then the oldest waiting ones
    for prediction in Prediction.objects.filter(case_id__in=case_ids[:4]):
        assert prediction.malignant_threshold == pytest.approx(0.01)
        assert prediction.category == "malignant"  # judged with the clinic's threshold
    # Their own messages, when they arrive, find them done: nothing runs again.
    predict_case(case_id=case_ids[1])
    assert batches == [4]
    predict_case(case_id=case_ids[4])
    assert batches == [4, 2]
    assert Prediction.objects.filter(case_id__in=case_ids).count() == 6


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db(transaction=True)
def test_a_lone_case_and_a_retried_case_run_alone(clinician, clinic, settings, batches):
    from ml.services import predict_case

    settings.PREDICTION_HEATMAPS = False
    [alone] = queue_cases(clinician, clinic, 1)
    predict_case(case_id=alone)
    assert batches == [1]
    retried, waiting = queue_cases(clinician, clinic, 2, offset=3)
    Case.objects.filter(pk=retried).update(attempts=1)  # started once already
    predict_case(case_id=retried)
    assert batches == [1, 1]
    assert Case.objects.get(pk=waiting).status == CaseStatus.QUEUED


@pytest.mark.usefixtures("real_services", "active_model")
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_drains_a_backlog_in_batches(
    tmp_path,
    settings,
    clinician,
    clinic,
):
    """Cases that piled up while no worker ran are predicted a few passes at a time, each
    exactly once."""
    from ml.services import enqueue_prediction

    case_ids = queue_cases(clinician, clinic, 8, offset=5)
    worker = Worker(tmp_path, settings, extra_env={"PREDICTION_HEATMAPS": "false"})
    try:
        started = time.monotonic()
        for case_id in case_ids:
            assert enqueue_prediction(case_id=case_id)
        cases = [wait_for(case_id, timeout=120) for case_id in case_ids]
        elapsed = time.monotonic() - started
        assert [c.status for c in cases] == [CaseStatus.DONE] * 8, [c.error for c in cases]
        for case_id in case_ids:
            assert Prediction.objects.filter(case_id=case_id).count() == 1
        time.sleep(1)  # the remaining messages find their cases done
        log = worker.log()
        passes = log.count("predicted in one pass of")
        assert passes >= 1, log[-2000:]
        print(f"\n8 waiting cases: {passes} batched pass(es), all done once in {elapsed:.1f} s")
    finally:
        worker.stop()


@pytest.mark.usefixtures("real_services", "active_model")
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_never_predict_a_case_twice(
    tmp_path,
    settings,
    clinician,
    clinic,
):
    """Two pool processes on one backlog: a case that rode along in one process's pass is not
    run again by the other when its own message arrives there mid-pass (it waits for that pass,
    and meanwhile takes other waiting cases). Each case is started once: one attempt, one
    prediction, one webhook-worthy store."""
    from ml.services import enqueue_prediction

    settings.INFERENCE_BATCH_MAX = 4
    for round_ in range(3):
        case_ids = queue_cases(clinician, clinic, 16, offset=40 + 20 * round_)
        worker = Worker(
            tmp_path,
            settings,
            pool="prefork",
            concurrency=2,
            extra_env={"PREDICTION_HEATMAPS": "false", "INFERENCE_BATCH_MAX": "4"},
        )
        try:
            for case_id in case_ids:
                assert enqueue_prediction(case_id=case_id)
            cases = [wait_for(case_id, timeout=120) for case_id in case_ids]
            assert [c.status for c in cases] == [CaseStatus.DONE] * 16, [c.error for c in cases]
            time.sleep(1)  # the remaining messages find their cases done
            attempts = dict(Case.objects.filter(pk__in=case_ids).values_list("pk", "attempts"))
            assert attempts == dict.fromkeys(case_ids, 1), worker.log()[-3000:]
            for case_id in case_ids:
                assert Prediction.objects.filter(case_id=case_id).count() == 1
        finally:
            worker.stop()
