"""Reads owned by ``ml``, scoped to the user's clinics like every other read: cases with their
predictions (for the pages and the API), the review queue, and what reviewers said per model."""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from diagnosis.models import Case, CaseStatus, Lesion, Patient, not_withdrawn
from diagnosis.selectors import cases_for_user as clinic_cases
from diagnosis.selectors import reviewer_clinic_ids
from ml.models import CaseSeen, Management, Prediction, Review, Verdict

QUEUE_STATES = {
    "unreviewed": "Not reviewed",
    "agree": "Agreed",
    "override": "Overridden",
    "send_back": "Sent back",
    "all": "All",
}


# --- cases with what the model said: the pages and the API ------------------------------------


def _predictions_prefetch() -> Prefetch:
    """Each case's predictions (newest first, no shadow runs), each with its reviews."""
    reviews = Prefetch(
        "reviews",
        queryset=Review.objects.select_related("reviewer").order_by("-created_at", "-pk"),
        to_attr="review_list",
    )
    return Prefetch(
        "predictions",
        queryset=Prediction.objects.filter(shadow=False)
        .select_related("model_version")
        .prefetch_related(reviews)
        .order_by("-created_at"),
        to_attr="prediction_list",
    )


def with_predictions(queryset: QuerySet[Case]) -> QuerySet[Case]:
    """Cases with their predictions (newest first, shadow runs left out) in
    ``case.prediction_list``."""
    return queryset.select_related("lesion__patient", "clinic", "submitted_by").prefetch_related(
        _predictions_prefetch()
    )


def latest_prediction(case: Case):
    predictions = getattr(case, "prediction_list", None)
    if predictions is None:
        predictions = list(
            case.predictions.filter(shadow=False)
            .select_related("model_version")
            .order_by("-created_at")
        )
    return predictions[0] if predictions else None


def latest_review(prediction) -> Review | None:
    """The newest review of a prediction (what the clinician is shown), with its reviewer."""
    if prediction is None:
        return None
    reviews = getattr(prediction, "review_list", None)
    if reviews is not None:
        return reviews[0] if reviews else None
    return prediction.reviews.select_related("reviewer").order_by("-created_at", "-pk").first()


def cases_for_user(user, *, include_withdrawn: bool = False) -> QuerySet[Case]:
    """The user's clinics' cases, each with its predictions (``with_predictions``); withdrawn
    ones left out unless ``include_withdrawn`` (``diagnosis.selectors.cases_for_user``)."""
    return with_predictions(clinic_cases(user, include_withdrawn=include_withdrawn))


def cases_awaiting_review(user) -> QuerySet[Case]:
    """Done cases of the clinics where the user reviews, whose predictions nobody has reviewed."""
    reviewed = Review.objects.filter(prediction__case=OuterRef("pk"))
    return (
        cases_for_user(user)
        .filter(clinic_id__in=reviewer_clinic_ids(user), status=CaseStatus.DONE)
        .filter(~Exists(reviewed))
    )


def patient_timeline(patient: Patient) -> list[Lesion]:
    """The patient's lesions, each with ``case_list``: its cases oldest to newest."""
    cases = with_predictions(Case.objects.filter(lesion__patient=patient)).order_by(
        "captured_at", "created_at"
    )
    return list(
        patient.lesions.order_by("label").prefetch_related(
            Prefetch("cases", queryset=cases, to_attr="case_list")
        )
    )


FOLLOW_UP_SOON_DAYS = (
    42  # "follow-ups due": due within six weeks (time to book the visit), or overdue
)


def _latest_review_of_case(field: str) -> Subquery:
    return Subquery(
        Review.objects.filter(prediction__case=OuterRef("pk"), prediction__shadow=False)
        .order_by("-created_at", "-pk")
        .values(field)[:1]
    )


def _with_latest_review(queryset: QuerySet[Case]) -> QuerySet[Case]:
    """Annotated with the latest review's time, verdict and follow-up date, and whether a
    newer image of the same lesion came after that review (then the review was answered)."""
    newer_image = Case.objects.filter(
        lesion=OuterRef("lesion"), created_at__gt=OuterRef("last_reviewed_at")
    )
    return queryset.annotate(
        last_reviewed_at=_latest_review_of_case("created_at"),
        last_verdict=_latest_review_of_case("verdict"),
        last_follow_up_due=_latest_review_of_case("follow_up_due"),
        last_management=_latest_review_of_case("management"),
    ).annotate(answered=Exists(newer_image))


def reviewed_since_last_looked(user) -> QuerySet[Case]:
    """The user's own cases whose latest review is newer than the user's last look at them."""
    seen = CaseSeen.objects.filter(user=user, case=OuterRef("pk")).values("seen_at")[:1]
    return (
        _with_latest_review(cases_for_user(user).filter(submitted_by=user))
        .annotate(seen_at=Subquery(seen))
        .filter(last_reviewed_at__isnull=False)
        .filter(Q(seen_at__isnull=True) | Q(seen_at__lt=F("last_reviewed_at")))
        .order_by("-last_reviewed_at")
    )


def sent_back_to_user(user) -> QuerySet[Case]:
    """The user's own cases sent back for a new image, with no newer image of the lesion yet."""
    return (
        _with_latest_review(cases_for_user(user).filter(submitted_by=user))
        .filter(last_verdict=Verdict.SEND_BACK, answered=False)
        .order_by("-last_reviewed_at")
    )


def follow_ups_due(user, *, today: date | None = None) -> QuerySet[Case]:
    """The user's own cases whose latest review says "monitor" with a follow-up due within
    FOLLOW_UP_SOON_DAYS (or overdue), and no newer image of the lesion since that review."""
    today = today or timezone.localdate()
    return (
        _with_latest_review(cases_for_user(user).filter(submitted_by=user))
        .filter(
            last_management=Management.MONITOR,
            last_follow_up_due__lte=today + timedelta(days=FOLLOW_UP_SOON_DAYS),
            answered=False,
        )
        .order_by("last_follow_up_due")
    )


def case_seen(*, user, case: Case) -> None:
    """Remember that the user looked at the case now (for "reviewed since you last looked")."""
    CaseSeen.objects.bulk_create(  # one upsert, the same on SQLite and PostgreSQL
        [CaseSeen(user=user, case=case, seen_at=timezone.now())],
        update_conflicts=True,
        unique_fields=["user", "case"],
        update_fields=["seen_at"],
    )


def dashboard_for_user(user) -> dict:
    cases = cases_for_user(user)
    unseen, sent_back, due = (
        reviewed_since_last_looked(user),
        sent_back_to_user(user),
        follow_ups_due(user),
    )
    return {
        "reviewed_unseen": list(unseen[:10]),
        "reviewed_unseen_count": unseen.count(),
        "sent_back": list(sent_back[:10]),
        "sent_back_count": sent_back.count(),
        "follow_ups": list(due[:10]),
        "follow_ups_count": due.count(),
        "today": timezone.localdate(),
        "recent_cases": list(cases.order_by("-created_at")[:10]),
        "awaiting_review": list(cases_awaiting_review(user).order_by("created_at")[:10]),
        "counts": cases.aggregate(
            pending=Count("pk", filter=Q(status__in=[CaseStatus.QUEUED, CaseStatus.PROCESSING])),
            failed=Count("pk", filter=Q(status=CaseStatus.FAILED)),
            total=Count("pk"),
        ),
    }


# --- the review queue -------------------------------------------------------------------------


def review_queue(
    user,
    *,
    state: str = "unreviewed",
    model_version: int | None = None,
    diagnosis: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[Prediction]:
    """Predictions the user may review: the newest prediction of each case in the clinics where
    they review. Unreviewed first, then the riskiest (uncertain, then highest malignant
    probability), oldest first among equals."""
    latest_for_case = (
        Prediction.objects.filter(case=OuterRef("case"), shadow=False)
        .order_by("-created_at")
        .values("pk")[:1]
    )
    last_verdict = Review.objects.filter(prediction=OuterRef("pk")).order_by("-created_at")
    queryset = (
        Prediction.objects.filter(
            not_withdrawn("case"), case__clinic_id__in=reviewer_clinic_ids(user)
        )
        .filter(pk=Subquery(latest_for_case))
        .select_related("model_version", "case__lesion__patient", "case__clinic")
        .annotate(
            reviewed=Exists(Review.objects.filter(prediction=OuterRef("pk"))),
            last_verdict=Subquery(last_verdict.values("verdict")[:1]),
        )
    )
    if state == "unreviewed":
        queryset = queryset.filter(reviewed=False)
    elif state in Verdict.values:
        queryset = queryset.filter(last_verdict=state)
    if model_version:
        queryset = queryset.filter(model_version_id=model_version)
    if diagnosis:
        queryset = queryset.filter(
            Q(top_diagnosis=diagnosis) | Q(reviews__final_diagnosis=diagnosis)
        ).distinct()
    if since:
        queryset = queryset.filter(created_at__date__gte=since)
    if until:
        queryset = queryset.filter(created_at__date__lte=until)
    return queryset.order_by("reviewed", "-uncertain", "-malignant_probability", "created_at")


def next_in_queue(user, *, after: Prediction) -> Prediction | None:
    return review_queue(user).exclude(pk=after.pk).first()


def _reviews_of(model_version, clinic_ids, reviewed_from, reviewed_before) -> QuerySet[Review]:
    reviews = Review.objects.filter(
        not_withdrawn("prediction__case"), prediction__model_version=model_version
    )
    if clinic_ids is not None:
        reviews = reviews.filter(prediction__case__clinic_id__in=clinic_ids)
    if reviewed_from is not None:
        reviews = reviews.filter(created_at__gte=reviewed_from)
    if reviewed_before is not None:
        reviews = reviews.filter(created_at__lt=reviewed_before)
    return reviews


def sent_back_count(
    model_version, *, clinic_ids: list[int] | None = None, reviewed_from=None, reviewed_before=None
) -> int:
    """Predictions of this model version that reviewers only sent back (in the window): they
    say nothing about the diagnosis, so the performance figures count them apart."""
    reviews = _reviews_of(model_version, clinic_ids, reviewed_from, reviewed_before)
    stated = reviews.filter(verdict__in=[Verdict.AGREE, Verdict.OVERRIDE]).values("prediction_id")
    return (
        reviews.filter(verdict=Verdict.SEND_BACK)
        .exclude(prediction_id__in=stated)
        .values("prediction_id")
        .distinct()
        .count()
    )


def reviewed_predictions(
    model_version, *, clinic_ids: list[int] | None = None, reviewed_from=None, reviewed_before=None
) -> list:
    """One ReviewedPrediction per prediction of this model version whose latest review states a
    final diagnosis (agree or override; "send back" says nothing about the diagnosis).
    ``reviewed_from`` / ``reviewed_before`` (datetimes) keep the reviews made in that window."""
    from ml.engine.eval.reviewed import ReviewedPrediction

    reviews = (
        _reviews_of(model_version, clinic_ids, reviewed_from, reviewed_before)
        .filter(verdict__in=[Verdict.AGREE, Verdict.OVERRIDE])
        .select_related(
            "prediction__case__clinic",
            "prediction__case__lesion__patient",
            "prediction__model_version",
        )
        .order_by("prediction_id", "-created_at")
    )
    records, seen = [], set()
    for review in reviews:
        if review.prediction_id in seen:
            continue  # an earlier review of a prediction already counted with its latest one
        seen.add(review.prediction_id)
        prediction = review.prediction
        case = prediction.case
        records.append(
            ReviewedPrediction(
                top_diagnosis=prediction.top_diagnosis,
                predicted_category=prediction.category,
                malignant_probability=prediction.malignant_probability,
                # a final diagnosis no model class covers is its own row (its ISIC name)
                final_diagnosis=review.final_diagnosis or review.final_diagnosis_name,
                final_category=review.final_category,
                clinic=case.clinic.name,
                fitzpatrick_type=case.lesion.patient.fitzpatrick_type,
                anatomic_site=case.lesion.anatomic_site,
            )
        )
    return records


def model_comparison(first, second) -> dict:
    """Cases predicted by both model versions, and where the two disagree (shadow comparison)."""
    pairs: dict[int, dict] = {}
    predictions = Prediction.objects.filter(
        not_withdrawn("case"), model_version__in=[first, second]
    ).select_related("case__lesion__patient", "case__clinic")
    for prediction in predictions:
        pairs.setdefault(prediction.case_id, {})[prediction.model_version_id] = prediction
    both = [(p[first.pk], p[second.pk]) for p in pairs.values() if len(p) == 2]
    disagreements = [
        {
            "case": a.case,
            "first": a,
            "second": b,
            "category_differs": a.category != b.category,
            "diagnosis_differs": a.top_diagnosis != b.top_diagnosis,
        }
        for a, b in both
        if a.category != b.category or a.top_diagnosis != b.top_diagnosis
    ]
    disagreements.sort(key=lambda d: (not d["category_differs"], d["case"].pk))
    compared = len(both)
    return {
        "compared": compared,
        "category_agreement": (
            sum(a.category == b.category for a, b in both) / compared if compared else None
        ),
        "diagnosis_agreement": (
            sum(a.top_diagnosis == b.top_diagnosis for a, b in both) / compared
            if compared
            else None
        ),
        "disagreements": disagreements,
    }
