from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from diagnosis import selectors
from diagnosis.api import examples
from diagnosis.models import (
    ANATOMIC_SITE_CHOICES,
    IMAGE_TYPE_CHOICES,
    AuditEvent,
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

    class Meta:
        model = Lesion
        fields = ["id", "patient", "clinic", "anatomic_site", "label", "created_at"]
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
