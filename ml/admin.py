from django.contrib import admin, messages

from diagnosis.admin import ReadOnlyAdmin
from ml.models import ModelVersion, Prediction, Review
from ml.services import model_version_activate


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "backbone", "is_active", "is_demo", "created_at"]
    list_filter = ["is_active", "is_demo", "backbone"]
    actions = ["activate"]

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Activate the selected model version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version.", messages.ERROR)
            return
        model_version = model_version_activate(model_version=queryset.get())
        self.message_user(request, f"{model_version} is now the active model.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("activate", None)
        return actions


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "case",
        "model_version",
        "category",
        "top_diagnosis",
        "malignant_probability",
        "uncertain",
        "created_at",
    ]
    list_filter = ["model_version", "category", "uncertain", "top_diagnosis"]
    search_fields = ["case__lesion__patient__identifier"]
    date_hierarchy = "created_at"


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["pk", "prediction", "reviewer", "verdict", "final_diagnosis", "created_at"]
    list_filter = ["verdict"]
