"""The eval preset in NumPy + PIL, equal to torchvision's, so ONNX serving needs no torch.

``preprocess_image`` resizes the shorter side with antialiasing, centre crops, scales to [0, 1]
and normalises, as ``model.transforms.eval_transform`` does. For bilinear and bicubic presets it
reproduces torch's uint8 resize exactly (integer weights computed as ATen computes them); another
interpolation falls back to torchvision itself (and so imports torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

Pixels = NDArray[np.uint8]  # uint8[H, W, 3]
Floats = NDArray[np.float64]
Indices = NDArray[np.int64]
Weights = NDArray[np.int32]


def _bilinear(x: Floats) -> Floats:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: Floats) -> Floats:
    # Keys' cubic with a = -0.5 (as PIL and torch's antialiased bicubic), torch's operation order.
    a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


# interpolation -> (filter, interp_size): what torch's antialiased uint8 resize uses.
_FILTERS: dict[str, tuple[Callable[[Floats], Floats], int]] = {
    "bilinear": (_bilinear, 2),
    "bicubic": (_bicubic, 4),
}


def _precision(weights_max: float) -> int:
    """The most fractional bits the largest weight allows in an int16 (at most 22)."""
    precision = 0
    while precision < 22:
        if int(0.5 + weights_max * (1 << (precision + 1))) >= (1 << 15):
            break
        precision += 1
    return precision


def _resize_weights(
    in_size: int, out_size: int, interpolation: str
) -> tuple[Indices, Weights, int]:
    """Torch's antialiased uint8 resampling along one axis, as integers.

    Returns (indices int64[out, K], weights int32[out, K], precision): output i is
    ``clip((2**(precision-1) + Σ_k weights[i, k]·input[indices[i, k]]) >> precision, 0, 255)``.
    Mirrors ``_compute_index_ranges_int16_weights`` of ATen's UpSampleKernel.cpp step by step in
    float64 (the same operations in the same order), so the integers, and so the pixels, are
    torch's exactly.
    """
    filter_fn, interp_size = _FILTERS[interpolation]
    scale = in_size / out_size
    support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    max_size = int(math.ceil(support)) * 2 + 1
    center = scale * (np.arange(out_size, dtype=np.int64) + 0.5)
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xsize = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    xsize = np.clip(xsize, 0, max_size)
    j = np.arange(max_size, dtype=np.int64)
    inside = j[None, :] < xsize[:, None]
    weights = filter_fn(((j[None, :] + xmin[:, None]) - center[:, None] + 0.5) * invscale)
    weights = np.where(inside, weights, 0.0)
    total = np.cumsum(weights, axis=1)[:, -1]  # sequential sums, as the C loop adds
    weights = weights / np.where(total == 0.0, 1.0, total)[:, None]  # a zero total: left as is
    precision = _precision(float(weights.max()))
    scaled = weights * (1 << precision)
    integers = np.where(scaled < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled))
    indices = np.where(inside, xmin[:, None] + j[None, :], xmin[:, None])
    return indices, integers.astype(np.int32), precision


def _resample(
    pixels: Pixels, axis: int, indices: Indices, weights: Weights, precision: int
) -> Pixels:
    """uint8[H, W, 3] resampled along ``axis`` at the rows of ``indices``/``weights``."""
    shape = [1, 1, 1]
    shape[axis] = len(indices)
    acc = np.full(
        [len(indices) if a == axis else s for a, s in enumerate(pixels.shape)],
        1 << (precision - 1),
        dtype=np.int32,
    )
    for k in range(indices.shape[1]):
        column = weights[:, k]
        if not column.any():
            continue
        taken = np.take(pixels, indices[:, k], axis=axis).astype(np.int32)
        acc += taken * column.reshape(shape)
    resampled: Pixels = np.clip(acc >> precision, 0, 255).astype(np.uint8)
    return resampled


def _crop_window(length: int, crop: int) -> tuple[int, int]:
    """torchvision's centre crop along one axis: (first position, crop) in the resized image;
    a negative first position means zero padding before the image (crop larger than it)."""
    if crop > length:
        return -((crop - length) // 2), crop
    return int(round((length - crop) / 2.0)), crop


def _resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``size`` (long side truncated)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def _resize_visible(
    pixels: Pixels,
    out_size: tuple[int, int],
    valid_rows: Indices,
    valid_columns: Indices,
    interpolation: str,
) -> Pixels:
    """The rows and columns of ``pixels`` resized to ``out_size`` that the crop keeps: only
    those are computed, horizontally first, as torch resizes."""
    in_h, in_w = pixels.shape[:2]
    out_h, out_w = out_size
    if out_w != in_w:
        indices, weights, precision = _resize_weights(in_w, out_w, interpolation)
        if out_h == in_h:
            return _resample(
                pixels[valid_rows], 1, indices[valid_columns], weights[valid_columns], precision
            )
        v_indices, v_weights, v_precision = _resize_weights(in_h, out_h, interpolation)
        v_indices, v_weights = v_indices[valid_rows], v_weights[valid_rows]
        first, last = int(v_indices.min()), int(v_indices.max()) + 1
        pixels = _resample(
            pixels[first:last], 1, indices[valid_columns], weights[valid_columns], precision
        )
        return _resample(pixels, 0, v_indices - first, v_weights, v_precision)
    if out_h != in_h:
        indices, weights, precision = _resize_weights(in_h, out_h, interpolation)
        return _resample(
            pixels[:, valid_columns], 0, indices[valid_rows], weights[valid_rows], precision
        )
    return pixels[valid_rows][:, valid_columns]


def preprocess_image(image: Image.Image, preprocessing: Mapping[str, Any]) -> NDArray[np.float32]:
    """PIL image -> float32[3, S, S]: the eval preset of ``model.transforms.eval_transform`` in
    NumPy (resize the shorter side with antialiasing, centre crop, scale to [0, 1], normalise).

    Bilinear and bicubic presets reproduce torch's uint8 resize exactly (the path torchvision
    takes on x86 with AVX2 and on ARM); only the output window of the crop is computed. Another
    interpolation falls back to torchvision itself (and so imports torch).
    """
    interpolation = preprocessing.get("interpolation", "bilinear")
    rgb = image.convert("RGB")
    if interpolation not in _FILTERS:
        from ml.engine.model.transforms import eval_transform

        fallback: NDArray[np.float32] = eval_transform(preprocessing)(rgb).numpy()
        return fallback
    pixels = np.asarray(rgb, dtype=np.uint8)
    in_h, in_w = pixels.shape[:2]
    out_h, out_w = _resized_size(in_h, in_w, int(preprocessing["resize_size"]))
    crop = int(preprocessing["image_size"])
    top, _ = _crop_window(out_h, crop)
    left, _ = _crop_window(out_w, crop)
    rows = np.arange(top, top + crop)
    columns = np.arange(left, left + crop)
    valid_rows = rows[(rows >= 0) & (rows < out_h)]
    valid_columns = columns[(columns >= 0) & (columns < out_w)]
    pixels = _resize_visible(pixels, (out_h, out_w), valid_rows, valid_columns, interpolation)

    window = np.zeros((crop, crop, 3), dtype=np.uint8)  # zero padding where the crop is larger
    row_offset, column_offset = int(valid_rows[0] - top), int(valid_columns[0] - left)
    window[
        row_offset : row_offset + pixels.shape[0], column_offset : column_offset + pixels.shape[1]
    ] = pixels
    scaled = window.astype(np.float32) / np.float32(255)
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file as RGB with its EXIF orientation applied (as ``decode_rgb``)."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def as_image(item: Image.Image | str | Path) -> Image.Image:
    """A PIL image as it is; an image path decoded (``open_rgb``)."""
    return item if isinstance(item, Image.Image) else open_rgb(item)
