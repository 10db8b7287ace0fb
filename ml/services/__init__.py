"""Writes owned by ``ml``, one module per domain: the model registry (``registry``,
``registration``), sending work to the workers (``queue``), prediction (``predictors``,
``batching``, ``passes``, ``prediction``), heatmaps, reviews, the clinics' operating points
and the sweeper.

This package's namespace is the API that workers, commands and tests use. Web modules import
the light submodules they need directly (``registry``, ``queue``, ``review``,
``operating_point``): the prediction modules load torch when they run.
"""

from ml.services.errors import PermanentPredictionError
from ml.services.heatmaps import prediction_heatmap_compute
from ml.services.operating_point import clinic_thresholds, operating_point_choose
from ml.services.prediction import predict_case
from ml.services.predictors import worker_warm_up
from ml.services.queue import enqueue_heatmap, enqueue_prediction, shadow_run_enqueue
from ml.services.registration import (
    ShippedModelError,
    default_model_ensure,
    demo_model_ensure,
    model_version_register,
)
from ml.services.registry import (
    active_model_version,
    metrics_from_metadata,
    model_version_activate,
    model_version_plots,
    plots_dir,
)
from ml.services.review import review_submit
from ml.services.sweeper import requeue_stuck_cases

__all__ = [
    "PermanentPredictionError",
    "active_model_version",
    "clinic_thresholds",
    "ShippedModelError",
    "default_model_ensure",
    "demo_model_ensure",
    "enqueue_heatmap",
    "enqueue_prediction",
    "metrics_from_metadata",
    "model_version_activate",
    "model_version_plots",
    "model_version_register",
    "operating_point_choose",
    "plots_dir",
    "predict_case",
    "prediction_heatmap_compute",
    "requeue_stuck_cases",
    "review_submit",
    "shadow_run_enqueue",
    "worker_warm_up",
]
