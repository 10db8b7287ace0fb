from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from ml.models import ModelVersion
from ml.serializers import ModelVersionSerializer


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
