"""REST API of the clinical records: patients, lesions, the audit trail, webhooks, members.

Every queryset comes from a scoped selector: foreign ids are 404. Cases (with what the model
said) are ``ml.api.cases``.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from diagnosis import corrections, selectors, services, webhooks
from diagnosis.api.filters import FilterSet, UTCDateTimeFilter
from diagnosis.api.mixins import AuditedRetrieveMixin
from diagnosis.api.serializers import (
    AuditEventSerializer,
    LesionSerializer,
    LesionUpdateSerializer,
    MembershipRoleSerializer,
    MembershipSerializer,
    PatientMergeSerializer,
    PatientSerializer,
    PatientUpdateSerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
)
from diagnosis.audit import audit_record
from diagnosis.models import (
    AuditAction,
    AuditEvent,
    Membership,
    Webhook,
)

CORRECTION_400 = (
    "Invalid input: no reason, nothing changed, or a value refused (an identifier or label "
    "already used, a value out of range).",
    {"reason": ["This field is required."]},
)
UPDATE_ERRORS = {"partial_update": {400: CORRECTION_400}, "update": {400: CORRECTION_400}}


def _fields_without(validated_data: dict, *names: str) -> dict:
    return {k: v for k, v in validated_data.items() if k not in names}


@extend_schema_view(
    update=extend_schema(responses=PatientSerializer),
    partial_update=extend_schema(responses=PatientSerializer),
)
class PatientViewSet(
    mixins.ListModelMixin,
    AuditedRetrieveMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Patients of your clinics. PUT/PATCH correct one (with a ``reason``, audited with the
    values before and after); ``merge`` merges another record of the same person into it."""

    serializer_class = PatientSerializer
    search_fields = ["identifier"]
    ordering_fields = ["identifier", "created_at", "year_of_birth"]
    filterset_fields = ["clinic", "sex", "fitzpatrick_type"]
    django_error_field = {"merge": "duplicate", "update": "detail", "partial_update": "detail"}
    documented_errors = {
        **UPDATE_ERRORS,
        "merge": {
            400: (
                "No reason, the same record twice, a record of another clinic, or both records "
                "have a lesion with the same label.",
                {"duplicate": ["A record cannot be merged into itself."]},
            )
        },
    }

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return PatientUpdateSerializer
        return super().get_serializer_class()

    def get_queryset(self):
        return selectors.patients_for_user(self.request.user).order_by("identifier")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = services.patient_create(user=self.request.user, **data)

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = corrections.patient_update(
            user=self.request.user,
            patient=serializer.instance,
            reason=data["reason"],
            **_fields_without(data, "clinic", "reason"),
        )

    @extend_schema(
        request=PatientMergeSerializer,
        responses={200: OpenApiResponse(PatientSerializer, description="The record kept.")},
        summary="Merge another record of the same person into this one",
    )
    @action(detail=True, methods=["post"], serializer_class=PatientMergeSerializer)
    def merge(self, request, **kwargs):
        target = self.get_object()
        serializer = PatientMergeSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        kept = corrections.patients_merge(
            user=request.user, target=target, duplicate=data["duplicate"], reason=data["reason"]
        )
        kept = self.get_queryset().get(pk=kept.pk)  # with its new counts
        return Response(PatientSerializer(kept, context=self.get_serializer_context()).data)


@extend_schema_view(partial_update=extend_schema(responses=LesionSerializer))
class LesionViewSet(
    mixins.ListModelMixin,
    AuditedRetrieveMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Lesions of your clinics' patients. PATCH corrects the label or the site (with a
    ``reason``, audited)."""

    django_error_field = {"create": "patient", "partial_update": "detail"}
    serializer_class = LesionSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    search_fields = ["label", "patient__identifier"]
    ordering_fields = ["created_at", "label"]
    filterset_fields = ["patient", "anatomic_site"]
    documented_errors = UPDATE_ERRORS

    def get_serializer_class(self):
        if self.action == "partial_update":
            return LesionUpdateSerializer
        return super().get_serializer_class()

    def get_queryset(self):
        return selectors.lesions_for_user(self.request.user).order_by("patient", "label")

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = corrections.lesion_update(
            user=self.request.user,
            lesion=serializer.instance,
            reason=data["reason"],
            **_fields_without(data, "reason"),
        )

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.lesion_create(
            user=self.request.user,
            patient=data["patient"],
            label=data["label"],
            anatomic_site=data.get("anatomic_site", ""),
        )


class AuditEventFilter(FilterSet):
    at_after = UTCDateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = UTCDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["actor", "actor_username", "clinic", "action", "target_type", "target_id"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, read-only: staff see every clinic's, clinic admins their clinics'."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["at"]
    documented_errors = {"list": {403: "The audit trail is for clinic admins and auditors."}}

    def get_queryset(self):
        user = self.request.user
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        if user.is_staff:
            return AuditEvent.objects.all()
        if not selectors.user_is_clinic_admin(user=user):
            if self.action == "list":
                raise PermissionDenied("The audit trail is for clinic admins and auditors.")
            return AuditEvent.objects.none()  # one event: 404, like any object not yours
        return AuditEvent.objects.for_clinic_admin(user)


class WebhookViewSet(viewsets.ModelViewSet):
    """A clinic's webhooks (clinic admins). The secret is shown once, in the creation response."""

    django_error_field = "url"

    serializer_class = WebhookSerializer
    http_method_names = ["get", "post", "patch", "delete"]
    documented_errors = {"create": {403: "Only clinic admins manage webhooks."}}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Webhook.objects.none()
        return Webhook.objects.filter(
            clinic__in=selectors.clinics_administered_by(self.request.user)
        )

    def _admin_clinic(self, serializer):
        clinic = serializer.validated_data.get("clinic")
        administered = selectors.clinics_administered_by(self.request.user)
        if clinic is None:
            return selectors.implied_clinic(
                administered, none="Only clinic admins manage webhooks."
            ).pk
        if not administered.filter(pk=clinic.pk).exists():
            raise PermissionDenied("Only clinic admins manage webhooks.")
        return clinic.pk

    def _check_url(self, url):
        webhooks.validate_url(url)

    @extend_schema(responses={201: WebhookCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        clinic_id = self._admin_clinic(serializer)
        self._check_url(serializer.validated_data["url"])
        data = {k: v for k, v in serializer.validated_data.items() if k != "clinic"}
        hook = Webhook.objects.create(clinic_id=clinic_id, created_by=request.user, **data)
        audit_record(action=AuditAction.CREATE, actor=request.user, target=hook)
        return Response(WebhookCreatedSerializer(hook).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        if "url" in serializer.validated_data:
            self._check_url(serializer.validated_data["url"])
        if serializer.validated_data.get("clinic", serializer.instance.clinic) != (
            serializer.instance.clinic
        ):
            raise ValidationError({"clinic": "A webhook cannot move to another clinic."})
        serializer.save()
        audit_record(action=AuditAction.UPDATE, actor=self.request.user, target=serializer.instance)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, _request, **kwargs):
        hook = self.get_object()
        page = self.paginate_queryset(hook.deliveries.order_by("-created_at"))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class MembershipViewSet(viewsets.ModelViewSet):
    """Members of the clinics you administer (clinic admins only): add an existing user with a
    role, change a role, remove a member. A clinic always keeps one clinic admin."""

    django_error_field = "detail"

    http_method_names = ["get", "post", "patch", "delete"]
    documented_errors = {
        "list": {403: "Only clinic admins manage members."},
        "destroy": {
            400: (
                "A clinic keeps at least one clinic admin.",
                {"detail": ["A clinic keeps at least one clinic admin."]},
            ),
            403: "Only the clinic's admins manage its members.",
        },
        "partial_update": {403: "Only the clinic's admins manage its members."},
        "create": {403: "Only the clinic's admins manage its members."},
    }

    def get_serializer_class(self):
        return MembershipRoleSerializer if self.action == "partial_update" else MembershipSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        administered = selectors.clinics_administered_by(self.request.user)
        if self.action == "list" and not administered.exists():
            raise PermissionDenied("Only clinic admins manage members.")
        return (
            Membership.objects.filter(clinic__in=administered)
            .select_related("user", "clinic")
            .order_by("clinic", "user__username")
        )

    def _call(self, function, **kwargs):
        return function(admin=self.request.user, **kwargs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = self._call(
            services.membership_add, clinic=data["clinic"], user=data["user"], role=data["role"]
        )

    def perform_update(self, serializer):
        serializer.instance = self._call(
            services.membership_change_role,
            membership=serializer.instance,
            role=serializer.validated_data.get("role", serializer.instance.role),
        )

    def perform_destroy(self, instance):
        self._call(services.membership_remove, membership=instance)
