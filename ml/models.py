"""What the model is (ModelVersion) and what it said (Prediction), and what humans said (Review)."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from diagnosis.models import Case


class ModelVersion(models.Model):
    """A registered, immutable model. Exactly one is active at a time (or none yet)."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    backbone = models.CharField(max_length=30)
    classes = models.JSONField(help_text="[{code, name, category, isic_diagnosis}] in output order")
    weights_file = models.CharField(max_length=500, help_text="Path relative to MODEL_ROOT")
    weights_sha256 = models.CharField(max_length=64)
    preprocessing = models.JSONField(default=dict)
    thresholds = models.JSONField(default=dict)
    temperature = models.FloatField(default=1.0)
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    is_demo = models.BooleanField(
        default=False, help_text="Random weights for trying the platform: predictions meaningless."
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_name_version_unique"),
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_model"
            ),
            models.CheckConstraint(condition=Q(temperature__gt=0), name="temperature_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}" + (" (demo)" if self.is_demo else "")

    @property
    def weights_path(self):
        return settings.MODEL_ROOT / self.weights_file

    def class_map(self) -> dict:
        return {c["code"]: c for c in self.classes}

    def validation_curve(self) -> list[dict]:
        """The malignant head's ROC on validation data: [{threshold, sensitivity,
        specificity}], as training stored it in ``metrics["validation_roc"]``."""
        points = (self.metrics or {}).get("validation_roc") or []
        return sorted(
            ({k: float(p[k]) for k in ("threshold", "sensitivity", "specificity")} for p in points),
            key=lambda p: p["threshold"],
        )

    def operating_point_for(self, sensitivity: float) -> dict | None:
        """The highest threshold whose validation sensitivity reaches the target."""
        reaching = [p for p in self.validation_curve() if p["sensitivity"] >= sensitivity]
        return max(reaching, key=lambda p: p["threshold"]) if reaching else None


def heatmap_path(instance: "Prediction", _filename: str) -> str:
    return f"heatmaps/{instance.case.clinic_id}/{uuid.uuid4().hex}.png"


# What every prediction is shown with, in the pages and the API.
DISCLAIMER = "Decision support, not a diagnosis. The final judgement is the clinician's."


class PredictionCategory(models.TextChoices):
    BENIGN = "benign", "Benign"
    INDETERMINATE = "indeterminate", "Indeterminate"
    MALIGNANT = "malignant", "Malignant"


class Prediction(models.Model):
    """What one model version said about one case. Re-running a task never duplicates it."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions"
    )
    malignant_probability = models.FloatField()
    malignant_threshold = models.FloatField(help_text="The threshold this prediction was judged by")
    diagnosis_probabilities = models.JSONField(help_text="{class code: probability}")
    top_diagnosis = models.CharField(max_length=32)
    top_probability = models.FloatField()
    category = models.CharField(max_length=16, choices=PredictionCategory.choices)
    uncertain = models.BooleanField()
    shadow = models.BooleanField(
        default=False,
        help_text="Made by re-running the case with a model that was not the active one "
        "(shadow comparison); not shown as the case's result.",
    )
    heatmap = models.FileField(
        upload_to=heatmap_path,
        blank=True,
        max_length=255,
        help_text="Grad-CAM of the malignant head: regions that influenced the model (PNG).",
    )
    inference_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "model_version"], name="one_prediction_per_case_and_model"
            ),
            models.CheckConstraint(
                condition=Q(malignant_probability__gte=0) & Q(malignant_probability__lte=1),
                name="malignant_probability_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(category__in=PredictionCategory.values),
                name="prediction_category_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Prediction {self.pk} for case {self.case_id}"

    def top_diagnoses(self, limit: int | None = None) -> list[dict]:
        """The classes (all, or the ``limit`` most probable) with their names and categories,
        most probable first."""
        classes = self.model_version.class_map()
        ranked = sorted(self.diagnosis_probabilities.items(), key=lambda kv: kv[1], reverse=True)
        return [
            {
                "code": code,
                "name": classes.get(code, {}).get("name", code),
                "category": classes.get(code, {}).get("category", ""),
                "probability": probability,
            }
            for code, probability in ranked[:limit]
        ]

    @property
    def last_verdict_display(self) -> str:
        """The readable verdict of the latest review (``review_queue`` annotates the code)."""
        code = getattr(self, "last_verdict", None)
        return Verdict(code).label if code in Verdict.values else ""

    @property
    def heads_disagree(self) -> bool:
        """The binary head and the top diagnosis point opposite ways: by the one rule
        (``ml.engine.serve.base.interpret``) the category is then indeterminate while the top
        diagnosis itself is benign or malignant."""
        top = self.model_version.class_map().get(self.top_diagnosis, {}).get("category")
        return self.category == PredictionCategory.INDETERMINATE and top in ("benign", "malignant")

    @property
    def top_diagnosis_name(self) -> str:
        return (
            self.model_version.class_map()
            .get(self.top_diagnosis, {})
            .get("name", self.top_diagnosis)
        )


class Verdict(models.TextChoices):
    AGREE = "agree", "Agree with the model"
    OVERRIDE = "override", "Different final diagnosis"
    SEND_BACK = "send_back", "Send back for a new image"


class SendBackReason(models.TextChoices):
    BLURRY = "blurry", "Blurred or out of focus"
    WRONG_LESION = "wrong_lesion", "Wrong lesion, or the lesion is not fully in the image"
    NO_DERMOSCOPY = "no_dermoscopy", "Not a dermoscopic image"
    OTHER = "other", "Other (see the notes)"


class Management(models.TextChoices):
    """What happens next to the lesion, decided by the reviewer."""

    NO_ACTION = "no_action", "No action"
    MONITOR = "monitor", "Monitor (follow-up)"
    BIOPSY = "biopsy", "Biopsy"
    EXCISION = "excision", "Excision"
    REFER = "refer", "Refer"


class Review(models.Model):
    """A dermatologist's opinion of a prediction. Several per prediction are allowed; all kept.

    ``final_isic_diagnosis`` is any term of the ISIC diagnosis hierarchy; ``final_diagnosis`` is
    the model's class it falls under ("" when none does). A send-back names a reason and no
    diagnosis or management; agreeing or giving a final diagnosis comes with a management
    decision (``ml.services.review``)."""

    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    final_diagnosis = models.CharField(
        max_length=32, blank=True, help_text="The model's class of the final diagnosis"
    )
    final_isic_diagnosis = models.CharField(
        max_length=255, blank=True, help_text="The final diagnosis in the ISIC hierarchy"
    )
    send_back_reason = models.CharField(max_length=16, choices=SendBackReason.choices, blank=True)
    management = models.CharField(max_length=12, choices=Management.choices, blank=True)
    follow_up_months = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Monitor: see the lesion again after this many months"
    )
    follow_up_due = models.DateField(null=True, blank=True, db_index=True)
    refer_to = models.CharField(max_length=200, blank=True, help_text="Refer: to whom")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(verdict__in=Verdict.values), name="verdict_valid"),
            models.CheckConstraint(
                condition=~Q(verdict=Verdict.OVERRIDE)
                | ~Q(final_isic_diagnosis="")
                | ~Q(final_diagnosis=""),
                name="override_names_a_diagnosis",
            ),
            models.CheckConstraint(
                condition=~Q(verdict=Verdict.SEND_BACK)
                | (~Q(send_back_reason="") & Q(management="") & Q(final_isic_diagnosis="")),
                name="send_back_has_reason_only",
            ),
            models.CheckConstraint(
                condition=Q(verdict=Verdict.SEND_BACK) | Q(send_back_reason=""),
                name="reason_only_on_send_back",
            ),
            models.CheckConstraint(
                condition=~Q(management=Management.MONITOR)
                | (Q(follow_up_months__gte=1) & Q(follow_up_due__isnull=False)),
                name="monitor_has_interval",
            ),
            models.CheckConstraint(
                condition=~Q(management=Management.REFER) | ~Q(refer_to=""),
                name="refer_names_whom",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} by {self.reviewer} on prediction {self.prediction_id}"

    @property
    def final_diagnosis_name(self) -> str:
        """The final diagnosis's readable name: the ISIC term's last level, else the model
        class's name (its code if none)."""
        if self.final_isic_diagnosis:
            return self.final_isic_diagnosis.split(":")[-1]
        if not self.final_diagnosis:
            return ""
        classes = self.prediction.model_version.class_map()
        return classes.get(self.final_diagnosis, {}).get("name", self.final_diagnosis)

    @property
    def final_category(self) -> str:
        """benign / indeterminate / malignant of the final diagnosis ("" for a send-back)."""
        if self.final_isic_diagnosis:
            return self.final_isic_diagnosis.split(":")[0].lower()
        classes = self.prediction.model_version.class_map()
        return classes.get(self.final_diagnosis, {}).get("category", "")

    @property
    def management_display(self) -> str:
        """The management decision in words, e.g. "Monitor (follow-up) in 6 months"."""
        if not self.management:
            return ""
        text = self.get_management_display()
        if self.management == Management.MONITOR and self.follow_up_months:
            months = self.follow_up_months
            text = f"Monitor: see again in {months} month{'s' if months != 1 else ''}"
        elif self.management == Management.REFER and self.refer_to:
            text = f"Refer to {self.refer_to}"
        return text


class NotificationPreference(models.Model):
    """What a user asked to be told by e-mail. Off until the user opts in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    review_emails = models.BooleanField(
        default=False,
        help_text="An e-mail when a case you filed is reviewed (the e-mail carries a link, "
        "never patient data).",
    )

    def __str__(self) -> str:
        return f"notifications of {self.user}"


class CaseSeen(models.Model):
    """When a user last opened a case's page: what "reviewed since you last looked" on the
    dashboard compares the case's latest review with."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "case"], name="one_seen_per_user_case")
        ]

    def __str__(self) -> str:
        return f"{self.user} saw case {self.case_id} at {self.seen_at:%Y-%m-%d %H:%M}"


class ClinicOperatingPoint(models.Model):
    """A clinic's malignant threshold for a model version, chosen from the model's validation
    curve by a clinic admin; its predictions are judged with it (and store it)."""

    clinic = models.ForeignKey(
        "diagnosis.Clinic", on_delete=models.CASCADE, related_name="operating_points"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="operating_points"
    )
    threshold = models.FloatField()
    sensitivity = models.FloatField(help_text="On the model's validation data")
    specificity = models.FloatField(help_text="On the model's validation data")
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    chosen_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "model_version"], name="one_operating_point_per_clinic_model"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0) & Q(threshold__lte=1), name="threshold_in_unit_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.clinic} · {self.model_version}: {self.threshold:.3f}"


class TrainingStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class TrainingRun(models.Model):
    """One `manage.py train`: its configuration, its progress epoch by epoch, its log, and the
    model version it produced."""

    config = models.JSONField()
    status = models.CharField(
        max_length=10, choices=TrainingStatus.choices, default=TrainingStatus.RUNNING
    )
    history = models.JSONField(default=list, help_text="One entry per epoch of every fold")
    metrics = models.JSONField(default=dict, blank=True, help_text="The held-out test report")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    output_dir = models.CharField(max_length=500, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.get_status_display()})"

    @property
    def last_epoch(self) -> dict:
        return self.history[-1] if self.history else {}
