"""Clinical records: clinics and their members, patients, lesions, cases (one image per visit).

Every clinical row carries its clinic, set by the services from its parent, so that scoping a
query to the user's clinics is one join-free filter (see ``ScopedQuerySet.for_user``).
"""

import uuid
from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from isic_metadata.anatom_site_hierarchical import AnatomSiteEnum
from isic_metadata.fields import FitzpatrickSkinType, ImageTypeEnum

from diagnosis.sites import site_label

ANATOMIC_SITE_CHOICES = [(site.value, site_label(site.value)) for site in AnatomSiteEnum]
IMAGE_TYPE_CHOICES = [(t.value, t.value) for t in ImageTypeEnum]
FITZPATRICK_CHOICES = [(t.value, t.value) for t in FitzpatrickSkinType]


class Clinic(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    DERMATOLOGIST = "dermatologist", "Dermatologist"
    CLINIC_ADMIN = "clinic_admin", "Clinic admin"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CLINICIAN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "clinic"], name="one_membership_per_clinic"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.clinic} ({self.get_role_display()})"

    @property
    def can_review(self) -> bool:
        return self.role in (Role.DERMATOLOGIST, Role.CLINIC_ADMIN)


class ScopedQuerySet(models.QuerySet):
    """The one place clinic scoping lives: rows of the clinics the user is a member of."""

    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        return self.filter(clinic__memberships__user=user)


class Sex(models.TextChoices):
    MALE = "male", "Male"
    FEMALE = "female", "Female"
    UNKNOWN = "unknown", "Unknown"


def _current_year() -> int:
    return date.today().year


class PatientQuerySet(ScopedQuerySet):
    def active(self):
        """Patients that were not merged into another record."""
        return self.filter(merged_into__isnull=True)


class ActivePatientManager(models.Manager.from_queryset(PatientQuerySet)):
    def get_queryset(self):
        return super().get_queryset().active()


class Patient(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    identifier = models.CharField(
        max_length=64, help_text="The clinic's own record number. No names needed."
    )
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    year_of_birth = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1900)]
    )
    fitzpatrick_type = models.CharField(max_length=3, choices=FITZPATRICK_CHOICES, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # A duplicate record of the same person, merged into this one (``diagnosis.corrections``):
    # the row stays, so the audit trail's references to it still resolve, and its identifier
    # stays taken (a new record under it would be the duplicate again).
    merged_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="merged_records"
    )
    merged_at = models.DateTimeField(null=True, blank=True)

    # ``objects``: the records in use (merged ones left out); ``all_objects``: every row (the
    # default manager: admin, related managers, the audit).
    all_objects = PatientQuerySet.as_manager()
    objects = ActivePatientManager()

    class Meta:
        ordering = ["identifier"]
        default_manager_name = "all_objects"
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "identifier"], name="patient_identifier_unique_per_clinic"
            ),
            models.CheckConstraint(condition=Q(sex__in=Sex.values), name="patient_sex_valid"),
            models.CheckConstraint(
                condition=~Q(merged_into=F("id")), name="patient_not_merged_into_itself"
            ),
            models.CheckConstraint(
                condition=Q(merged_into__isnull=True, merged_at__isnull=True)
                | Q(merged_into__isnull=False, merged_at__isnull=False),
                name="merged_patient_has_merge_time",
            ),
        ]

    def __str__(self) -> str:
        return self.identifier

    def get_absolute_url(self) -> str:
        return reverse("ml:patient-detail", args=[self.pk])

    def clean(self) -> None:
        if self.year_of_birth and self.year_of_birth > _current_year():
            raise ValidationError({"year_of_birth": "Year of birth cannot be in the future."})


class Lesion(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="lesions")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lesions")
    anatomic_site = models.CharField(max_length=128, choices=ANATOMIC_SITE_CHOICES, blank=True)
    label = models.CharField(
        max_length=100, help_text='How the clinic tells lesions apart, e.g. "left shoulder, upper".'
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["patient", "label"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "label"], name="lesion_label_unique"),
        ]

    def __str__(self) -> str:
        site = f" ({self.get_anatomic_site_display()})" if self.anatomic_site else ""
        return f"{self.label}{site}"


class CaseStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


def not_withdrawn(relation: str = "") -> Q:
    """The filter that leaves withdrawn cases out, for querysets that reach cases through a
    relation: ``Prediction.objects.filter(not_withdrawn("case"))``. (``Case.objects`` leaves
    them out by itself.)"""
    prefix = f"{relation}__" if relation else ""
    return Q(**{f"{prefix}withdrawn_at__isnull": True})


class CaseQuerySet(ScopedQuerySet):
    def active(self):
        return self.filter(not_withdrawn())

    def withdrawn(self):
        return self.filter(withdrawn_at__isnull=False)


class ActiveCaseManager(models.Manager.from_queryset(CaseQuerySet)):
    def get_queryset(self):
        return super().get_queryset().active()


def case_image_path(instance: "Case", filename: str) -> str:
    # Never the user's file name: no path traversal, nothing identifying on disk.
    ext = "png" if filename.lower().endswith(".png") else "jpg"
    return f"cases/{instance.clinic_id}/{uuid.uuid4().hex}.{ext}"


class Case(models.Model):
    """One examination: one image of one lesion at one visit."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="cases")
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="cases")
    image = models.FileField(upload_to=case_image_path, max_length=255)
    image_sha256 = models.CharField(
        max_length=64, help_text="SHA-256 of the uploaded bytes (one case per image per lesion)."
    )
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    image_type = models.CharField(
        max_length=32, choices=IMAGE_TYPE_CHOICES, default=ImageTypeEnum.dermoscopic.value
    )
    notes = models.TextField(blank=True)
    captured_at = models.DateTimeField(default=timezone.now)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    follows = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="followed_by",
        help_text="The earlier case of the same lesion this image answers (a send-back or a "
        "follow-up visit)",
    )
    status = models.CharField(
        max_length=12, choices=CaseStatus.choices, default=CaseStatus.QUEUED, db_index=True
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Withdrawn (``diagnosis.corrections.case_withdraw``): out of every list, queue, export and
    # metric, and never predicted; kept, audited, and restorable by a clinic admin.
    withdrawn_at = models.DateTimeField(null=True, blank=True, db_index=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    withdrawal_reason = models.TextField(blank=True)

    # ``objects``: the cases in use (withdrawn ones left out), what every page, API list,
    # worker and sweeper reads; ``all_objects``: every row (the default manager: admin,
    # related managers, the withdrawn-cases list, restoring).
    all_objects = CaseQuerySet.as_manager()
    objects = ActiveCaseManager()

    class Meta:
        ordering = ["-created_at"]
        default_manager_name = "all_objects"
        constraints = [
            # A withdrawn case does not hold its image's place: the image may be filed again.
            models.UniqueConstraint(
                fields=["lesion", "image_sha256"],
                condition=Q(withdrawn_at__isnull=True),
                name="case_one_per_image_per_lesion",
            ),
            models.CheckConstraint(
                condition=Q(status__in=CaseStatus.values), name="case_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=CaseStatus.FAILED) | ~Q(error=""),
                name="failed_case_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(withdrawn_at__isnull=True, withdrawal_reason="")
                | (Q(withdrawn_at__isnull=False) & ~Q(withdrawal_reason="")),
                name="withdrawn_case_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("ml:case-detail", args=[self.pk])

    @property
    def is_pending(self) -> bool:
        return self.status in (CaseStatus.QUEUED, CaseStatus.PROCESSING)

    @property
    def is_withdrawn(self) -> bool:
        return self.withdrawn_at is not None


class AuditAction(models.TextChoices):
    VIEW = "view", "Viewed"
    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"
    REVIEW = "review", "Reviewed"
    EXPORT = "export", "Exported"
    LOGIN = "login", "Logged in"
    LOGOUT = "logout", "Logged out"
    LOGIN_FAILED = "login_failed", "Failed login"
    MOVE = "move", "Moved"
    WITHDRAW = "withdraw", "Withdrawn"
    RESTORE = "restore", "Restored"
    MERGE = "merge", "Merged"


class AppendOnlyError(Exception):
    """Audit events are never changed or deleted."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be changed")

    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")

    def for_clinic_admin(self, user):
        """Events of the clinics the user administers, and the logins/logouts of their
        members (those carry no clinic)."""
        clinics = Membership.objects.filter(user=user, role=Role.CLINIC_ADMIN).values("clinic")
        members = Membership.objects.filter(clinic__in=clinics).values("user")
        return self.filter(Q(clinic__in=clinics) | Q(clinic__isnull=True, actor__in=members))


class AuditEvent(models.Model):
    """Append-only: who viewed, created, changed, exported or reviewed what, when, from where.

    Targets are recorded by type and primary key (no patient identifiers or image bytes here).
    On PostgreSQL a trigger refuses UPDATE and DELETE as well, whatever the client.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    action = models.CharField(max_length=16, choices=AuditAction.choices, db_index=True)
    target_type = models.CharField(max_length=32, blank=True, db_index=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=AuditAction.values), name="audit_action_valid"
            ),
        ]

    def __str__(self) -> str:
        target = f" {self.target_type} {self.target_id}" if self.target_type else ""
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_username or '-'} {self.action}{target}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class IdempotencyKey(models.Model):
    """An API client's ``Idempotency-Key`` for a case upload: the same key and body give back
    the same case; the same key with another body is refused (409)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_sha256 = models.CharField(max_length=64)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    response_status = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"


class WebhookEvent(models.TextChoices):
    PREDICTION_COMPLETED = "prediction.completed", "A prediction completed"
    REVIEW_CREATED = "review.created", "A review was made"


def _webhook_secret() -> str:
    import secrets

    return secrets.token_hex(32)


class Webhook(models.Model):
    """A clinic system's endpoint: signed JSON POSTs (HMAC-SHA256) when things happen."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=64, default=_webhook_secret, editable=False)
    events = models.JSONField(default=list, help_text="Event names, e.g. prediction.completed")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["clinic", "url"]

    def __str__(self) -> str:
        return f"{self.clinic}: {self.url}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook: the delivery log."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.webhook.url} ({self.status})"
