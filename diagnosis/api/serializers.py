from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from diagnosis import selectors
from diagnosis.api import examples
from diagnosis.corrections import REASON_MAX_LENGTH
from diagnosis.models import (
    ANATOMIC_SITE_CHOICES,
    IMAGE_TYPE_CHOICES,
    AuditEvent,
    Case,
    Clinic,
    Lesion,
    Membership,
    Patient,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
)


@extend_schema_field(OpenApiTypes.INT)
class ScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A related-object field that accepts only objects of the caller's clinics: a foreign id
    is "does not exist" (400), never a silent link."""

    def __init__(self, *, selector, model, **kwargs):
        self.selector = selector
        self.model = model
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        if request is None:
            return self.model.objects.none()
        return self.selector(request.user)


@extend_schema_serializer(examples=examples.PATIENT)
class PatientSerializer(serializers.ModelSerializer):
    clinic = ScopedPrimaryKeyField(
        selector=selectors.clinics_for_user,
        model=Clinic,
        required=False,
        help_text="Required only when you are a member of several clinics.",
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "clinic",
            "identifier",
            "sex",
            "year_of_birth",
            "fitzpatrick_type",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        # Uniqueness per clinic is checked by the service (the clinic may be implied).
        validators = []

    def validate(self, attrs):
        if self.instance is None and "clinic" not in attrs:
            attrs["clinic"] = selectors.implied_clinic(
                selectors.clinics_for_user(self.context["request"].user),
                none="You are not a member of any clinic.",
            )
        if (
            self.instance is not None
            and "clinic" in attrs
            and attrs["clinic"] != self.instance.clinic
        ):
            raise serializers.ValidationError(
                {"clinic": "A patient cannot move to another clinic."}
            )
        return attrs


@extend_schema_serializer(examples=examples.LESION)
class LesionSerializer(serializers.ModelSerializer):
    patient = ScopedPrimaryKeyField(selector=selectors.patients_for_user, model=Patient)
    anatomic_site = serializers.ChoiceField(
        choices=ANATOMIC_SITE_CHOICES, required=False, allow_blank=True
    )
    anatomic_site_label = serializers.CharField(
        source="get_anatomic_site_display",
        read_only=True,
        help_text='The anatomic site as people read it, e.g. "Head › Face › Cheek" ("" when '
        "none is given).",
    )

    class Meta:
        model = Lesion
        fields = [
            "id",
            "patient",
            "clinic",
            "anatomic_site",
            "anatomic_site_label",
            "label",
            "created_at",
        ]
        read_only_fields = ["id", "clinic", "created_at"]
        validators = []


@extend_schema_serializer(examples=examples.CASE_CREATE)
class CaseCreateSerializer(serializers.Serializer):
    lesion = ScopedPrimaryKeyField(selector=selectors.lesions_for_user, model=Lesion)
    image = serializers.FileField(
        help_text="JPEG or PNG, at most 20 MB; checked by content, metadata stripped."
    )
    image_type = serializers.ChoiceField(
        choices=IMAGE_TYPE_CHOICES, required=False, default="dermoscopic"
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    captured_at = serializers.DateTimeField(required=False)
    follows = ScopedPrimaryKeyField(
        selector=selectors.cases_for_user,
        model=Case,
        required=False,
        help_text="The earlier case of the same lesion this image answers (a send-back or a "
        "follow-up visit).",
    )


@extend_schema_serializer(examples=examples.AUDIT_EVENT)
class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor",
            "actor_username",
            "clinic",
            "action",
            "target_type",
            "target_id",
            "ip",
            "detail",
        ]
        read_only_fields = fields


@extend_schema_serializer(examples=examples.WEBHOOK)
class WebhookSerializer(serializers.ModelSerializer):
    clinic = ScopedPrimaryKeyField(
        selector=selectors.clinics_for_user,
        model=Clinic,
        required=False,
        help_text="Required only when you administer several clinics.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), allow_empty=False
    )

    class Meta:
        model = Webhook
        fields = ["id", "clinic", "url", "events", "is_active", "created_at"]
        read_only_fields = ["id", "created_at"]


@extend_schema_serializer(examples=examples.WEBHOOK_CREATED)
class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Shown once: keep it to verify the X-SkinSense-Signature header."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


@extend_schema_serializer(examples=examples.WEBHOOK_DELIVERY)
class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "payload",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


@extend_schema_serializer(examples=examples.MEMBERSHIP)
class MembershipSerializer(serializers.ModelSerializer):
    clinic = ScopedPrimaryKeyField(selector=selectors.clinics_for_user, model=Clinic)
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )

    class Meta:
        model = Membership
        fields = ["id", "clinic", "username", "role", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators = []


@extend_schema_serializer(examples=examples.MEMBERSHIP_ROLE)
class MembershipRoleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Membership
        fields = ["id", "clinic", "role", "created_at"]
        read_only_fields = ["id", "clinic", "created_at"]


@extend_schema_serializer(examples=examples.BULK_SUBMIT)
class BulkSubmitSerializer(serializers.Serializer):
    archive = serializers.FileField(help_text="A ZIP of JPEG/PNG images (and manifest.csv).")
    manifest = serializers.FileField(
        required=False, help_text="The CSV manifest, when it is not inside the ZIP."
    )
    clinic = ScopedPrimaryKeyField(
        selector=selectors.clinics_for_user,
        model=Clinic,
        required=False,
        help_text="Required only when you are a member of several clinics.",
    )


class BulkRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Line of the manifest (1 is the header).")
    filename = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "duplicate", "error"])
    case = serializers.IntegerField(allow_null=True)
    errors = serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(examples=examples.BULK_RESULT)
class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    errors = serializers.IntegerField()
    rows = BulkRowSerializer(many=True)


# --- correcting records (diagnosis.corrections) --------------------------------------------


def reason_field() -> serializers.CharField:
    return serializers.CharField(
        write_only=True,
        max_length=REASON_MAX_LENGTH,
        help_text="Required: why the record is corrected (kept in the audit trail; no names).",
    )


class ReasonRequiredMixin:
    """``reason`` is required on every correction, PATCH included (DRF's partial updates
    would otherwise let a required field be left out)."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not (attrs.get("reason") or "").strip():
            raise serializers.ValidationError({"reason": ["This field is required."]})
        return attrs


@extend_schema_serializer(examples=examples.PATIENT_UPDATE)
class PatientUpdateSerializer(ReasonRequiredMixin, PatientSerializer):
    reason = reason_field()

    class Meta(PatientSerializer.Meta):
        fields = [*PatientSerializer.Meta.fields, "reason"]


@extend_schema_serializer(examples=examples.LESION_UPDATE)
class LesionUpdateSerializer(ReasonRequiredMixin, LesionSerializer):
    """A lesion's label and site (its patient changes only by a merge)."""

    patient = serializers.PrimaryKeyRelatedField(read_only=True)
    reason = reason_field()

    class Meta(LesionSerializer.Meta):
        fields = [*LesionSerializer.Meta.fields, "reason"]
        read_only_fields = [*LesionSerializer.Meta.read_only_fields, "patient"]


@extend_schema_serializer(examples=examples.PATIENT_MERGE)
class PatientMergeSerializer(serializers.Serializer):
    duplicate = ScopedPrimaryKeyField(
        selector=selectors.patients_for_user,
        model=Patient,
        help_text="The other record of the same person (same clinic): its lesions and cases "
        "move to this patient, and it is marked merged.",
    )
    reason = reason_field()


@extend_schema_serializer(examples=examples.CASE_MOVE)
class CaseMoveSerializer(serializers.Serializer):
    lesion = ScopedPrimaryKeyField(
        selector=selectors.lesions_for_user,
        model=Lesion,
        help_text="The lesion to file the case under: any lesion of the case's clinic.",
    )
    reason = reason_field()


@extend_schema_serializer(examples=examples.CASE_REASON)
class CaseReasonSerializer(serializers.Serializer):
    reason = reason_field()


@extend_schema_serializer(examples=examples.CASE_RECORD)
class CaseRecordSerializer(serializers.ModelSerializer):
    """Where a case is filed, and whether it is withdrawn (what a correction answers; the
    case with its prediction is ``GET /api/v1/cases/{id}/``)."""

    patient = serializers.IntegerField(source="lesion.patient_id", read_only=True)
    withdrawn_by = serializers.CharField(
        source="withdrawn_by.username", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "clinic",
            "patient",
            "lesion",
            "status",
            "captured_at",
            "created_at",
            "withdrawn_at",
            "withdrawn_by",
            "withdrawal_reason",
        ]
        read_only_fields = fields
