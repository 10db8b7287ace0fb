"""Reads, always scoped to the user's clinics. Every view and API endpoint goes through these."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from diagnosis.models import Case, Clinic, Lesion, Membership, Patient, Role


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


def cases_for_user(user) -> QuerySet[Case]:
    """The user's clinics' cases (what the model said about them: ``ml.selectors``)."""
    return Case.objects.for_user(user).select_related("lesion__patient", "clinic", "submitted_by")
