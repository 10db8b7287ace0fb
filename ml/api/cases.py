"""The API's cases: submit an image (one, or a ZIP of many), read the case with its newest
prediction, its image, thumbnail and heatmap, and its reviews. Scoped like every read: a
foreign case is 404."""

from django.db.models import Exists, OuterRef
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from diagnosis import idempotency, services
from diagnosis import selectors as diagnosis_selectors
from diagnosis.api.filters import FilterSet, IdFilter, UTCDateTimeFilter
from diagnosis.api.mixins import AuditedRetrieveMixin
from diagnosis.api.serializers import (
    BulkResultSerializer,
    BulkSubmitSerializer,
    CaseCreateSerializer,
)
from diagnosis.files import serve_case_image, serve_case_thumbnail
from diagnosis.models import Case, CaseStatus
from diagnosis.thumbnails import LIST_THUMBNAIL_SIZE, THUMBNAIL_SIZES
from ml import selectors
from ml.api.serializers import CaseSerializer, ReviewSerializer
from ml.files import serve_case_heatmap
from ml.models import Prediction, Review
from ml.services.review import review_submit


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

    def filter_reviewed(self, queryset, _name, value):
        reviewed = Exists(Review.objects.filter(prediction__case=OuterRef("pk")))
        return queryset.filter(reviewed if value else ~reviewed)


class CaseViewSet(mixins.ListModelMixin, AuditedRetrieveMixin, viewsets.GenericViewSet):
    django_error_field = {"create": "image", "bulk": "archive"}
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
                case = selectors.cases_for_user(request.user).filter(pk=replay.case_id).first()
                if case is None:  # withdrawn since: the key cannot be used again
                    return Response(
                        {
                            "detail": "The case this Idempotency-Key made was withdrawn since; "
                            "send the image with a new key."
                        },
                        status=status.HTTP_409_CONFLICT,
                    )
                body = CaseSerializer(case, context=self.get_serializer_context()).data
                return Response(body, status=replay.response_status)
        submission = services.case_submit(
            user=request.user,
            lesion=data["lesion"],
            upload=data["image"],
            image_type=data.get("image_type", ""),
            notes=data.get("notes", ""),
            captured_at=data.get("captured_at"),
            follows=data.get("follows"),
        )
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
    def image(self, request, **kwargs):
        return serve_case_image(request, self.get_object(), via="api")

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
            clinic = diagnosis_selectors.implied_clinic(
                diagnosis_selectors.clinics_for_user(request.user),
                none="You are not a member of any clinic.",
            )
        rows = submit_batch(
            user=request.user,
            clinic=clinic,
            archive_upload=data["archive"],
            manifest_upload=data.get("manifest"),
        )
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
    def reviews(self, request, **kwargs):
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
        review = review_submit(
            reviewer=request.user, prediction=prediction, **serializer.validated_data
        )
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
    def thumbnail(self, request, **kwargs):
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
    def heatmap(self, request, **kwargs):
        return serve_case_heatmap(request, self.get_object(), via="api")
