"""Heatmap rendering: a Grad-CAM map placed back onto the uploaded image. No Django here."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image

_LUT = (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def crop_box(width: int, height: int, preprocessing: dict) -> tuple[int, int, int, int]:
    """The region of the original image that the eval preset's centre crop sees."""
    scale = min(width, height) / preprocessing["resize_size"]
    side = preprocessing["image_size"] * scale
    left = (width - side) / 2
    top = (height - side) / 2
    return round(left), round(top), round(left + side), round(top + side)


def render_overlay(
    cam: np.ndarray, *, width: int, height: int, preprocessing: dict, max_alpha: float = 0.6
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
