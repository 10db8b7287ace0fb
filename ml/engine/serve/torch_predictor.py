"""The PyTorch serving backend: a Predictor loaded once per worker process.

No Django here. ``get_predictor`` keeps one Predictor per process, keyed on (weights file,
SHA-256, device); the file's hash is checked before a single byte of it is unpickled, so a
worker refuses weights that differ from what the registry recorded. Outputs are read by
``serve.base``, as the ONNX Runtime backend's are.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from ml.engine.files import sha256_file
from ml.engine.model.checkpoint import Checkpoint, load_checkpoint
from ml.engine.model.transforms import eval_transform
from ml.engine.serve import gradcam
from ml.engine.serve.base import BatchPredictor, PredictionResult, interpret

__all__ = [
    "PredictionResult",
    "Predictor",
    "WeightsMismatchError",
    "clear_cache",
    "get_predictor",
    "interpret",
    "pick_device",
]


class WeightsMismatchError(RuntimeError):
    """The weights file on disk is not the one the registry recorded."""


def pick_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


class Predictor(BatchPredictor):
    """A loaded model ready to answer. Build with ``Predictor.from_file`` or ``get_predictor``."""

    # On the CPU a micro-batch runs through the model this many images at a time: the same
    # images/s as larger passes, and a worker's peak RSS stays bounded (batches of 8 grew a
    # ResNet50 worker past 1 GB through allocator fragmentation).
    cpu_chunk = 4

    def __init__(self, checkpoint: Checkpoint, *, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.classes = checkpoint.classes
        self.codes = [c.code for c in checkpoint.classes]
        self.temperature = float(checkpoint.temperature) or 1.0
        self.thresholds = dict(checkpoint.thresholds)
        self.preprocessing = dict(checkpoint.preprocessing)
        self.transform = eval_transform(self.preprocessing)
        # channels_last everywhere; on CUDA also fp16 autocast (AMP) and cuDNN's algorithm search
        # (inputs of one size, so the search runs once).
        model = checkpoint.build_model(take_weights=True)
        # torch's overloads of Module.to omit (device, memory_format) together; torch takes them.
        model = model.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.amp = self.device.type == "cuda"
        if self.amp:
            torch.backends.cudnn.benchmark = True
        self.model = model.eval()
        self._lock = threading.Lock()

    @classmethod
    def from_file(
        cls, path: str | Path, *, expected_sha256: str | None, device: torch.device | str = "cpu"
    ) -> Predictor:
        if expected_sha256 is not None:
            actual = sha256_file(path)
            if actual != expected_sha256:
                raise WeightsMismatchError(
                    f"weights file {Path(path).name} has SHA-256 {actual[:12]}…, the registry "
                    f"expects {expected_sha256[:12]}…; refusing to load it"
                )
        return cls(load_checkpoint(path), device=device)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> float[N, 3, S, S] on the predictor's device."""
        batch = torch.stack([self.transform(image.convert("RGB")) for image in images])
        return batch.to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._lock, torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            binary_logit, class_logits = self.model(batch)
        return binary_logit.float(), class_logits.float()

    def batch_probabilities(
        self, images: Sequence[Image.Image]
    ) -> tuple[list[float], list[list[float]]]:
        step = self.cpu_chunk if self.device.type == "cpu" else len(images)
        parts = [
            self.logits(self.preprocess(images[i : i + step])) for i in range(0, len(images), step)
        ]
        binary_logit = torch.cat([binary for binary, _ in parts])
        class_logits = torch.cat([classes for _, classes in parts])
        malignant = torch.sigmoid(binary_logit / self.temperature).cpu()
        probabilities = torch.softmax(class_logits / self.temperature, dim=1).cpu()
        return malignant.tolist(), probabilities.tolist()

    def grad_cam(self, image: Image.Image) -> NDArray[np.float32]:
        """Grad-CAM of the malignant head for one image (see ``serve.gradcam.grad_cam``):
        float32[S, S] in [0, 1] over the model's input crop."""
        return gradcam.grad_cam(self.model, self.preprocess([image]), lock=self._lock)


load_count = 0  # how many times this process built a Predictor (tests assert it stays at one)
_load_lock = threading.Lock()  # one load at a time: two threads never load the same weights


@functools.lru_cache(maxsize=1)  # one active model per worker: a new one drops the previous
def _cached_predictor(resolved_path: str, sha256: str, device: str) -> Predictor:
    global load_count
    predictor = Predictor.from_file(
        resolved_path, expected_sha256=sha256, device=pick_device(device)
    )
    load_count += 1
    return predictor


def get_predictor(path: str | Path, *, sha256: str, device: str = "auto") -> Predictor:
    """The process-wide Predictor for these weights: loaded on first use, then reused."""
    with _load_lock:
        return _cached_predictor(str(Path(path).resolve()), sha256, device)


def clear_cache() -> None:
    with _load_lock:
        _cached_predictor.cache_clear()
