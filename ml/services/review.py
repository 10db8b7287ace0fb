"""A dermatologist's review of a prediction: agree with the model, give a different final
diagnosis (any term of the ISIC hierarchy), or send back for a new image with a reason; with a
management decision whenever a diagnosis is stated. Each is kept, audited and sent to the
clinic's webhooks."""

from __future__ import annotations

import calendar
import datetime
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from diagnosis import webhooks
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction
from diagnosis.selectors import user_can_review
from ml.engine.model.taxonomy import class_for_isic, classes_from_dicts, find_isic
from ml.models import Management, Prediction, Review, SendBackReason, Verdict
from ml.services.notify import review_email_enqueue
from ml.webhook_payloads import review_payload

AGREE_NEEDS_AGREEING_HEADS = (
    "“Agree” is not offered for this result: the model's two answers disagree, so there is no "
    "one answer to agree with. Give the final diagnosis with “Different final diagnosis”."
)
MAX_FOLLOW_UP_MONTHS = 60


@dataclass(frozen=True)
class FinalDiagnosis:
    isic: str  # the ISIC hierarchical value ("" for a send-back)
    code: str  # the prediction's model class it falls under ("" when none)


def add_months(day: datetime.date, months: int) -> datetime.date:
    """The same day ``months`` later (the month's last day when it has fewer days)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return day.replace(
        year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1])
    )


def resolve_final_diagnosis(prediction: Prediction, term: str) -> FinalDiagnosis:
    """A final diagnosis given as one of the model's class codes, a full ISIC hierarchical
    value or its last level (e.g. "Melanoma in situ")."""
    term = (term or "").strip()
    if not term:
        raise ValidationError(
            {"final_diagnosis": "Give the final diagnosis (any term of the ISIC hierarchy)."}
        )
    classes = classes_from_dicts(prediction.model_version.classes)
    by_code = {c.code: c for c in classes}
    if term in by_code:
        chosen = by_code[term]
        return FinalDiagnosis(isic=chosen.isic_diagnosis, code=chosen.code)
    try:
        isic = find_isic(term)
    except ValueError:
        raise ValidationError(
            {
                "final_diagnosis": f"“{term}” is not a diagnosis of the ISIC hierarchy nor one of "
                f"the model's classes ({', '.join(by_code)}). Pick a term from the list."
            }
        ) from None
    mapped = class_for_isic(isic, classes)
    return FinalDiagnosis(isic=isic, code=mapped.code if mapped else "")


def _final_diagnosis(prediction: Prediction, verdict: str, final_diagnosis: str) -> FinalDiagnosis:
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"Choose one of: {', '.join(Verdict.values)}."})
    if verdict == Verdict.SEND_BACK:
        return FinalDiagnosis(isic="", code="")
    if verdict == Verdict.OVERRIDE:
        return resolve_final_diagnosis(prediction, final_diagnosis)
    if prediction.heads_disagree:
        raise ValidationError({"verdict": AGREE_NEEDS_AGREEING_HEADS})
    top = resolve_final_diagnosis(prediction, prediction.top_diagnosis)
    if final_diagnosis and resolve_final_diagnosis(prediction, final_diagnosis) != top:
        raise ValidationError(
            {
                "final_diagnosis": f"“Agree” records the model's top diagnosis "
                f"({prediction.top_diagnosis_name}); to record {final_diagnosis}, choose "
                "“Different final diagnosis”."
            }
        )
    return top


@dataclass(frozen=True)
class ManagementDecision:
    management: str = ""
    follow_up_months: int | None = None
    refer_to: str = ""


def _management(
    verdict: str, management: str, follow_up_months: int | None, refer_to: str
) -> ManagementDecision:
    refer_to = (refer_to or "").strip()
    if verdict == Verdict.SEND_BACK:
        if management or follow_up_months or refer_to:
            raise ValidationError(
                {"management": "A send-back has no management decision: it asks for a new image."}
            )
        return ManagementDecision()
    if management not in Management.values:
        raise ValidationError(
            {
                "management": "Choose the management: "
                + ", ".join(f"{label} ({value})" for value, label in Management.choices)
                + "."
            }
        )
    errors = {}
    if management == Management.MONITOR:
        if not follow_up_months or not 1 <= follow_up_months <= MAX_FOLLOW_UP_MONTHS:
            errors["follow_up_months"] = (
                f"Monitoring needs the follow-up interval: 1 to {MAX_FOLLOW_UP_MONTHS} months."
            )
    elif follow_up_months:
        errors["follow_up_months"] = "A follow-up interval goes with “Monitor” only."
    if management == Management.REFER and not refer_to:
        errors["refer_to"] = "Say to whom the patient is referred."
    elif management != Management.REFER and refer_to:
        errors["refer_to"] = "“Refer to” goes with “Refer” only."
    if errors:
        raise ValidationError(errors)
    return ManagementDecision(
        management=management,
        follow_up_months=follow_up_months if management == Management.MONITOR else None,
        refer_to=refer_to,
    )


def _send_back_reason(verdict: str, reason: str, notes: str) -> str:
    if verdict != Verdict.SEND_BACK:
        if reason:
            raise ValidationError({"send_back_reason": "A reason goes with a send-back only."})
        return ""
    if reason not in SendBackReason.values:
        raise ValidationError(
            {
                "send_back_reason": "Say why the image is sent back: "
                + ", ".join(f"{label} ({value})" for value, label in SendBackReason.choices)
                + "."
            }
        )
    if reason == SendBackReason.OTHER and not notes.strip():
        raise ValidationError({"notes": "Say in the notes what is wrong with the image."})
    return reason


def _collecting(errors: dict[str, list[str]], check, *args):
    """``check(*args)``, its ValidationError's messages added to ``errors`` (None then), so
    that one refused review lists every problem at once."""
    try:
        return check(*args)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
        return None


def review_submit(  # noqa: PLR0913 (the review's own fields, all keyword-only)
    *,
    reviewer,
    prediction: Prediction,
    verdict: str,
    final_diagnosis: str = "",
    send_back_reason: str = "",
    management: str = "",
    follow_up_months: int | None = None,
    refer_to: str = "",
    notes: str = "",
) -> Review:
    """Record a review (several per prediction are kept). Only the clinic's dermatologists and
    admins review. "agree" records the model's top diagnosis (refused when the heads
    disagree); "override" names any ISIC diagnosis (mapped to the model's class where one
    covers it); both need a management decision. "send_back" needs a reason."""
    clinic = prediction.case.clinic
    if not user_can_review(user=reviewer, clinic=clinic):
        raise PermissionDenied("Only dermatologists and clinic admins of this clinic can review.")
    notes = (notes or "").strip()
    errors: dict[str, list[str]] = {}
    final = _collecting(errors, _final_diagnosis, prediction, verdict, final_diagnosis)
    decision = _collecting(errors, _management, verdict, management, follow_up_months, refer_to)
    reason = _collecting(errors, _send_back_reason, verdict, send_back_reason, notes)
    if errors:
        raise ValidationError(errors)
    assert final is not None
    assert decision is not None
    assert reason is not None
    today = timezone.localdate()
    with transaction.atomic():
        review = Review.objects.create(
            prediction=prediction,
            reviewer=reviewer,
            verdict=verdict,
            final_diagnosis=final.code,
            final_isic_diagnosis=final.isic,
            send_back_reason=reason,
            management=decision.management,
            follow_up_months=decision.follow_up_months,
            follow_up_due=add_months(today, decision.follow_up_months)
            if decision.follow_up_months
            else None,
            refer_to=decision.refer_to,
            notes=notes,
        )
        audit_record(
            action=AuditAction.REVIEW,
            actor=reviewer,
            clinic=clinic,
            target=prediction.case,
            detail={
                "review": review.pk,
                "verdict": verdict,
                "final_diagnosis": final.code,
                "management": decision.management,
            },
        )
        webhooks.dispatch(
            clinic=clinic,
            event=webhooks.WebhookEvent.REVIEW_CREATED,
            payload=review_payload(review),
        )
        review_email_enqueue(review)
    return review
