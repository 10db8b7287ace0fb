"""Predicting one case: claim it (and the waiting cases that ride along), run the pass, and
leave it ``done``; a shadow run stores a flagged prediction and leaves the case alone."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from diagnosis import services as case_services
from diagnosis.models import Case, CaseStatus
from ml.models import ModelVersion, Prediction
from ml.services.batching import InFlight, claim_waiting, mark_claimed, predict_waiting
from ml.services.errors import PermanentPredictionError
from ml.services.passes import run_pass
from ml.services.registry import active_model_version

logger = logging.getLogger(__name__)


def predict_case(
    *, case_id: int, model_version: ModelVersion | None = None, shadow: bool = False
) -> Prediction | None:
    """Run the model on one case and store its one Prediction; the case becomes ``done``.

    Idempotent: a case that already has a prediction from this model version is left as it is.
    Raises PermanentPredictionError for failures that retrying cannot fix.
    """
    model_version = model_version or active_model_version()
    with InFlight() as in_flight:
        if not shadow and not in_flight.try_hold(case_id):
            # Another worker process has this case in its forward pass right now (it rode
            # along there). Meanwhile take other waiting cases; then wait for that pass.
            if model_version is not None:
                predict_waiting(model_version, in_flight)
            in_flight.wait_hold(case_id)
        return _predict_claimed(case_id, model_version, shadow=shadow, in_flight=in_flight)


def _predict_claimed(
    case_id: int, model_version: ModelVersion | None, *, shadow: bool, in_flight: InFlight
) -> Prediction | None:
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(pk=case_id).first()
        if case is None:
            # Case.objects leaves withdrawn cases out: they are never predicted.
            logger.info("case %s no longer exists or was withdrawn; nothing to predict", case_id)
            return None
        if model_version is None:
            raise PermanentPredictionError("No active model is registered.")
        existing = Prediction.objects.filter(case=case, model_version=model_version).first()
        if existing is not None:
            if case.status != CaseStatus.DONE and not existing.shadow:
                case_services.case_mark_done(case_id=case.pk)
            return existing
        if not shadow and case.attempts >= settings.PREDICT_MAX_ATTEMPTS:
            # Each attempt is counted before the model runs: a worker that died mid-inference
            # this often is being killed by this image. Set it aside so the queue moves on.
            raise PermanentPredictionError(
                f"The prediction was started {case.attempts} times and never finished (the "
                "worker stopped each time); this image is set aside for a person to look at."
            )
        cases = [case]
        if not shadow:
            # Micro-batching: other cases waiting right now ride along in the same forward pass
            # (their own messages, delivered later, find them done). Only first attempts: a
            # case that was already started runs alone, so a poison image can only spoil its
            # own attempts.
            if case.attempts == 0:
                cases += claim_waiting(
                    model_version,
                    in_flight,
                    limit=settings.INFERENCE_BATCH_MAX - 1,
                    exclude=case.pk,
                )
            mark_claimed(cases)
    predictions = run_pass(cases, case, model_version, shadow=shadow)
    return predictions[0]
