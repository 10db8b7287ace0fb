"""Reads, always scoped to the user's clinics. Every view and API endpoint goes through these."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from diagnosis.models import Case, Clinic, Lesion, Membership, Patient, Role, not_withdrawn


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


def clinics_administered_by(user) -> QuerySet[Clinic]:
    """The clinics this user is an admin of."""
    if not user.is_authenticated:
        return Clinic.objects.none()
    return Clinic.objects.filter(
        memberships__user=user, memberships__role=Role.CLINIC_ADMIN
    ).distinct()


def user_is_clinic_admin(*, user, clinic=None) -> bool:
    """Whether the user administers this clinic (or, without one, any clinic)."""
    administered = clinics_administered_by(user)
    return administered.filter(pk=clinic.pk).exists() if clinic else administered.exists()


def implied_clinic(clinics: QuerySet[Clinic], *, none: str) -> Clinic:
    """The clinic a request that names none means: the only one of ``clinics`` (the user's,
    or those they administer). Several, or none (``none`` says why that is refused), raise a
    ValidationError on the field ``clinic``."""
    found = list(clinics[:2])
    if len(found) == 1:
        return found[0]
    raise ValidationError(
        {"clinic": "You are in several clinics: say which one." if found else none}
    )


def reviewer_clinic_ids(user) -> list[int]:
    return list(
        Membership.objects.filter(
            user=user, role__in=[Role.DERMATOLOGIST, Role.CLINIC_ADMIN]
        ).values_list("clinic_id", flat=True)
    )


def patients_for_user(user, *, search: str = "") -> QuerySet[Patient]:
    """The user's clinics' patients (merged records left out; searching a merged record's
    identifier finds the record it was merged into), with their lesion and case counts."""
    queryset = Patient.objects.for_user(user).select_related("clinic")
    if search:
        search = search.strip()
        merged_match = Patient.all_objects.filter(
            merged_into=OuterRef("pk"), identifier__icontains=search
        )
        queryset = queryset.filter(Q(identifier__icontains=search) | Exists(merged_match))
    return queryset.annotate(
        lesion_count=Count("lesions", distinct=True),
        case_count=Count("lesions__cases", filter=not_withdrawn("lesions__cases")),
    )


def lesions_for_user(user) -> QuerySet[Lesion]:
    return Lesion.objects.for_user(user).select_related("patient", "clinic")


def cases_for_user(user, *, include_withdrawn: bool = False) -> QuerySet[Case]:
    """The user's clinics' cases (what the model said about them: ``ml.selectors``).

    Withdrawn cases are left out; ``include_withdrawn`` keeps those of the clinics the user
    administers (for one case's page and image, never for a list)."""
    if include_withdrawn:
        queryset = Case.all_objects.for_user(user).filter(
            Q(withdrawn_at__isnull=True) | Q(clinic__in=clinics_administered_by(user))
        )
    else:
        queryset = Case.objects.for_user(user)
    return queryset.select_related("lesion__patient", "clinic", "submitted_by")


def withdrawn_cases(*, user, clinic: Clinic | None = None) -> QuerySet[Case]:
    """The withdrawn cases of the clinics the user administers (of ``clinic`` only, when
    given), newest withdrawal first; none for anyone else."""
    clinics = clinics_administered_by(user)
    if clinic is not None:
        clinics = clinics.filter(pk=clinic.pk)
    return (
        Case.all_objects.withdrawn()
        .filter(clinic__in=clinics)
        .select_related("lesion__patient", "clinic", "submitted_by", "withdrawn_by")
        .order_by("-withdrawn_at", "-pk")
    )
