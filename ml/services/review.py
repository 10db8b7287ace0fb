"""A dermatologist's review of a prediction: agree, override with the final diagnosis, or send
back for a new image. Each is kept, audited and sent to the clinic's webhooks."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from diagnosis import webhooks
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction
from diagnosis.selectors import user_can_review
from ml.models import Prediction, Review, Verdict
from ml.webhook_payloads import review_payload

AGREE_NEEDS_AGREEING_HEADS = (
    "“Agree” is not offered for this result: the model's two answers disagree, so there is no "
    "one answer to agree with. Give the final diagnosis with “Override”."
)


def _final_diagnosis(prediction: Prediction, verdict: str, final_diagnosis: str) -> str:
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"Choose one of: {', '.join(Verdict.values)}."})
    if verdict == Verdict.AGREE:
        if prediction.heads_disagree:
            raise ValidationError({"verdict": AGREE_NEEDS_AGREEING_HEADS})
        if final_diagnosis and final_diagnosis != prediction.top_diagnosis:
            raise ValidationError(
                {
                    "final_diagnosis": f"“Agree” records the model's top diagnosis "
                    f"({prediction.top_diagnosis}); to record {final_diagnosis}, choose "
                    "“Override”."
                }
            )
        return prediction.top_diagnosis
    if verdict == Verdict.SEND_BACK:
        return ""
    codes = prediction.model_version.class_map()
    if final_diagnosis not in codes:
        raise ValidationError(
            {
                "final_diagnosis": "An override needs the final diagnosis, one of the model's "
                f"classes: {', '.join(codes)}."
            }
        )
    return final_diagnosis


def review_submit(
    *, reviewer, prediction: Prediction, verdict: str, final_diagnosis: str = "", notes: str = ""
) -> Review:
    """Record a review (several per prediction are kept). Only the clinic's dermatologists and
    admins review; an override names one of the prediction's model's classes."""
    clinic = prediction.case.clinic
    if not user_can_review(user=reviewer, clinic=clinic):
        raise PermissionDenied("Only dermatologists and clinic admins of this clinic can review.")
    final_diagnosis = _final_diagnosis(prediction, verdict, final_diagnosis)
    with transaction.atomic():
        review = Review.objects.create(
            prediction=prediction,
            reviewer=reviewer,
            verdict=verdict,
            final_diagnosis=final_diagnosis,
            notes=notes.strip(),
        )
        audit_record(
            action=AuditAction.REVIEW,
            actor=reviewer,
            clinic=clinic,
            target=prediction.case,
            detail={"review": review.pk, "verdict": verdict},
        )
        webhooks.dispatch(
            clinic=clinic,
            event=webhooks.WebhookEvent.REVIEW_CREATED,
            payload=review_payload(review),
        )
    return review
