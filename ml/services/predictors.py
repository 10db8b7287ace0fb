"""The serving predictor of a model version (PyTorch or ONNX Runtime, as INFERENCE_BACKEND
says), the worker's warm-up, and a stored image read as the model needs it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings

from diagnosis.models import Case
from ml.models import ModelVersion
from ml.services.errors import PermanentPredictionError
from ml.services.registry import active_model_version

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)


def predictor_for(model_version: ModelVersion) -> Any:
    """The serving predictor of this model version, on the backend INFERENCE_BACKEND names."""
    backend = settings.INFERENCE_BACKEND
    if backend == "torch":
        return torch_predictor_for(model_version)
    return _onnx_predictor_for(model_version, int8=backend == "onnx-int8")


def _onnx_model_path(model_version: ModelVersion, *, int8: bool) -> Any:
    """The cached export to serve: the int8 one only when its export recorded it as offered
    (balanced accuracy within 1 point of fp32), else fp32, with a warning."""
    from ml.engine.serve import onnx as onnx_engine

    cache = settings.MODEL_ROOT / "onnx"
    fp32 = onnx_engine.onnx_path_for(cache, model_version.weights_sha256)
    if not int8:
        return fp32
    int8_path = onnx_engine.onnx_path_for(cache, model_version.weights_sha256, variant="int8")
    gate = (onnx_engine.read_sidecar(int8_path).get("int8") or {}) if int8_path.is_file() else {}
    if gate.get("offered"):
        return int8_path
    logger.warning(
        "model %s: no int8 model offered (run manage.py export_onnx --int8); using fp32",
        model_version,
    )
    return fp32


def _onnx_predictor_for(model_version: ModelVersion, *, int8: bool) -> Any:
    """ONNX Runtime, from the cache that ``manage.py export_onnx`` fills (keyed by the weights'
    SHA-256). A missing fp32 export is made here once (that process imports torch for it)."""
    from ml.engine.serve import onnx as onnx_engine

    path = model_version.weights_path
    if not path.is_file():
        raise PermanentPredictionError(f"The weights file of model {model_version} is missing.")
    chosen = _onnx_model_path(model_version, int8=int8)
    try:
        if not chosen.is_file():
            from ml.engine.serve.torch_predictor import WeightsMismatchError

            logger.info("model %s: exporting to ONNX (once)", model_version)
            try:
                onnx_engine.export_onnx(
                    path, model_version.weights_sha256, settings.MODEL_ROOT / "onnx"
                )
            except WeightsMismatchError as exc:
                raise PermanentPredictionError(f"Model {model_version} refused: {exc}") from exc
        return onnx_engine.get_onnx_predictor(chosen, threads=settings.INFERENCE_THREADS)
    except onnx_engine.OnnxModelMismatchError as exc:
        raise PermanentPredictionError(f"Model {model_version} refused: {exc}") from exc


def torch_predictor_for(model_version: ModelVersion) -> Any:
    """The PyTorch predictor (also what Grad-CAM needs, whatever the serving backend)."""
    from ml.engine.model.checkpoint import CheckpointError
    from ml.engine.serve.torch_predictor import WeightsMismatchError, get_predictor

    path = model_version.weights_path
    if not path.is_file():
        raise PermanentPredictionError(f"The weights file of model {model_version} is missing.")
    try:
        return get_predictor(
            path, sha256=model_version.weights_sha256, device=settings.INFERENCE_DEVICE
        )
    except (WeightsMismatchError, CheckpointError) as exc:
        raise PermanentPredictionError(f"Model {model_version} refused: {exc}") from exc


def worker_warm_up() -> None:
    """Set the thread count and load the active model once, when a worker process starts, so
    the first case does not pay for it. Failures are logged: tasks report them per case."""
    if settings.INFERENCE_THREADS > 0 and settings.INFERENCE_BACKEND == "torch":
        import torch

        torch.set_num_threads(settings.INFERENCE_THREADS)
    model_version = active_model_version()
    if model_version is None:
        return
    try:
        predictor_for(model_version)
    except PermanentPredictionError as exc:
        logger.error("worker warm-up: %s", exc)
    else:
        logger.info("worker warm-up: model %s loaded", model_version)


def load_case_image(case: Case, preprocessing: dict[str, Any]) -> Image.Image:
    """The stored image as the model needs it (large JPEGs decoded in draft mode)."""
    from ml.engine.data.images import open_for_model

    try:
        with case.image.open("rb") as handle:
            return open_for_model(handle, preprocessing, draft=settings.INFERENCE_JPEG_DRAFT)
    except (OSError, ValueError) as exc:
        raise PermanentPredictionError(f"The stored image could not be read: {exc}") from exc
