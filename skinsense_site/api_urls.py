"""The REST API under /api/v1/ (the paths of the product design, docs/api.md)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from diagnosis.api.auth import MeView, TokenView
from diagnosis.api.corrections import CaseCorrectionViewSet
from diagnosis.api.views import (
    AuditEventViewSet,
    LesionViewSet,
    MembershipViewSet,
    PatientViewSet,
    WebhookViewSet,
)
from ml.api.cases import CaseViewSet
from ml.api.diagnoses import DiagnosisInformationViewSet
from ml.api.predictions import ModelVersionViewSet, PredictionExportView, ReviewQueueViewSet

router = DefaultRouter()
router.register("patients", PatientViewSet, basename="patient")
router.register("lesions", LesionViewSet, basename="lesion")
# Corrections of cases (move, withdraw, restore, withdrawn): before CaseViewSet, so that
# cases/withdrawn/ is not read as a case id, and the API root still lists cases/ as the cases.
router.register("cases", CaseCorrectionViewSet, basename="case-correction")
router.register("cases", CaseViewSet, basename="case")
router.register("models", ModelVersionViewSet, basename="modelversion")
router.register("review-queue", ReviewQueueViewSet, basename="review-queue")
router.register("audit-events", AuditEventViewSet, basename="auditevent")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("memberships", MembershipViewSet, basename="membership")

app_name = "api"

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("me/", MeView.as_view(), name="me"),
    path("exports/predictions.csv", PredictionExportView.as_view(), name="export-predictions"),
    # General text, not records: a path of its own, outside the router's lists.
    path(
        "diagnosis-information/",
        DiagnosisInformationViewSet.as_view({"get": "list"}),
        name="diagnosis-information",
    ),
    path("", include(router.urls)),
]
