import base64
import datetime

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from typing_extensions import override

from diagnosis.admin import CaseAdmin, ReadOnlyAdmin
from diagnosis.models import Case
from ml.models import ModelVersion, Prediction, Review, TrainingRun
from ml.services import queue, registry


class ReviewWindowForm(forms.Form):
    """The performance page's window: reviews made from one day to another (both included)."""

    reviewed_from = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Reviewed from"
    )
    reviewed_to = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to"
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("reviewed_from"), data.get("reviewed_to")
        if start and end and end < start:
            raise forms.ValidationError("The window ends before it starts.")
        return data

    def bounds(self):
        """(start, end) as aware datetimes: from the first day's midnight to after the last."""
        start, end = self.cleaned_data.get("reviewed_from"), self.cleaned_data.get("reviewed_to")

        def midnight(day):
            return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))

        return (
            midnight(start) if start else None,
            midnight(end + datetime.timedelta(days=1)) if end else None,
        )


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "version",
        "backbone",
        "is_active",
        "is_demo",
        "created_at",
        "performance_link",
    ]
    list_filter = ["is_active", "is_demo", "backbone"]
    actions = ["activate"]
    readonly_fields = ["evaluation_plots", "held_out_summary"]

    class Media:
        # The evaluation plots' layout: the CSP allows no inline styles.
        css = {"all": ["css/admin_extra.css"]}

    @admin.display(description="Held-out test split")
    def held_out_summary(self, obj):
        report = (obj.metrics or {}).get("test") or {}
        if not report:
            return "No held-out report (registered without training metadata)."
        keys = ["balanced_accuracy", "malignant_auc", "macro_auc", "ece", "ece_calibrated"]
        return format_html_join(
            ", ", "{} {}", ((k, f"{report[k]:.3f}") for k in keys if report.get(k) is not None)
        )

    @admin.display(description="Evaluation plots (held-out test split)")
    def evaluation_plots(self, obj):
        plots = registry.model_version_plots(obj)
        if not plots:
            return "No plots: this model was registered without an evaluation report."
        return format_html_join(
            "",
            '<figure class="evaluation-plot"><img src="{}" alt="{}">'
            "<figcaption>{}</figcaption></figure>",
            (
                (
                    reverse("admin:ml_modelversion_plot", args=[obj.pk, name]),
                    name,
                    name.replace("_", " "),
                )
                for name in plots
            ),
        )

    def plot_view(self, _request, pk: int, name: str):
        from django.http import FileResponse, Http404

        path = registry.model_version_plots(get_object_or_404(ModelVersion, pk=pk)).get(name)
        if path is None:
            raise Http404("No such plot.")
        return FileResponse(path.open("rb"), content_type="image/png")

    @admin.display(description="Performance")
    def performance_link(self, obj):
        url = reverse("admin:ml_modelversion_performance", args=[obj.pk])
        return format_html('<a href="{}">against reviews</a>', url)

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/performance/",
                self.admin_site.admin_view(self.performance_view),
                name="ml_modelversion_performance",
            ),
            path(
                "<int:pk>/plots/<str:name>.png",
                self.admin_site.admin_view(self.plot_view),
                name="ml_modelversion_plot",
            ),
            path(
                "<int:pk>/compare/<int:other>/",
                self.admin_site.admin_view(self.compare_view),
                name="ml_modelversion_compare",
            ),
        ]
        return extra + super().get_urls()

    def compare_view(self, request, pk: int, other: int):
        """Where two model versions disagree on the same cases (after a shadow re-run)."""
        from ml.selectors import model_comparison

        first = get_object_or_404(ModelVersion, pk=pk)
        second = get_object_or_404(ModelVersion, pk=other)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{first} compared with {second}",
            "first": first,
            "second": second,
            "comparison": model_comparison(first, second),
        }
        return TemplateResponse(request, "admin/ml/modelversion/compare.html", context)

    def performance_view(self, request, pk: int):
        """The model version measured against the reviewers' final diagnoses."""
        from ml.engine.eval.reviewed import calibration_png, performance
        from ml.selectors import reviewed_predictions, sent_back_count

        model_version = get_object_or_404(ModelVersion, pk=pk)
        codes = [c["code"] for c in model_version.classes]
        window = ReviewWindowForm(request.GET or None)
        bounds = window.bounds() if window.is_valid() else (None, None)
        report = performance(
            reviewed_predictions(model_version, reviewed_from=bounds[0], reviewed_before=bounds[1]),
            codes,
        )
        rows = list(zip(report["labels"], report["confusion_matrix"], strict=True))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Performance of {model_version} against reviews",
            "model_version": model_version,
            "window": window,
            "report": report,
            "sent_back": sent_back_count(
                model_version, reviewed_from=bounds[0], reviewed_before=bounds[1]
            ),
            "matrix_rows": rows,
            "calibration_png": base64.b64encode(calibration_png(report)).decode(),
        }
        return TemplateResponse(request, "admin/ml/modelversion/performance.html", context)

    @override
    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Activate the selected model version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version.", messages.ERROR)
            return
        model_version = registry.model_version_activate(model_version=queryset.get())
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
    # "How often was the model overridden last month, per model version?": filter and count.
    list_filter = [
        "verdict",
        "prediction__model_version",
        "prediction__case__clinic",
        ("created_at", admin.DateFieldListFilter),
    ]
    date_hierarchy = "created_at"
    search_fields = ["reviewer__username"]
    actions = ["export_for_retraining"]

    @admin.action(description="Export the reviewed cases for retraining (ZIP)")
    def export_for_retraining(self, request, queryset):
        from django.http import HttpResponse

        from diagnosis.audit import audit_record
        from diagnosis.models import AuditAction
        from ml.reviewed_export import reviewed_rows, write_zip

        case_ids = set(queryset.values_list("prediction__case_id", flat=True))
        rows = [r for r in reviewed_rows() if r.case.pk in case_ids]
        if not rows:
            self.message_user(request, "None of these reviews states a diagnosis.", messages.ERROR)
            return None
        audit_record(
            action=AuditAction.EXPORT,
            actor=request.user,
            target_type="training_set",
            detail={"rows": len(rows), "via": "admin"},
        )
        response = HttpResponse(write_zip(rows), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="skinsense-reviewed.zip"'
        response["Cache-Control"] = "no-store"
        return response


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    """Training runs as they go: status, the latest epoch's metrics, the log."""

    list_display = ["pk", "status", "started_at", "updated_at", "latest", "model_version"]
    list_filter = ["status"]
    readonly_fields = [
        "status",
        "started_at",
        "updated_at",
        "finished_at",
        "model_version",
        "output_dir",
        "config",
        "history",
        "metrics",
        "error",
        "log",
    ]

    @admin.display(description="Latest epoch")
    def latest(self, obj):
        last = obj.last_epoch
        if not last:
            return "—"
        accuracy = last.get("val_balanced_accuracy")
        shown = f", val BA {accuracy:.3f}" if isinstance(accuracy, float) else ""
        return f"fold {last.get('fold')}, epoch {last.get('epoch')}{shown}"


# The clinical records' case admin, with the action that belongs to the model: a shadow run.
admin.site.unregister(Case)


@admin.register(Case)
class CaseWithShadowRunAdmin(CaseAdmin):
    actions = ["rerun_with_model_version"]

    @admin.action(description="Re-run with another model version (shadow comparison)")
    def rerun_with_model_version(self, request, queryset):
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers can re-run cases.", messages.ERROR)
            return None
        versions = ModelVersion.objects.filter(is_active=False).order_by("-created_at")
        chosen = request.POST.get("model_version")
        if "apply" in request.POST and chosen:
            version = versions.filter(pk=chosen).first()
            if version is None:
                self.message_user(request, "Choose an inactive model version.", messages.ERROR)
                return None
            sent = queue.shadow_run_enqueue(
                case_ids=list(queryset.values_list("pk", flat=True)), model_version=version
            )
            self.message_user(
                request,
                f"{sent} case(s) queued for a shadow run with {version}. Compare the "
                "versions on the model version's compare page.",
            )
            return None
        return TemplateResponse(
            request,
            "admin/diagnosis/case/rerun.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Re-run cases with another model version",
                "cases": queryset,
                "versions": versions,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )
