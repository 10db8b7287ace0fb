"""Correcting records: edit a patient or a lesion, move a case to another lesion, withdraw and
restore a case, merge two records of one person.

Each correction needs a reason and writes one audit event (two for a merge) with the actor, the
reason and the values before and after. Members of the record's clinic correct its records;
withdrawing a reviewed case, and restoring any withdrawn case, needs a clinic admin (only they
see withdrawn cases). Rows are locked while they change, so two requests cannot interleave.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from diagnosis import selectors
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction, Case, Clinic, Lesion, Patient, Sex
from diagnosis.signals import case_queued

logger = logging.getLogger(__name__)

REASON_MAX_LENGTH = 500
PATIENT_FIELDS = ("identifier", "sex", "year_of_birth", "fitzpatrick_type")
LESION_FIELDS = ("label", "anatomic_site")
# What a merge fills in on the record kept when it has nothing there ("unknown" sex: nothing).
MERGE_FILLED_FIELDS = {"sex": Sex.UNKNOWN, "year_of_birth": None, "fitzpatrick_type": ""}
MERGE_FIELD_LABELS = {
    "sex": "sex",
    "year_of_birth": "year of birth",
    "fitzpatrick_type": "Fitzpatrick type",
}

IDENTIFIER_TAKEN = "This clinic already has a patient with this identifier."
IDENTIFIER_OF_MERGED = (
    "This identifier belongs to a record that was merged into another one: it stays reserved."
)
LABEL_TAKEN = "This patient already has a lesion with this label."
NOTHING_CHANGED = "Nothing to change: these are the values already recorded."
REVIEWED_NEEDS_ADMIN = "This case has a review: only a clinic admin can withdraw it."
RESTORE_NEEDS_ADMIN = "Only a clinic admin can restore a withdrawn case."


# --- shared checks -----------------------------------------------------------------------------


def _require_member(*, user, clinic: Clinic) -> None:
    if selectors.membership_for(user=user, clinic=clinic) is None:
        raise PermissionDenied("You are not a member of this clinic.")


def clean_reason(reason: str | None) -> str:
    """The reason of a correction, stripped; empty or too long is a ``ValidationError``."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why: the reason is kept in the audit trail."})
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError({"reason": f"At most {REASON_MAX_LENGTH} characters."})
    return reason


def case_has_review(case: Case) -> bool:
    """Whether anyone reviewed a prediction of the case. (Reviews are ``ml``'s, which this app
    never imports: they are reached through the relation names ``ml`` gives them.)"""
    return Case.all_objects.filter(pk=case.pk, predictions__reviews__isnull=False).exists()


def _changes(instance, fields: dict) -> dict[str, tuple]:
    """``{name: (before, after)}`` for the fields whose value differs."""
    return {
        name: (getattr(instance, name), value)
        for name, value in fields.items()
        if getattr(instance, name) != value
    }


def _audited(changes: dict[str, tuple]) -> dict:
    """Before/after for the audit trail, which never holds patient identifiers: for those it
    records only that they changed."""
    return {
        name: {"changed": True} if name == "identifier" else {"before": old, "after": new}
        for name, (old, new) in changes.items()
    }


def _normalised(fields: dict, allowed: tuple[str, ...]) -> dict:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValidationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    cleaned = {k: v.strip() if isinstance(v, str) else v for k, v in fields.items()}
    if cleaned.get("fitzpatrick_type", "") is None:
        cleaned["fitzpatrick_type"] = ""
    if cleaned.get("anatomic_site", "") is None:
        cleaned["anatomic_site"] = ""
    return cleaned


def _locked(manager, pk: int, gone: str):
    found = manager.select_for_update().filter(pk=pk).first()
    if found is None:
        raise ValidationError(gone)
    return found


# --- patients and lesions ----------------------------------------------------------------------


def patient_update(*, user, patient: Patient, reason: str, **fields) -> Patient:
    """Correct a patient's ``identifier``, ``sex``, ``year_of_birth`` or ``fitzpatrick_type``
    (not its clinic). The identifier stays unique in the clinic, merged records included."""
    _require_member(user=user, clinic=patient.clinic)
    reason = clean_reason(reason)
    fields = _normalised(fields, PATIENT_FIELDS)
    try:
        with transaction.atomic():
            patient = _locked(Patient.objects, patient.pk, "This record was merged into another.")
            changes = _changes(patient, fields)
            if not changes:
                raise ValidationError(NOTHING_CHANGED)
            for name, (_, value) in changes.items():
                setattr(patient, name, value)
            patient.full_clean(validate_unique=False, validate_constraints=False)
            if "identifier" in changes:
                _check_identifier_free(patient)
            patient.save(update_fields=list(changes))
            audit_record(
                action=AuditAction.UPDATE,
                actor=user,
                target=patient,
                detail={"reason": reason, "changes": _audited(changes)},
            )
    except IntegrityError:
        raise ValidationError({"identifier": IDENTIFIER_TAKEN})
    return patient


def _check_identifier_free(patient: Patient) -> None:
    clash = (
        Patient.all_objects.filter(clinic=patient.clinic_id, identifier=patient.identifier)
        .exclude(pk=patient.pk)
        .first()
    )
    if clash is not None:
        taken = IDENTIFIER_OF_MERGED if clash.merged_into_id else IDENTIFIER_TAKEN
        raise ValidationError({"identifier": taken})


def lesion_update(*, user, lesion: Lesion, reason: str, **fields) -> Lesion:
    """Correct a lesion's ``label`` or ``anatomic_site``; the label stays unique per patient."""
    _require_member(user=user, clinic=lesion.clinic)
    reason = clean_reason(reason)
    fields = _normalised(fields, LESION_FIELDS)
    try:
        with transaction.atomic():
            lesion = _locked(Lesion.objects, lesion.pk, "This lesion no longer exists.")
            changes = _changes(lesion, fields)
            if not changes:
                raise ValidationError(NOTHING_CHANGED)
            for name, (_, value) in changes.items():
                setattr(lesion, name, value)
            lesion.full_clean(validate_unique=False, validate_constraints=False)
            if "label" in changes:
                siblings = Lesion.objects.filter(patient=lesion.patient_id, label=lesion.label)
                if siblings.exclude(pk=lesion.pk).exists():
                    raise ValidationError({"label": LABEL_TAKEN})
            lesion.save(update_fields=list(changes))
            audit_record(
                action=AuditAction.UPDATE,
                actor=user,
                target=lesion,
                detail={"reason": reason, "changes": _audited(changes)},
            )
    except IntegrityError:
        raise ValidationError({"label": LABEL_TAKEN})
    return lesion


# --- cases -------------------------------------------------------------------------------------


def _same_image_in(lesion_id: int, case: Case) -> Case | None:
    """The case (not withdrawn) that holds the same image in that lesion, if any."""
    return (
        Case.objects.filter(lesion_id=lesion_id, image_sha256=case.image_sha256)
        .exclude(pk=case.pk)
        .first()
    )


def case_move(*, user, case: Case, lesion: Lesion, reason: str) -> Case:
    """File a case under another lesion of its clinic (another patient's too: an image filed
    under the wrong patient). A lesion of another clinic is "not found"."""
    _require_member(user=user, clinic=case.clinic)
    if lesion.clinic_id != case.clinic_id:
        raise ValidationError({"lesion": "No such lesion in this case's clinic."})
    reason = clean_reason(reason)
    try:
        with transaction.atomic():
            case = _locked(Case.objects, case.pk, "This case was withdrawn.")
            if case.lesion_id == lesion.pk:
                raise ValidationError({"lesion": "The case is already filed under this lesion."})
            twin = _same_image_in(lesion.pk, case)
            if twin is not None:
                raise ValidationError(
                    {"lesion": f"That lesion already has this image (case {twin.pk})."}
                )
            before = case.lesion
            case.lesion = lesion
            case.save(update_fields=["lesion", "updated_at"])
            audit_record(
                action=AuditAction.MOVE,
                actor=user,
                target=case,
                detail={
                    "reason": reason,
                    "lesion": {"before": before.pk, "after": lesion.pk},
                    "patient": {"before": before.patient_id, "after": lesion.patient_id},
                },
            )
    except IntegrityError:
        raise ValidationError({"lesion": "That lesion already has this image."})
    return case


def case_withdraw(*, user, case: Case, reason: str) -> Case:
    """Withdraw a case: it leaves every list, queue, export and metric and is not predicted,
    but stays (audited, visible to clinic admins, restorable). Members withdraw unreviewed
    cases; a reviewed case needs a clinic admin."""
    _require_member(user=user, clinic=case.clinic)
    with transaction.atomic():
        case = _locked(Case.all_objects, case.pk, "This case no longer exists.")
        if case.is_withdrawn:
            raise ValidationError("This case is already withdrawn.")
        reviewed = case_has_review(case)
        if reviewed and not selectors.user_is_clinic_admin(user=user, clinic=case.clinic):
            raise PermissionDenied(REVIEWED_NEEDS_ADMIN)
        reason = clean_reason(reason)
        case.withdrawn_at = timezone.now()
        case.withdrawn_by = user
        case.withdrawal_reason = reason
        case.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_reason", "updated_at"])
        audit_record(
            action=AuditAction.WITHDRAW,
            actor=user,
            target=case,
            detail={"reason": reason, "status": case.status, "reviewed": reviewed},
        )
    logger.info("case %s withdrawn (clinic %s)", case.pk, case.clinic_id)
    return case


def case_restore(*, user, case: Case, reason: str) -> Case:
    """Bring a withdrawn case back (clinic admins). Refused while the same image of the lesion
    was filed again as another case. A case still waiting for the model is queued again."""
    if not selectors.user_is_clinic_admin(user=user, clinic=case.clinic):
        raise PermissionDenied(RESTORE_NEEDS_ADMIN)
    with transaction.atomic():
        case = _locked(Case.all_objects, case.pk, "This case no longer exists.")
        if not case.is_withdrawn:
            raise ValidationError("This case is not withdrawn.")
        reason = clean_reason(reason)
        twin = _same_image_in(case.lesion_id, case)
        if twin is not None:
            raise ValidationError(
                f"The same image of this lesion was filed again as case {twin.pk} after this one "
                "was withdrawn: withdraw that case first, or leave this one withdrawn."
            )
        withdrawn = {
            "withdrawn_at": case.withdrawn_at.isoformat(),
            "withdrawn_by": case.withdrawn_by_id,
            "withdrawal_reason": case.withdrawal_reason,
        }
        case.withdrawn_at, case.withdrawn_by, case.withdrawal_reason = None, None, ""
        case.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_reason", "updated_at"])
        audit_record(
            action=AuditAction.RESTORE,
            actor=user,
            target=case,
            detail={"reason": reason, "before": withdrawn},
        )
        if case.is_pending:  # the worker and the sweeper skipped it while it was withdrawn
            case_id = case.pk
            transaction.on_commit(lambda: case_queued.send(sender=Case, case_id=case_id))
    logger.info("case %s restored (clinic %s)", case.pk, case.clinic_id)
    return case


# --- merging two records of one person ---------------------------------------------------------


@dataclass(frozen=True)
class MergePlan:
    """What merging ``duplicate`` into ``target`` does (the confirm page shows it)."""

    lesions: list[Lesion]  # the duplicate's lesions, which move to the target
    case_count: int  # their cases, withdrawn ones included
    label_clashes: list[str]  # labels both records use: the merge is refused
    filled: dict[str, dict] = field(default_factory=dict)  # target blanks taken from duplicate
    kept: dict[str, dict] = field(default_factory=dict)  # where the two differ: target's kept

    def labelled(self, which: str) -> list[tuple[str, dict]]:
        """``filled`` or ``kept`` as (label for people, values), for the confirm page."""
        return [(MERGE_FIELD_LABELS[name], v) for name, v in getattr(self, which).items()]


def merge_plan(*, target: Patient, duplicate: Patient) -> MergePlan:
    lesions = list(Lesion.objects.filter(patient=duplicate).order_by("label"))
    taken = set(Lesion.objects.filter(patient=target).values_list("label", flat=True))
    filled, kept = {}, {}
    for name, blank in MERGE_FILLED_FIELDS.items():
        ours, theirs = getattr(target, name), getattr(duplicate, name)
        if theirs == blank or ours == theirs:
            continue
        if ours == blank:
            filled[name] = {"before": ours, "after": theirs}
        else:
            kept[name] = {"kept": ours, "dropped": theirs}
    return MergePlan(
        lesions=lesions,
        case_count=Case.all_objects.filter(lesion__in=lesions).count(),
        label_clashes=sorted(lesion.label for lesion in lesions if lesion.label in taken),
        filled=filled,
        kept=kept,
    )


def _check_mergeable(*, target: Patient, duplicate: Patient) -> None:
    if duplicate.pk == target.pk:
        raise ValidationError({"duplicate": "A record cannot be merged into itself."})
    if duplicate.clinic_id != target.clinic_id:
        raise ValidationError({"duplicate": "No such patient in this clinic."})
    if target.merged_into_id or duplicate.merged_into_id:
        raise ValidationError({"duplicate": "One of these records was already merged."})


def label_clash_message(labels: list[str]) -> str:
    quoted = ", ".join(f"“{label}”" for label in labels)
    return (
        f"Both records have a lesion labelled {quoted}: rename one of them (Edit lesion), or "
        "move its cases to the other, then merge."
    )


def patients_merge(*, user, target: Patient, duplicate: Patient, reason: str) -> Patient:
    """Merge ``duplicate`` (B) into ``target`` (A), two records of one person in one clinic:
    B's lesions, with their cases, move to A; A's details are kept, its blanks filled from B;
    B stays as a merged record (out of every list, its identifier reserved and found by
    searches for A), so the audit trail's references to it still resolve."""
    _require_member(user=user, clinic=target.clinic)
    _check_mergeable(target=target, duplicate=duplicate)
    reason = clean_reason(reason)
    with transaction.atomic():
        locked = Patient.all_objects.select_for_update().filter(pk__in=[target.pk, duplicate.pk])
        rows = {patient.pk: patient for patient in locked.order_by("pk")}
        target, duplicate = rows[target.pk], rows[duplicate.pk]
        _check_mergeable(target=target, duplicate=duplicate)
        plan = merge_plan(target=target, duplicate=duplicate)
        if plan.label_clashes:
            raise ValidationError({"duplicate": label_clash_message(plan.label_clashes)})
        lesion_ids = [lesion.pk for lesion in plan.lesions]
        Lesion.objects.filter(pk__in=lesion_ids).update(patient=target)
        for name, values in plan.filled.items():
            setattr(target, name, values["after"])
        if plan.filled:
            target.save(update_fields=list(plan.filled))
        # Records merged into B earlier now point at A, so every alias leads to one record.
        earlier = list(
            Patient.all_objects.filter(merged_into=duplicate).values_list("pk", flat=True)
        )
        Patient.all_objects.filter(pk__in=earlier).update(merged_into=target)
        duplicate.merged_into, duplicate.merged_at = target, timezone.now()
        duplicate.save(update_fields=["merged_into", "merged_at"])
        common = {"reason": reason}
        audit_record(
            action=AuditAction.MERGE,
            actor=user,
            target=target,
            detail={
                **common,
                "merged": duplicate.pk,
                "lesions": lesion_ids,
                "cases": plan.case_count,
                "filled": plan.filled,
                "kept": plan.kept,
                "earlier_merged": earlier,
            },
        )
        audit_record(
            action=AuditAction.MERGE,
            actor=user,
            target=duplicate,
            detail={**common, "merged_into": target.pk},
        )
    logger.info("patient %s merged into %s (clinic %s)", duplicate.pk, target.pk, target.clinic_id)
    return target
