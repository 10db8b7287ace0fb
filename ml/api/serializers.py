from django.urls import reverse
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from diagnosis.models import Case
from ml import selectors
from ml.api import examples
from ml.models import DISCLAIMER, ModelVersion, Prediction, Review


class ModelVersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "is_demo"]


@extend_schema_serializer(examples=examples.MODEL_VERSION)
class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "backbone",
            "classes",
            "preprocessing",
            "thresholds",
            "temperature",
            "metrics",
            "weights_sha256",
            "is_active",
            "is_demo",
            "created_at",
        ]
        read_only_fields = fields


class PredictionSerializer(serializers.ModelSerializer):
    model_version = ModelVersionSummarySerializer(read_only=True)
    top_diagnosis_name = serializers.CharField(read_only=True)
    heatmap_url = serializers.SerializerMethodField()
    disclaimer = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "model_version",
            "malignant_probability",
            "malignant_threshold",
            "category",
            "top_diagnosis",
            "top_diagnosis_name",
            "top_probability",
            "diagnosis_probabilities",
            "uncertain",
            "heatmap_url",
            "inference_ms",
            "created_at",
            "disclaimer",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap_url(self, prediction) -> str | None:
        if not prediction.heatmap:
            return None
        url = reverse("api:case-heatmap", args=[prediction.case_id])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_disclaimer(self, prediction) -> str:
        if prediction.model_version.is_demo:
            return "DEMO model — predictions are meaningless. " + DISCLAIMER
        return DISCLAIMER


@extend_schema_serializer(examples=examples.REVIEW)
class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    prediction = serializers.PrimaryKeyRelatedField(read_only=True)
    final_diagnosis = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="In: with verdict override, one of the model's class codes or any ISIC "
        "diagnosis (the full hierarchical value or its last level, e.g. 'Melanoma in situ'). "
        "Out: the model's class the final diagnosis falls under ('' when none does).",
    )
    final_isic_diagnosis = serializers.CharField(
        read_only=True, help_text="The final diagnosis in the ISIC hierarchy ('' for a send-back)"
    )
    final_diagnosis_name = serializers.CharField(
        read_only=True, help_text="The final diagnosis's readable name"
    )
    follow_up_months = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=60,
        help_text="With management monitor: see the lesion again after this many months",
    )

    class Meta:
        model = Review
        fields = [
            "id",
            "prediction",
            "reviewer",
            "verdict",
            "final_diagnosis",
            "final_isic_diagnosis",
            "final_diagnosis_name",
            "send_back_reason",
            "management",
            "follow_up_months",
            "follow_up_due",
            "refer_to",
            "notes",
            "created_at",
        ]
        read_only_fields = ["id", "prediction", "reviewer", "follow_up_due", "created_at"]
        extra_kwargs = {
            "notes": {"required": False},
            "send_back_reason": {
                "required": False,
                "help_text": "Required with verdict send_back: why the image is sent back",
            },
            "management": {
                "required": False,
                "help_text": "Required with verdict agree or override: what happens next",
            },
            "refer_to": {"required": False, "help_text": "Required with management refer"},
        }


@extend_schema_serializer(examples=examples.CASE)
class CaseSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="lesion.patient_id", read_only=True)
    submitted_by = serializers.CharField(
        source="submitted_by.username", read_only=True, default=None
    )
    image_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField(
        help_text="A small JPEG of the image for lists (cacheable); add ?size=768 for a larger one."
    )
    prediction = serializers.SerializerMethodField()
    latest_review = serializers.SerializerMethodField(
        help_text="The newest dermatologist's review of the prediction, or null."
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "clinic",
            "patient",
            "lesion",
            "status",
            "error",
            "image_type",
            "notes",
            "captured_at",
            "width",
            "height",
            "image_sha256",
            "image_url",
            "thumbnail_url",
            "submitted_by",
            "follows",
            "created_at",
            "updated_at",
            "prediction",
            "latest_review",
        ]
        read_only_fields = fields

    def get_image_url(self, case) -> str:
        url = reverse("api:case-image", args=[case.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_thumbnail_url(self, case) -> str:
        url = reverse("api:case-thumbnail", args=[case.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, case):
        prediction = selectors.latest_prediction(case)
        if prediction is None:
            return None
        return PredictionSerializer(prediction, context=self.context).data

    @extend_schema_field(ReviewSerializer(allow_null=True))
    def get_latest_review(self, case):
        review = selectors.latest_review(selectors.latest_prediction(case))
        return None if review is None else ReviewSerializer(review, context=self.context).data
