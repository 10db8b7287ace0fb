"""Reads owned by ``ml``, scoped to the user's clinics like every other read: cases with their
predictions (for the pages and the API), the review queue, and what reviewers said per model."""

from __future__ import annotations

from datetime import date

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery

from diagnosis.models import Case, CaseStatus, Lesion, Patient
from diagnosis.selectors import reviewer_clinic_ids
from ml.models import Prediction, Review, Verdict

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


def cases_for_user(user) -> QuerySet[Case]:
    """The user's clinics' cases, each with its predictions (``with_predictions``)."""
    return with_predictions(Case.objects.for_user(user))


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


def dashboard_for_user(user) -> dict:
    cases = cases_for_user(user)
    return {
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
        Prediction.objects.filter(case__clinic_id__in=reviewer_clinic_ids(user))
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


def reviewed_predictions(
    model_version, *, clinic_ids: list[int] | None = None, reviewed_from=None, reviewed_before=None
) -> list:
    """One ReviewedPrediction per prediction of this model version whose latest review states a
    final diagnosis (agree or override; "send back" says nothing about the diagnosis).
    ``reviewed_from`` / ``reviewed_before`` (datetimes) keep the reviews made in that window."""
    from ml.engine.eval.reviewed import ReviewedPrediction

    classes = model_version.class_map()
    reviews = (
        Review.objects.filter(
            prediction__model_version=model_version, verdict__in=[Verdict.AGREE, Verdict.OVERRIDE]
        )
        .select_related("prediction__case__clinic", "prediction__case__lesion__patient")
        .order_by("prediction_id", "-created_at")
    )
    if clinic_ids is not None:
        reviews = reviews.filter(prediction__case__clinic_id__in=clinic_ids)
    if reviewed_from is not None:
        reviews = reviews.filter(created_at__gte=reviewed_from)
    if reviewed_before is not None:
        reviews = reviews.filter(created_at__lt=reviewed_before)
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
                final_diagnosis=review.final_diagnosis,
                final_category=classes.get(review.final_diagnosis, {}).get("category", ""),
                clinic=case.clinic.name,
                fitzpatrick_type=case.lesion.patient.fitzpatrick_type,
                anatomic_site=case.lesion.anatomic_site,
            )
        )
    return records


def model_comparison(first, second) -> dict:
    """Cases predicted by both model versions, and where the two disagree (shadow comparison)."""
    pairs: dict[int, dict] = {}
    predictions = Prediction.objects.filter(model_version__in=[first, second]).select_related(
        "case__lesion__patient", "case__clinic"
    )
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
