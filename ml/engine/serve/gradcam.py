"""Grad-CAM heatmaps: where the model looked, computed and placed back onto the uploaded image.

No Django here. ``grad_cam`` runs on a SkinSenseNet (the torch backend's ``Predictor.grad_cam``
calls it); ``render_overlay`` and ``crop_box`` are NumPy + PIL only. torch is imported inside
``grad_cam``, so a process that only renders overlays does not load it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from numpy.typing import NDArray
from PIL import Image

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ml.engine.model.network import SkinSenseNet

_LUT = (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def grad_cam(
    model: SkinSenseNet,
    batch: torch.Tensor,
    *,
    lock: contextlib.AbstractContextManager[Any] | None = None,
) -> NDArray[np.float32]:
    """Grad-CAM of the malignant head over the trunk's last stage (``layer4``) for a batch of
    one preprocessed image (float[1, 3, S, S], on the model's device).

    Returns float32[S, S] in [0, 1], in the coordinates of the model's input (the centre crop
    of the eval preset): where the features that raised the malignant logit were. The model's
    gradients are cleared afterwards; ``lock`` (the predictor's) is held while it runs.
    """
    import torch

    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        output.retain_grad()
        captured["activations"] = output

    handle = model.trunk.get_submodule("layer4").register_forward_hook(keep)
    try:
        with lock or contextlib.nullcontext(), torch.enable_grad():
            malignant_logit, _ = model(batch)
            model.zero_grad(set_to_none=True)
            malignant_logit.sum().backward()
            activations = captured["activations"]
            if activations.grad is None:
                raise RuntimeError("layer4 received no gradient from the malignant head")
            weights = activations.grad.mean(dim=(2, 3), keepdim=True)  # [1, C, 1, 1]
            cam = torch.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
            model.zero_grad(set_to_none=True)
    finally:
        handle.remove()
    size = batch.shape[-1]
    cam = torch.nn.functional.interpolate(cam, size=(size, size), mode="bilinear")[0, 0]
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    return cam.cpu().numpy().astype(np.float32)


def crop_box(
    width: int, height: int, preprocessing: Mapping[str, Any]
) -> tuple[int, int, int, int]:
    """The region of the original image that the eval preset's centre crop sees."""
    scale = min(width, height) / preprocessing["resize_size"]
    side = preprocessing["image_size"] * scale
    left = (width - side) / 2
    top = (height - side) / 2
    return round(left), round(top), round(left + side), round(top + side)


def render_overlay(
    cam: NDArray[np.floating[Any]],
    *,
    width: int,
    height: int,
    preprocessing: Mapping[str, Any],
    max_alpha: float = 0.6,
) -> bytes:
    """PNG (RGBA, width×height) colouring where the model looked; transparent elsewhere.

    ``cam`` is float[S, S] in [0, 1] over the model's input crop.
    """
    left, top, right, bottom = crop_box(width, height, preprocessing)
    levels = (np.clip(cam, 0.0, 1.0) * 255).astype(np.uint8)
    rgba = np.zeros((*levels.shape, 4), dtype=np.uint8)
    rgba[..., :3] = _LUT[levels]
    rgba[..., 3] = (np.sqrt(cam.clip(0, 1)) * max_alpha * 255).astype(np.uint8)
    patch = Image.fromarray(rgba, mode="RGBA").resize(
        (max(right - left, 1), max(bottom - top, 1)), Image.Resampling.BILINEAR
    )
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    canvas.paste(patch, (left, top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
