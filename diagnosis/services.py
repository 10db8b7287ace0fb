"""Writes to clinical records. Permission checks and transactions live here, not in views."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from diagnosis import selectors
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction, Case, CaseStatus, Clinic, Lesion, Membership, Patient
from diagnosis.signals import case_queued
from diagnosis.validation import CleanImage, validate_image

logger = logging.getLogger(__name__)


def _require_membership(*, user, clinic: Clinic) -> Membership:
    membership = Membership.objects.filter(user=user, clinic=clinic).first()
    if membership is None:
        raise PermissionDenied("You are not a member of this clinic.")
    return membership


def patient_create(
    *,
    user,
    clinic: Clinic,
    identifier: str,
    sex: str = "unknown",
    year_of_birth: int | None = None,
    fitzpatrick_type: str = "",
) -> Patient:
    """Create a patient in one of the user's clinics. The identifier is unique per clinic."""
    _require_membership(user=user, clinic=clinic)
    identifier = identifier.strip()
    patient = Patient(
        clinic=clinic,
        identifier=identifier,
        sex=sex or "unknown",
        year_of_birth=year_of_birth,
        fitzpatrick_type=fitzpatrick_type or "",
        created_by=user,
    )
    patient.full_clean(validate_unique=False, validate_constraints=False)
    if Patient.objects.filter(clinic=clinic, identifier=identifier).exists():
        raise ValidationError(
            {"identifier": "This clinic already has a patient with this identifier."}
        )
    try:
        with transaction.atomic():
            patient.save()
            audit_record(action=AuditAction.CREATE, actor=user, target=patient)
    except IntegrityError:
        raise ValidationError(
            {"identifier": "This clinic already has a patient with this identifier."}
        )
    return patient


def lesion_create(*, user, patient: Patient, label: str, anatomic_site: str = "") -> Lesion:
    """Create a lesion for a patient of one of the user's clinics."""
    _require_membership(user=user, clinic=patient.clinic)
    label = label.strip()
    lesion = Lesion(
        clinic=patient.clinic, patient=patient, label=label, anatomic_site=anatomic_site or ""
    )
    lesion.full_clean(validate_unique=False, validate_constraints=False)
    if Lesion.objects.filter(patient=patient, label=label).exists():
        raise ValidationError({"label": "This patient already has a lesion with this label."})
    try:
        with transaction.atomic():
            lesion.save()
            audit_record(action=AuditAction.CREATE, actor=user, target=lesion)
    except IntegrityError:
        raise ValidationError({"label": "This patient already has a lesion with this label."})
    return lesion


@dataclass(frozen=True)
class CaseSubmission:
    case: Case
    created: bool  # False when the same image was already submitted for this lesion


def _enqueue_after_commit(case_id: int) -> None:
    transaction.on_commit(lambda: case_queued.send(sender=Case, case_id=case_id))


def case_submit(
    *,
    user,
    lesion: Lesion,
    upload=None,
    image: CleanImage | None = None,
    image_type: str = "",
    notes: str = "",
    captured_at: datetime | None = None,
    follows: Case | None = None,
) -> CaseSubmission:
    """Validate an image, store it privately, create the Case ``queued`` and enqueue its
    prediction once the transaction commits. ``follows``: the earlier case of the same lesion
    this image answers (a send-back, a follow-up visit).

    The same image bytes submitted again for the same lesion return the existing case. A refused
    image raises ``ValidationError`` and leaves no row and no file behind.
    """
    _require_membership(user=user, clinic=lesion.clinic)
    if follows is not None and follows.lesion_id != lesion.pk:
        raise ValidationError(
            {
                "follows": f"Case {follows.pk} is of another lesion: a new image that answers it "
                f"must be of the same lesion ({follows.lesion.label})."
            }
        )
    if image is None:
        image = validate_image(upload)
    existing = Case.objects.filter(lesion=lesion, image_sha256=image.sha256).first()
    if existing is not None:
        return CaseSubmission(case=existing, created=False)

    case = Case(
        clinic=lesion.clinic,
        lesion=lesion,
        image_sha256=image.sha256,
        width=image.width,
        height=image.height,
        notes=notes or "",
        submitted_by=user,
        follows=follows,
    )
    if image_type:
        case.image_type = image_type
    if captured_at is not None:
        case.captured_at = captured_at
    case.full_clean(exclude=["image"], validate_unique=False, validate_constraints=False)
    stored_name = None
    try:
        with transaction.atomic():
            case.image.save(f"upload.{image.extension}", ContentFile(image.content), save=False)
            stored_name = case.image.name
            case.save()
            audit_record(action=AuditAction.CREATE, actor=user, target=case)
            _enqueue_after_commit(case.pk)
    except IntegrityError:
        _delete_stored(stored_name)
        existing = Case.objects.filter(lesion=lesion, image_sha256=image.sha256).first()
        if existing is None:
            raise
        return CaseSubmission(case=existing, created=False)
    except BaseException:
        _delete_stored(stored_name)
        raise
    logger.info("case %s queued (clinic %s)", case.pk, case.clinic_id)
    return CaseSubmission(case=case, created=True)


def _delete_stored(name: str | None) -> None:
    if name:
        from django.core.files.storage import default_storage

        default_storage.delete(name)


def case_submit_with_records(  # noqa: PLR0913 (the form's fields, all keyword-only)
    *,
    user,
    clinic: Clinic,
    upload,
    patient: Patient | dict,
    lesion: Lesion | dict,
    image_type: str = "",
    notes: str = "",
    captured_at: datetime | None = None,
    follows: Case | None = None,
) -> CaseSubmission:
    """The new-case page: pick or create (from a dict of its fields) the patient and the
    lesion, and submit the image, in one transaction. The image is validated first, so a
    refused image creates nothing at all."""
    _require_membership(user=user, clinic=clinic)
    image = validate_image(upload)
    with transaction.atomic():
        if isinstance(patient, dict):
            patient = patient_create(user=user, clinic=clinic, **patient)
        if patient.clinic_id != clinic.pk:
            raise ValidationError("The patient belongs to another clinic.")
        if isinstance(lesion, dict):
            lesion = lesion_create(user=user, patient=patient, **lesion)
        if lesion.patient_id != patient.pk:
            raise ValidationError({"lesion": "This lesion belongs to another patient."})
        return case_submit(
            user=user,
            lesion=lesion,
            image=image,
            image_type=image_type,
            notes=notes,
            captured_at=captured_at,
            follows=follows,
        )


def _require_clinic_admin(*, user, clinic: Clinic) -> None:
    if not selectors.user_is_clinic_admin(user=user, clinic=clinic):
        raise PermissionDenied("Only the clinic's admins manage its members.")


def _ensure_an_admin_remains(*, clinic: Clinic, leaving: Membership) -> None:
    from diagnosis.models import Role

    admins = Membership.objects.filter(clinic=clinic, role=Role.CLINIC_ADMIN).exclude(pk=leaving.pk)
    if leaving.role == Role.CLINIC_ADMIN and not admins.exists():
        raise ValidationError("A clinic keeps at least one clinic admin.")


def membership_add(*, admin, clinic: Clinic, user, role: str) -> Membership:
    """A clinic admin adds an existing user to the clinic with a role."""
    _require_clinic_admin(user=admin, clinic=clinic)
    if Membership.objects.filter(user=user, clinic=clinic).exists():
        raise ValidationError({"username": "This user is already a member of the clinic."})
    with transaction.atomic():
        membership = Membership.objects.create(user=user, clinic=clinic, role=role)
        audit_record(
            action=AuditAction.CREATE,
            actor=admin,
            clinic=clinic,
            target=membership,
            detail={"role": role},
        )
    return membership


def membership_change_role(*, admin, membership: Membership, role: str) -> Membership:
    _require_clinic_admin(user=admin, clinic=membership.clinic)
    if role != membership.role:
        _ensure_an_admin_remains(clinic=membership.clinic, leaving=membership)
    with transaction.atomic():
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            action=AuditAction.UPDATE,
            actor=admin,
            clinic=membership.clinic,
            target=membership,
            detail={"role": role},
        )
    return membership


def membership_remove(*, admin, membership: Membership) -> None:
    _require_clinic_admin(user=admin, clinic=membership.clinic)
    _ensure_an_admin_remains(clinic=membership.clinic, leaving=membership)
    with transaction.atomic():
        audit_record(
            action=AuditAction.DELETE,
            actor=admin,
            clinic=membership.clinic,
            target=membership,
            detail={"user": membership.user_id, "role": membership.role},
        )
        membership.delete()


# --- a case's state: the model's worker moves it through these --------------------------------


def case_retry(*, case: Case) -> None:
    """Put a failed case back in the queue (a clinician's "try again")."""
    with transaction.atomic():
        Case.objects.filter(pk=case.pk, status=CaseStatus.FAILED).update(
            status=CaseStatus.QUEUED, error="", attempts=0, updated_at=timezone.now()
        )
        _enqueue_after_commit(case.pk)


def case_mark_enqueued(*, case_id: int) -> None:
    """Record when the case's message was (last) sent; the sweeper resends old ones."""
    Case.objects.filter(pk=case_id).update(enqueued_at=timezone.now())


def case_start_attempt(*, case: Case) -> None:
    """A worker starts predicting the case: ``processing``, one more attempt counted (before the
    model runs, so an image that kills its worker is recognised by its attempts)."""
    case.status = CaseStatus.PROCESSING
    case.attempts += 1
    case.save(update_fields=["status", "attempts", "updated_at"])


def case_mark_done(*, case_id: int) -> None:
    Case.objects.filter(pk=case_id).update(
        status=CaseStatus.DONE, error="", updated_at=timezone.now()
    )


def case_mark_failed(*, case_id: int, reason: str) -> None:
    """A final failure, with a reason a clinician can read; a case already done stays done."""
    reason = reason.strip() or "Prediction failed."
    Case.objects.filter(pk=case_id).exclude(status=CaseStatus.DONE).update(
        status=CaseStatus.FAILED, error=reason[:2000], updated_at=timezone.now()
    )
    logger.warning("case %s failed: %s", case_id, reason)
