import csv
import io

import django_filters
from django.http import HttpResponse
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from typing_extensions import override

from diagnosis.api.filters import INT64_MAX, DjangoFilterBackend, FilterSet, IdFilter
from diagnosis.models import not_withdrawn
from ml.api import examples
from ml.api.serializers import ModelVersionSerializer, PredictionSerializer
from ml.models import ModelVersion, Prediction
from ml.selectors import QUEUE_STATES, review_queue


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"

    @override
    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else str(data)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Registered model versions (immutable). Exactly one is active."""

    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.order_by("-created_at")
    filterset_fields = ["is_active", "is_demo", "name"]
    ordering_fields = ["created_at", "name"]
    documented_errors = {"active": {404: "No model is active."}}

    @extend_schema(responses=ModelVersionSerializer)
    @action(detail=False, methods=["get"])
    def active(self, _request):
        model_version = ModelVersion.objects.filter(is_active=True).first()
        if model_version is None:
            raise NotFound("No model is active.")
        return Response(self.get_serializer(model_version).data)


class ReviewQueueFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=list(QUEUE_STATES.items()), method="noop")
    model_version = IdFilter(method="noop")
    diagnosis = django_filters.CharFilter(method="noop")
    since = django_filters.DateFilter(method="noop")
    until = django_filters.DateFilter(method="noop")

    class Meta:
        model = Prediction
        fields: list[str] = []

    def noop(self, queryset, *args):
        return queryset  # applied by the selector, which knows the queue's rules


@extend_schema_serializer(examples=examples.QUEUE_ITEM)
class QueueItemSerializer(PredictionSerializer):
    case = serializers.IntegerField(source="case_id", read_only=True)
    reviewed = serializers.BooleanField(read_only=True)
    last_verdict = serializers.CharField(read_only=True, allow_null=True)

    class Meta(PredictionSerializer.Meta):
        fields = ["case", *PredictionSerializer.Meta.fields, "reviewed", "last_verdict"]
        read_only_fields = fields


class ReviewQueueViewSet(viewsets.GenericViewSet, mixins.ListModelMixin):
    """The dermatologist's queue: unreviewed first, riskiest first (dermatologists and clinic
    admins; their clinics only)."""

    serializer_class = QueueItemSerializer
    filterset_class = ReviewQueueFilter
    filter_backends = [DjangoFilterBackend]
    documented_errors = {
        "list": {403: "The review queue is for dermatologists and clinic admins."},
    }

    def get_queryset(self):
        from diagnosis.selectors import reviewer_clinic_ids

        if getattr(self, "swagger_fake_view", False):
            return Prediction.objects.none()
        if not reviewer_clinic_ids(self.request.user):
            raise PermissionDenied("The review queue is for dermatologists and clinic admins.")
        # The selector applies the filters, so it takes them validated (a bad value is a 400).
        filterset = ReviewQueueFilter(
            self.request.query_params, queryset=Prediction.objects.none(), request=self.request
        )
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        params = filterset.form.cleaned_data
        return review_queue(
            self.request.user,
            state=params.get("state") or "unreviewed",
            model_version=params.get("model_version"),
            diagnosis=params.get("diagnosis") or "",
            since=params.get("since"),
            until=params.get("until"),
        )


class ExportQuerySerializer(serializers.Serializer):
    model_version = serializers.IntegerField(
        required=False, min_value=1, max_value=INT64_MAX, help_text="Default: the active model"
    )
    clinic = serializers.IntegerField(
        required=False, min_value=1, max_value=INT64_MAX, help_text="Default: all your clinics"
    )
    created_after = serializers.DateField(required=False, help_text="From this day (inclusive)")
    created_before = serializers.DateField(required=False, help_text="To this day (inclusive)")


class PredictionExportView(APIView):
    """Predictions of one model version as CSV in the ISIC challenge submission layout: an
    ``image`` column (``case-<id>``) and one probability column per class, for a date range,
    scoped to the caller's clinics (dermatologists and clinic admins)."""

    renderer_classes = [JSONRenderer, CSVRenderer]  # errors as JSON; the export itself is CSV
    documented_errors = {
        "get": {
            400: (
                "A query parameter is malformed or out of range.",
                {
                    "created_after": [
                        "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
                    ]
                },
            ),
            403: "Exports are for dermatologists and clinic admins.",
            404: "No such clinic (or not one of yours), or no such model version.",
        }
    }

    @extend_schema(
        parameters=[ExportQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="One row per prediction: `image` (case-<id>) and one probability "
                "column per class of the model version.",
                examples=[
                    OpenApiExample(
                        "Two cases",
                        value="image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC\n"
                        "case-41,0.120000,0.810000,0.020000,0.010000,0.030000,0.005000,"
                        "0.003000,0.002000\n"
                        "case-42,0.640000,0.210000,0.050000,0.020000,0.060000,0.010000,"
                        "0.005000,0.005000\n",
                        media_type="text/csv",
                    )
                ],
            )
        },
    )
    def get(self, request):
        from diagnosis.audit import audit_record
        from diagnosis.models import AuditAction
        from diagnosis.selectors import reviewer_clinic_ids

        clinic_ids = reviewer_clinic_ids(request.user)
        if not clinic_ids:
            raise PermissionDenied("Exports are for dermatologists and clinic admins.")
        query = ExportQuerySerializer(
            data={k: v for k, v in request.query_params.items() if v != ""}
        )
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if params.get("clinic") is not None:
            if params["clinic"] not in clinic_ids:
                raise NotFound("No such clinic.")
            clinic_ids = [params["clinic"]]
        if params.get("model_version") is not None:
            version = ModelVersion.objects.filter(pk=params["model_version"]).first()
        else:
            version = ModelVersion.objects.filter(is_active=True).first()
        if version is None:
            raise NotFound("No such model version.")
        predictions = Prediction.objects.filter(
            not_withdrawn("case"), model_version=version, case__clinic_id__in=clinic_ids
        ).order_by("case_id")
        after, before = params.get("created_after"), params.get("created_before")
        if after:
            predictions = predictions.filter(created_at__date__gte=after)
        if before:
            predictions = predictions.filter(created_at__date__lte=before)
        codes = [c["code"] for c in version.classes]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", *codes])
        count = 0
        for case_id, probabilities in predictions.values_list("case_id", "diagnosis_probabilities"):
            writer.writerow(
                [f"case-{case_id}", *(f"{probabilities.get(c, 0.0):.6f}" for c in codes)]
            )
            count += 1
        audit_record(
            action=AuditAction.EXPORT,
            actor=request.user,
            target_type="predictions_csv",
            detail={"model_version": version.pk, "clinics": clinic_ids, "rows": count},
        )
        response = HttpResponse(buffer.getvalue(), content_type="text/csv")
        response["Content-Disposition"] = (
            f'attachment; filename="predictions-{version.name}-{version.version}.csv"'
        )
        response["Cache-Control"] = "no-store"
        return response
