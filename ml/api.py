import csv
import io

import django_filters
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from ml.models import ModelVersion, Prediction
from ml.selectors import QUEUE_STATES, review_queue
from ml.serializers import ModelVersionSerializer, PredictionSerializer


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else str(data)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Registered model versions (immutable). Exactly one is active."""

    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.order_by("-created_at")
    filterset_fields = ["is_active", "is_demo", "name"]
    ordering_fields = ["created_at", "name"]

    @extend_schema(responses=ModelVersionSerializer)
    @action(detail=False, methods=["get"])
    def active(self, request):
        model_version = ModelVersion.objects.filter(is_active=True).first()
        if model_version is None:
            raise NotFound("No model is active.")
        return Response(self.get_serializer(model_version).data)


class ReviewQueueFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=list(QUEUE_STATES.items()), method="noop")
    model_version = django_filters.NumberFilter(method="noop")
    diagnosis = django_filters.CharFilter(method="noop")
    since = django_filters.DateFilter(method="noop")
    until = django_filters.DateFilter(method="noop")

    class Meta:
        model = Prediction
        fields: list[str] = []

    def noop(self, queryset, name, value):
        return queryset  # applied by the selector, which knows the queue's rules


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
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend]

    def get_queryset(self):
        from diagnosis.selectors import reviewer_clinic_ids

        if getattr(self, "swagger_fake_view", False):
            return Prediction.objects.none()
        if not reviewer_clinic_ids(self.request.user):
            raise PermissionDenied("The review queue is for dermatologists and clinic admins.")
        params = self.request.query_params
        return review_queue(
            self.request.user,
            state=params.get("state") or "unreviewed",
            model_version=int(params["model_version"])
            if params.get("model_version", "").isdigit()
            else None,
            diagnosis=params.get("diagnosis", ""),
            since=_date(params.get("since")),
            until=_date(params.get("until")),
        )


def _date(value):
    from django.utils.dateparse import parse_date

    try:
        return parse_date(value) if value else None
    except ValueError:
        return None


class PredictionExportView(APIView):
    """Predictions of one model version as CSV in the ISIC challenge submission layout: an
    ``image`` column (``case-<id>``) and one probability column per class, for a date range,
    scoped to the caller's clinics (dermatologists and clinic admins)."""

    renderer_classes = [JSONRenderer, CSVRenderer]  # errors as JSON; the export itself is CSV

    @extend_schema(
        parameters=[
            OpenApiParameter("model_version", int, description="Default: the active model"),
            OpenApiParameter("clinic", int, description="Default: all your clinics"),
            OpenApiParameter("created_after", OpenApiTypes.DATE),
            OpenApiParameter("created_before", OpenApiTypes.DATE),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        from diagnosis.audit import audit_record
        from diagnosis.models import AuditAction
        from diagnosis.selectors import reviewer_clinic_ids

        clinic_ids = reviewer_clinic_ids(request.user)
        if not clinic_ids:
            raise PermissionDenied("Exports are for dermatologists and clinic admins.")
        params = request.query_params
        if params.get("clinic"):
            if not params["clinic"].isdigit() or int(params["clinic"]) not in clinic_ids:
                raise NotFound("No such clinic.")
            clinic_ids = [int(params["clinic"])]
        if params.get("model_version"):
            version = (
                ModelVersion.objects.filter(pk=params["model_version"]).first()
                if params["model_version"].isdigit()
                else None
            )
        else:
            version = ModelVersion.objects.filter(is_active=True).first()
        if version is None:
            raise NotFound("No such model version.")
        predictions = Prediction.objects.filter(
            model_version=version, case__clinic_id__in=clinic_ids
        ).order_by("case_id")
        after, before = _date(params.get("created_after")), _date(params.get("created_before"))
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
