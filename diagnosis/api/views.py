"""REST API for clinic systems. Every queryset comes from a scoped selector: foreign ids are 404."""

import datetime

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Exists, OuterRef
from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from diagnosis import idempotency, selectors, services, webhooks
from diagnosis.api.filters import FilterSet, IdFilter
from diagnosis.api.serializers import (
    AuditEventSerializer,
    BulkResultSerializer,
    BulkSubmitSerializer,
    CaseCreateSerializer,
    CaseSerializer,
    LesionSerializer,
    MembershipRoleSerializer,
    MembershipSerializer,
    PatientSerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
)
from diagnosis.audit import audit_record
from diagnosis.models import (
    AuditAction,
    AuditEvent,
    Case,
    CaseStatus,
    Membership,
    Role,
    Webhook,
)
from diagnosis.thumbnails import LIST_THUMBNAIL_SIZE, THUMBNAIL_SIZES
from diagnosis.views import serve_case_thumbnail, serve_private_image
from ml.models import Prediction, Review
from ml.serializers import ReviewSerializer


def _as_drf_error(exc: DjangoValidationError) -> ValidationError:
    if hasattr(exc, "error_dict"):
        return ValidationError(exc.message_dict)
    return ValidationError({"image": exc.messages})


class AuditedRetrieveMixin(mixins.RetrieveModelMixin):
    """Every API read of one clinical object goes into the audit trail."""

    def retrieve(self, request, *args, **kwargs):
        instance = self.get_object()
        audit_record(
            action=AuditAction.VIEW, actor=request.user, target=instance, detail={"via": "api"}
        )
        return Response(self.get_serializer(instance).data)


class PatientViewSet(
    mixins.ListModelMixin,
    AuditedRetrieveMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = PatientSerializer
    search_fields = ["identifier"]
    ordering_fields = ["identifier", "created_at", "year_of_birth"]
    filterset_fields = ["clinic", "sex", "fitzpatrick_type"]

    def get_queryset(self):
        return selectors.patients_for_user(self.request.user).order_by("identifier")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        try:
            serializer.instance = services.patient_create(user=self.request.user, **data)
        except DjangoValidationError as exc:
            raise _as_drf_error(exc)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc))

    def perform_update(self, serializer):
        fields = {k: v for k, v in serializer.validated_data.items() if k != "clinic"}
        try:
            serializer.instance = services.patient_update(
                user=self.request.user, patient=serializer.instance, **fields
            )
        except DjangoValidationError as exc:
            raise _as_drf_error(exc)


class LesionViewSet(
    mixins.ListModelMixin,
    AuditedRetrieveMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = LesionSerializer
    search_fields = ["label", "patient__identifier"]
    ordering_fields = ["created_at", "label"]
    filterset_fields = ["patient", "anatomic_site"]

    def get_queryset(self):
        return selectors.lesions_for_user(self.request.user).order_by("patient", "label")

    def perform_create(self, serializer):
        data = serializer.validated_data
        try:
            serializer.instance = services.lesion_create(
                user=self.request.user,
                patient=data["patient"],
                label=data["label"],
                anatomic_site=data.get("anatomic_site", ""),
            )
        except DjangoValidationError as exc:
            raise _as_drf_error(exc)


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 date-time in any offset, compared in UTC (the database may refuse unusual
    offsets); one out of range is a 400, not a server error."""

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(datetime.UTC)
            except (OverflowError, ValueError):
                raise ValidationError({self.field_name: "This date-time is out of range."})
        return super().filter(qs, value)


class CaseFilter(FilterSet):
    """Filters on the case and on its shown (non-shadow) predictions."""

    patient = IdFilter(field_name="lesion__patient")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")
    status = filters.ChoiceFilter(choices=CaseStatus.choices)
    top_diagnosis = filters.CharFilter(method="filter_prediction", label="Top diagnosis code")
    category = filters.ChoiceFilter(
        choices=[
            ("benign", "benign"),
            ("indeterminate", "indeterminate"),
            ("malignant", "malignant"),
        ],
        method="filter_prediction",
    )
    model_version = IdFilter(method="filter_prediction")
    reviewed = filters.BooleanFilter(method="filter_reviewed")

    class Meta:
        model = Case
        fields = ["lesion", "patient", "status", "created_after", "created_before"]

    def filter_prediction(self, queryset, name, value):
        field = {"model_version": "model_version_id"}.get(name, name)
        return queryset.filter(
            Exists(Prediction.objects.filter(case=OuterRef("pk"), shadow=False, **{field: value}))
        )

    def filter_reviewed(self, queryset, name, value):
        reviewed = Exists(Review.objects.filter(prediction__case=OuterRef("pk")))
        return queryset.filter(reviewed if value else ~reviewed)


class CaseViewSet(mixins.ListModelMixin, AuditedRetrieveMixin, viewsets.GenericViewSet):
    serializer_class = CaseSerializer
    filterset_class = CaseFilter
    ordering_fields = ["created_at", "captured_at"]
    ordering = ["-created_at"]
    documented_errors = {
        "create": {
            400: (
                "Invalid input, or the image was refused (not JPEG/PNG by content, damaged, "
                "empty, over 20 MB or too many pixels): the message says which and why. "
                "A refused upload is a 400, not a 413.",
                {"image": ["The file is 24.3 MB; the limit is 20.0 MB."]},
            ),
            409: "This Idempotency-Key was already used with a different request.",
        },
        "thumbnail": {400: ("Not one of the offered sizes.", {"size": ["One of 256, 768."]})},
        "heatmap": {404: "No such case (or not yours), or the case has no heatmap yet."},
        "bulk": {
            400: (
                "The archive or manifest is unusable as a whole (problems with single rows are "
                "reported per row in the 200 body).",
                {"archive": ["The archive is not a ZIP file."]},
            )
        },
        "reviews.post": {
            403: "Only dermatologists and clinic admins review.",
            409: "The case has no prediction to review yet.",
        },
    }

    def get_queryset(self):
        return selectors.cases_for_user(self.request.user).order_by("-created_at")

    def get_throttles(self):
        if self.action in ("create", "bulk"):
            self.throttle_scope = "uploads"
        return super().get_throttles()

    def get_parsers(self):
        if getattr(self, "action", None) in ("create", "bulk"):
            return [MultiPartParser(), FormParser()]
        return super().get_parsers()

    @extend_schema(
        request={"multipart/form-data": CaseCreateSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Retry safely: the same key and body give back the same case.",
            )
        ],
        responses={
            202: OpenApiResponse(CaseSerializer, description="Accepted: the case is queued."),
            200: OpenApiResponse(
                CaseSerializer, description="This image was already submitted for this lesion."
            ),
        },
    )
    def create(self, request, *args, **kwargs):
        serializer = CaseCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = request.headers.get("Idempotency-Key", "").strip()
        if key:
            if len(key) > 255:
                raise ValidationError({"Idempotency-Key": "At most 255 characters."})
            fingerprint = idempotency.fingerprint(data)
            replay = idempotency.lookup(user=request.user, key=key, fingerprint=fingerprint)
            if replay is not None:
                case = selectors.cases_for_user(request.user).get(pk=replay.case_id)
                body = CaseSerializer(case, context=self.get_serializer_context()).data
                return Response(body, status=replay.response_status)
        try:
            submission = services.case_submit(
                user=request.user,
                lesion=data["lesion"],
                upload=data["image"],
                image_type=data.get("image_type", ""),
                notes=data.get("notes", ""),
                captured_at=data.get("captured_at"),
            )
        except DjangoValidationError as exc:
            raise _as_drf_error(exc)
        response_status = status.HTTP_202_ACCEPTED if submission.created else status.HTTP_200_OK
        if key:
            idempotency.remember(
                user=request.user,
                key=key,
                fingerprint=fingerprint,
                case=submission.case,
                response_status=response_status,
            )
        case = selectors.cases_for_user(request.user).get(pk=submission.case.pk)
        body = CaseSerializer(case, context=self.get_serializer_context()).data
        return Response(body, status=response_status)

    @extend_schema(
        responses={
            (200, "image/jpeg"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The stored image (JPEG, or PNG as uploaded)"
            ),
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY),
        }
    )
    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        case = self.get_object()
        audit_record(
            action=AuditAction.VIEW,
            actor=request.user,
            target=case,
            target_type="case_image",
            detail={"via": "api"},
        )
        extension = "png" if case.image.name.endswith(".png") else "jpg"
        return serve_private_image(case.image, filename=f"case-{case.pk}.{extension}")

    @extend_schema(
        request={"multipart/form-data": BulkSubmitSerializer},
        responses={200: BulkResultSerializer},
        summary="Submit many images at once (ZIP + CSV manifest), with errors per row",
    )
    @action(detail=False, methods=["post"], serializer_class=BulkSubmitSerializer)
    def bulk(self, request):
        from diagnosis.bulk import submit_batch

        serializer = BulkSubmitSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        clinic = data.get("clinic")
        if clinic is None:
            clinics = list(selectors.clinics_for_user(request.user)[:2])
            if len(clinics) != 1:
                raise ValidationError({"clinic": "Say which clinic (you are in several)."})
            clinic = clinics[0]
        try:
            rows = submit_batch(
                user=request.user,
                clinic=clinic,
                archive_upload=data["archive"],
                manifest_upload=data.get("manifest"),
            )
        except DjangoValidationError as exc:
            raise ValidationError({"archive": exc.messages})
        body = {
            "created": sum(r.status == "created" for r in rows),
            "duplicates": sum(r.status == "duplicate" for r in rows),
            "errors": sum(r.status == "error" for r in rows),
            "rows": [r.__dict__ for r in rows],
        }
        return Response(BulkResultSerializer(body).data)

    @extend_schema(
        methods=["GET"], responses=ReviewSerializer(many=True), summary="Reviews of the case"
    )
    @extend_schema(
        methods=["POST"],
        request=ReviewSerializer,
        responses={201: ReviewSerializer},
        summary="Review the case's newest prediction",
    )
    @action(detail=True, methods=["get", "post"], serializer_class=ReviewSerializer)
    def reviews(self, request, pk=None):
        from ml.services import review_submit

        case = self.get_object()
        if request.method == "GET":
            reviews = (
                Review.objects.filter(prediction__case=case)
                .select_related("reviewer")
                .order_by("-created_at")
            )
            page = self.paginate_queryset(reviews)
            return self.get_paginated_response(ReviewSerializer(page, many=True).data)
        prediction = selectors.latest_prediction(case)
        if prediction is None:
            return Response(
                {"detail": "The case has no prediction to review yet."},
                status=status.HTTP_409_CONFLICT,
            )
        serializer = ReviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            review = review_submit(
                reviewer=request.user, prediction=prediction, **serializer.validated_data
            )
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc))
        except DjangoValidationError as exc:
            raise _as_drf_error(exc)
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "size",
                int,
                enum=list(THUMBNAIL_SIZES),
                default=LIST_THUMBNAIL_SIZE,
                description="Longest side in pixels (the aspect ratio is kept).",
            )
        ],
        responses={
            (200, "image/jpeg"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="A JPEG thumbnail of the image; cacheable (ETag, If-None-Match → 304)",
            ),
            304: OpenApiResponse(description="Not modified: the ETag matches"),
        },
    )
    @action(detail=True, methods=["get"])
    def thumbnail(self, request, pk=None):
        case = self.get_object()  # a foreign case is 404 whatever the size
        raw = request.query_params.get("size", str(LIST_THUMBNAIL_SIZE))
        size = int(raw) if raw.isdigit() else 0
        if size not in THUMBNAIL_SIZES:
            raise ValidationError({"size": [f"One of {', '.join(map(str, THUMBNAIL_SIZES))}."]})
        return serve_case_thumbnail(request, case, size=size, via="api")

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The prediction's heatmap"
            )
        }
    )
    @action(detail=True, methods=["get"])
    def heatmap(self, request, pk=None):
        case = self.get_object()
        prediction = selectors.latest_prediction(case)
        if prediction is None or not prediction.heatmap:
            raise Http404("This case has no heatmap.")
        audit_record(
            action=AuditAction.VIEW,
            actor=request.user,
            target=case,
            target_type="heatmap",
            detail={"via": "api"},
        )
        return serve_private_image(prediction.heatmap, filename=f"case-{case.pk}-heatmap.png")


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
        if not Membership.objects.filter(user=user, role=Role.CLINIC_ADMIN).exists():
            if self.action == "list":
                raise PermissionDenied("The audit trail is for clinic admins and auditors.")
            return AuditEvent.objects.none()  # one event: 404, like any object not yours
        return AuditEvent.objects.for_clinic_admin(user)


class WebhookViewSet(viewsets.ModelViewSet):
    """A clinic's webhooks (clinic admins). The secret is shown once, in the creation response."""

    serializer_class = WebhookSerializer
    http_method_names = ["get", "post", "patch", "delete"]
    documented_errors = {"create": {403: "Only clinic admins manage webhooks."}}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Webhook.objects.none()
        return Webhook.objects.filter(
            clinic__memberships__user=self.request.user,
            clinic__memberships__role=Role.CLINIC_ADMIN,
        )

    def _admin_clinic(self, serializer):
        clinic = serializer.validated_data.get("clinic")
        administered = Membership.objects.filter(user=self.request.user, role=Role.CLINIC_ADMIN)
        if clinic is None:
            clinics = list(administered.values_list("clinic", flat=True)[:2])
            if len(clinics) != 1:
                raise ValidationError(
                    {"clinic": "Say which clinic (you administer several)."}
                    if clinics
                    else {"clinic": "Only clinic admins manage webhooks."}
                )
            return clinics[0]
        if not administered.filter(clinic=clinic).exists():
            raise PermissionDenied("Only clinic admins manage webhooks.")
        return clinic.pk

    def _check_url(self, url):
        try:
            webhooks.validate_url(url)
        except DjangoValidationError as exc:
            raise ValidationError({"url": exc.messages})

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
    def deliveries(self, request, pk=None):
        hook = self.get_object()
        page = self.paginate_queryset(hook.deliveries.order_by("-created_at"))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class MembershipViewSet(viewsets.ModelViewSet):
    """Members of the clinics you administer (clinic admins only): add an existing user with a
    role, change a role, remove a member. A clinic always keeps one clinic admin."""

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
        administered = Membership.objects.filter(
            user=self.request.user, role=Role.CLINIC_ADMIN
        ).values("clinic")
        if self.action == "list" and not administered.exists():
            raise PermissionDenied("Only clinic admins manage members.")
        return (
            Membership.objects.filter(clinic__in=administered)
            .select_related("user", "clinic")
            .order_by("clinic", "user__username")
        )

    def _call(self, function, **kwargs):
        try:
            return function(admin=self.request.user, **kwargs)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc))
        except DjangoValidationError as exc:
            raise (
                _as_drf_error(exc)
                if hasattr(exc, "error_dict")
                else ValidationError({"detail": exc.messages})
            )

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
