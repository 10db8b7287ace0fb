"""ONNX Runtime CPU inference without torch: the session, the OnnxPredictor and its cache.

No Django here. ``OnnxPredictor`` answers like ``serve.torch_predictor.Predictor`` (the same
``PredictionResult``, read by the same ``serve.base``) from an .onnx file and its sidecar, with
the NumPy preprocessing of ``preprocess``; a worker that only serves ONNX never imports torch.
``get_onnx_predictor`` keeps one per process.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from ml.engine.files import sha256_file
from ml.engine.model.taxonomy import classes_from_dicts
from ml.engine.model.thresholds import with_defaults
from ml.engine.numeric import sigmoid, softmax
from ml.engine.serve.base import BatchPredictor
from ml.engine.serve.onnx.preprocess import preprocess_image
from ml.engine.serve.onnx.sidecar import (
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxModelMismatchError,
    read_sidecar,
    variant_of,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "OnnxModelMismatchError",
    "OnnxPredictor",
    "cached_onnx_models",
    "clear_onnx_cache",
    "create_session",
    "get_onnx_predictor",
    "preprocess_image",
]

Batch = NDArray[np.float32]  # float32[N, 3, S, S]
Probabilities = NDArray[np.float64]


def create_session(path: str | Path, *, threads: int) -> ort.InferenceSession:
    """The serving session: CPU, ``threads`` intra-op threads (0: ONNX Runtime's default), one
    inter-op thread, sequential execution, every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)  # 0: ONNX Runtime's default (physical cores)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxPredictor(BatchPredictor):
    """An ONNX Runtime model ready to answer, as ``ml.engine.serve.torch_predictor.Predictor`` does.

    Build with ``OnnxPredictor.from_cache(onnx_path)`` (reads and checks the sidecar) or from a
    path and a metadata dict (``classes``, ``preprocessing``, ``temperature``, ``thresholds``).
    ``threads`` is ONNX Runtime's intra-op thread count (0: its default).
    """

    def __init__(
        self, onnx_path: str | Path, metadata: Mapping[str, Any], *, threads: int = 0
    ) -> None:
        self.path = Path(onnx_path)
        self.variant = variant_of(self.path)
        self.classes = classes_from_dicts(metadata["classes"])
        self.codes = [c.code for c in self.classes]
        self.temperature = float(metadata.get("temperature") or 1.0) or 1.0
        self.thresholds = with_defaults(metadata.get("thresholds"))
        self.preprocessing = dict(metadata["preprocessing"])
        self.session = create_session(self.path, threads=threads)

    @classmethod
    def from_cache(
        cls, onnx_path: str | Path, *, threads: int = 0, verify: bool = True
    ) -> OnnxPredictor:
        """The model at ``onnx_path`` with the metadata of its sidecar; with ``verify``, the
        file's SHA-256 must be the one the sidecar recorded for it."""
        sidecar = read_sidecar(onnx_path)
        variant = variant_of(onnx_path)
        if verify:
            recorded = (sidecar.get(variant) or {}).get("sha256")
            if recorded is None:
                raise OnnxModelMismatchError(f"the sidecar records no {variant} model")
            actual = sha256_file(onnx_path)
            if actual != recorded:
                raise OnnxModelMismatchError(
                    f"{Path(onnx_path).name} has SHA-256 {actual[:12]}…, its sidecar records "
                    f"{recorded[:12]}…; refusing to load it"
                )
        return cls(onnx_path, sidecar, threads=threads)

    def preprocess(self, images: Sequence[Image.Image]) -> Batch:
        """PIL images -> float32[N, 3, S, S]."""
        return np.stack([preprocess_image(image, self.preprocessing) for image in images])

    def logits(self, batch: Batch) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """float32[N, 3, S, S] -> (malignant logit float32[N], class logits float32[N, C])."""
        malignant, classes = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return malignant, classes

    def probabilities(self, batch: Batch) -> tuple[Probabilities, Probabilities]:
        """Temperature-scaled (malignant float64[N], classes float64[N, C]) probabilities."""
        malignant, classes = self.logits(batch)
        t = np.float32(self.temperature)  # divided in float32, as the torch backend divides
        return sigmoid(malignant / t), softmax(classes / t)

    def batch_probabilities(
        self, images: Sequence[Image.Image]
    ) -> tuple[list[float], list[list[float]]]:
        malignant, probabilities = self.probabilities(self.preprocess(images))
        return malignant.tolist(), probabilities.tolist()


# One active model per worker: loading another drops the previous one. Loads take the lock, so
# two threads never load a model twice; ``_active`` is the key of the one cached (for tests).
_load_lock = threading.Lock()
_active: tuple[str, int] | None = None


@functools.lru_cache(maxsize=1)
def _cached_predictor(resolved_path: str, threads: int) -> OnnxPredictor:
    return OnnxPredictor.from_cache(resolved_path, threads=threads)


def get_onnx_predictor(onnx_path: str | Path, *, threads: int = 0) -> OnnxPredictor:
    """The process-wide OnnxPredictor for this file: loaded (and verified) once, then reused."""
    global _active
    key = (str(Path(onnx_path).resolve()), int(threads))
    with _load_lock:
        predictor = _cached_predictor(*key)
        _active = key
        return predictor


def cached_onnx_models() -> list[tuple[str, int]]:
    """The (resolved path, threads) of the model this process keeps: one at most."""
    with _load_lock:
        return [_active] if _active is not None and _cached_predictor.cache_info().currsize else []


def clear_onnx_cache() -> None:
    """Drop the cached model: the next ``get_onnx_predictor`` loads (and verifies) it again."""
    global _active
    with _load_lock:
        _cached_predictor.cache_clear()
        _active = None
