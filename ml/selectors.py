"""Reads owned by ``ml``, scoped to the user's clinics like every other read."""

from __future__ import annotations

from datetime import date

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from diagnosis.selectors import reviewer_clinic_ids
from ml.models import Prediction, Review, Verdict

QUEUE_STATES = {
    "unreviewed": "Not reviewed",
    "agree": "Agreed",
    "override": "Overridden",
    "send_back": "Sent back",
    "all": "All",
}


def predictions_for_user(user) -> QuerySet[Prediction]:
    if not user.is_authenticated:
        return Prediction.objects.none()
    return Prediction.objects.filter(case__clinic__memberships__user=user).select_related(
        "model_version", "case__lesion__patient", "case__clinic"
    )


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
        Prediction.objects.filter(case=OuterRef("case")).order_by("-created_at").values("pk")[:1]
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
