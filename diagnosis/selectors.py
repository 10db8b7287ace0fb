"""Reads, always scoped to the user's clinics. Every view and API endpoint goes through these."""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from diagnosis.models import Case, CaseStatus, Clinic, Lesion, Membership, Patient, Role


def clinics_for_user(user) -> QuerySet[Clinic]:
    if not user.is_authenticated:
        return Clinic.objects.none()
    return Clinic.objects.filter(memberships__user=user).distinct()


def membership_for(*, user, clinic) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, clinic=clinic).first()


def user_can_review(*, user, clinic) -> bool:
    membership = membership_for(user=user, clinic=clinic)
    return membership is not None and membership.can_review


def reviewer_clinic_ids(user) -> list[int]:
    return list(
        Membership.objects.filter(
            user=user, role__in=[Role.DERMATOLOGIST, Role.CLINIC_ADMIN]
        ).values_list("clinic_id", flat=True)
    )


def patients_for_user(user, *, search: str = "") -> QuerySet[Patient]:
    queryset = Patient.objects.for_user(user).select_related("clinic")
    if search:
        queryset = queryset.filter(identifier__icontains=search.strip())
    return queryset.annotate(
        lesion_count=Count("lesions", distinct=True), case_count=Count("lesions__cases")
    )


def lesions_for_user(user) -> QuerySet[Lesion]:
    return Lesion.objects.for_user(user).select_related("patient", "clinic")


def _predictions_prefetch() -> Prefetch:
    from ml.models import Prediction

    return Prefetch(
        "predictions",
        queryset=Prediction.objects.filter(shadow=False)
        .select_related("model_version")
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


def cases_for_user(user) -> QuerySet[Case]:
    return with_predictions(Case.objects.for_user(user))


def cases_awaiting_review(user) -> QuerySet[Case]:
    """Done cases of the clinics where the user reviews, whose predictions nobody has reviewed."""
    from ml.models import Review

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
