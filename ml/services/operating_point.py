"""A clinic's operating point: the malignant threshold its admin chose for a model, read from
the model's validation curve at a target sensitivity."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from diagnosis.audit import audit_record
from diagnosis.models import AuditAction, Clinic
from diagnosis.selectors import user_is_clinic_admin
from ml.models import ClinicOperatingPoint, ModelVersion


def clinic_thresholds(clinic_id: int, model_version: ModelVersion) -> dict[str, float] | None:
    """The clinic's chosen malignant threshold for this model, when it chose one."""
    point = ClinicOperatingPoint.objects.filter(
        clinic_id=clinic_id, model_version=model_version
    ).first()
    return {"malignant": point.threshold} if point else None


def operating_point_choose(
    *, admin, clinic: Clinic, model_version: ModelVersion, sensitivity: float
) -> ClinicOperatingPoint:
    """A clinic admin picks the malignant threshold that reaches a validation sensitivity."""
    if not user_is_clinic_admin(user=admin, clinic=clinic):
        raise PermissionDenied("Only the clinic's admins choose its operating point.")
    point = model_version.operating_point_for(sensitivity)
    if point is None:
        raise ValidationError(
            "This model has no validation curve reaching that sensitivity."
            if model_version.validation_curve()
            else "This model was registered without a validation curve."
        )
    with transaction.atomic():
        chosen, _ = ClinicOperatingPoint.objects.update_or_create(
            clinic=clinic,
            model_version=model_version,
            defaults={**point, "chosen_by": admin},
        )
        audit_record(
            action=AuditAction.UPDATE,
            actor=admin,
            clinic=clinic,
            target=chosen,
            detail={"threshold": point["threshold"], "target_sensitivity": sensitivity},
        )
    return chosen
