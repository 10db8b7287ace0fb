"""The model registry as the web tier reads and changes it: the active version, activation,
the stored evaluation and its plots. Registering weights (torch) is in ``registration``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from ml.models import ModelVersion

PLOT_NAMES = ("confusion_matrix", "roc", "reliability")


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make this version the one active model (the others are deactivated)."""
    ModelVersion.objects.select_for_update().filter(is_active=True).exclude(
        pk=model_version.pk
    ).update(is_active=False)
    model_version.is_active = True
    model_version.save(update_fields=["is_active"])
    return model_version


def metrics_from_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of a checkpoint's training metadata: the held-out report and the
    validation curve the clinics choose their operating point from."""
    metrics = dict(metadata.get("metrics") or {})
    report = metadata.get("test_report") or {}
    if report:
        metrics["test"] = report
    if metadata.get("validation_roc"):
        metrics["validation_roc"] = metadata["validation_roc"]
    if metadata.get("config"):
        metrics["config"] = metadata["config"]
    if metadata.get("test_image_ids"):
        metrics["test_image_ids"] = list(metadata["test_image_ids"])
    return metrics


def plots_dir(model_version: ModelVersion) -> Path:
    return Path(settings.MODEL_ROOT) / "plots" / model_version.weights_sha256


def model_version_plots(model_version: ModelVersion) -> dict[str, Path]:
    """Draw (once) the held-out evaluation plots of a model version from its stored report."""
    report = (model_version.metrics or {}).get("test")
    if not report:
        return {}
    folder = plots_dir(model_version)
    if not all((folder / f"{n}.png").is_file() for n in PLOT_NAMES):
        from ml.engine.eval.plots import save_plots
        from ml.engine.model.taxonomy import classes_from_dicts

        save_plots(report, None, None, folder, classes=classes_from_dicts(model_version.classes))
    return {n: folder / f"{n}.png" for n in PLOT_NAMES if (folder / f"{n}.png").is_file()}
