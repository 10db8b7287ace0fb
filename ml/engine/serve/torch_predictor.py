"""Serving: a Predictor loaded once per worker process, and how its outputs are read.

No Django here. ``get_predictor`` caches one Predictor per (weights file, SHA-256, device) in the
process; the file's hash is checked before a single byte of it is unpickled, so a worker refuses
weights that differ from what the registry recorded.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.engine.model.checkpoint import Checkpoint, load_checkpoint, sha256_file
from ml.engine.model.transforms import eval_transform
from ml.engine.serve.base import BatchPredictor, PredictionResult, interpret

__all__ = ["PredictionResult", "Predictor", "WeightsMismatchError", "get_predictor", "interpret"]


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
        model = model.to(self.device, memory_format=torch.channels_last)
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

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> float[N, 3, S, S] on the predictor's device."""
        batch = torch.stack([self.transform(image.convert("RGB")) for image in images])
        return batch.to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._lock, torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            binary_logit, class_logits = self.model(batch)
        return binary_logit.float(), class_logits.float()

    def batch_probabilities(self, images: list[Image.Image]) -> tuple[list, list]:
        step = self.cpu_chunk if self.device.type == "cpu" else len(images)
        parts = [
            self.logits(self.preprocess(images[i : i + step])) for i in range(0, len(images), step)
        ]
        binary_logit = torch.cat([binary for binary, _ in parts])
        class_logits = torch.cat([classes for _, classes in parts])
        malignant = torch.sigmoid(binary_logit / self.temperature).cpu()
        probabilities = torch.softmax(class_logits / self.temperature, dim=1).cpu()
        return malignant.tolist(), probabilities.tolist()

    def grad_cam(self, image: Image.Image) -> np.ndarray:
        """Grad-CAM of the malignant head over the trunk's last stage (``layer4``).

        Returns float32[S, S] in [0, 1], in the coordinates of the model's input (the centre crop
        of the eval preset): where the features that raised the malignant logit were.
        """
        batch = self.preprocess([image])
        captured: dict[str, torch.Tensor] = {}

        def keep(_module, _inputs, output):
            output.retain_grad()
            captured["activations"] = output

        layer = self.model.trunk.layer4
        handle = layer.register_forward_hook(keep)
        try:
            with self._lock, torch.enable_grad():
                malignant_logit, _ = self.model(batch)
                self.model.zero_grad(set_to_none=True)
                malignant_logit.sum().backward()
                activations = captured["activations"]
                weights = activations.grad.mean(dim=(2, 3), keepdim=True)  # [1, C, 1, 1]
                cam = torch.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
                self.model.zero_grad(set_to_none=True)
        finally:
            handle.remove()
        size = batch.shape[-1]
        cam = torch.nn.functional.interpolate(cam, size=(size, size), mode="bilinear")[0, 0]
        peak = float(cam.max())
        cam = cam / peak if peak > 0 else cam
        return cam.cpu().numpy().astype(np.float32)


_cache: dict[tuple[str, str, str], Predictor] = {}
_cache_lock = threading.Lock()
load_count = 0  # how many times this process built a Predictor (tests assert it stays at one)


def get_predictor(path: str | Path, *, sha256: str, device: str = "auto") -> Predictor:
    """The process-wide Predictor for these weights: loaded on first use, then reused."""
    global load_count
    key = (str(Path(path).resolve()), sha256, device)
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is None:
            predictor = Predictor.from_file(
                path, expected_sha256=sha256, device=pick_device(device)
            )
            _cache.clear()  # one active model per worker: drop the previous one's memory
            _cache[key] = predictor
            load_count += 1
        return predictor


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
