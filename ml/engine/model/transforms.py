"""Image preprocessing. One eval preset, shared by evaluation and serving, so they cannot drift.

No Django here. The preset is described by the model's ``preprocessing`` dict (stored in its
checkpoint and ModelVersion), so a worker preprocesses exactly as the model was trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import InterpolationMode  # type: ignore[import-untyped]
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_preprocessing(image_size: int = 224) -> dict[str, Any]:
    return {
        "image_size": image_size,
        "resize_size": round(image_size * 256 / 224),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def eval_transform(preprocessing: Mapping[str, Any]) -> T.Compose:
    """PIL RGB image -> float[3, S, S] normalised tensor (resize shorter side, centre crop)."""
    interpolation = InterpolationMode(preprocessing.get("interpolation", "bilinear"))
    return T.Compose(
        [
            T.ToImage(),
            T.Resize(preprocessing["resize_size"], interpolation=interpolation, antialias=True),
            T.CenterCrop(preprocessing["image_size"]),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=preprocessing["mean"], std=preprocessing["std"]),
        ]
    )


@dataclass(frozen=True)
class Augmentation:
    """How strongly training images are varied (the defaults are the training recipe's)."""

    scale: tuple[float, float] = (0.4, 1.0)
    rotation_degrees: float = 180.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0
    sharpness_factor: float = 2.0
    sharpness_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    blur_p: float = 0.2


def train_transform(
    preprocessing: Mapping[str, Any], augmentation: Augmentation | None = None
) -> T.Compose:
    """PIL RGB image -> float[3, S, S] normalised tensor, randomly augmented (training only).

    Random resized crop, horizontal and vertical flips, rotation, colour jitter, sharpness and
    Gaussian blur, then the same scaling and normalisation as ``eval_transform``. Colour is kept:
    it carries diagnostic information (blue-white veil, vascular red), which is also why hue is
    not jittered by default (and hue jitter is the costliest step). Dermoscopy has no canonical
    orientation, so any rotation is plausible; the crop is taken at S·√2 and rotated before the
    centre S×S is kept, so a rotated image never shows filled corners. Given a PIL image, every
    augmentation runs in PIL (faster than on tensors on a CPU) and the tensor is made last.
    """
    aug = augmentation or Augmentation()
    interpolation = InterpolationMode(preprocessing.get("interpolation", "bilinear"))
    size = preprocessing["image_size"]
    # The circle inscribed in a square of side S·√2 covers the S×S centre at any angle.
    rotated_size = math.ceil(size * math.sqrt(2))
    kernel = max(3, (size // 32) | 1)  # odd, grows with the image so blur means the same
    return T.Compose(
        [
            T.RandomResizedCrop(
                rotated_size, scale=aug.scale, interpolation=interpolation, antialias=True
            ),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.RandomRotation(aug.rotation_degrees, interpolation=interpolation),
            T.CenterCrop(size),
            T.ColorJitter(
                brightness=aug.brightness,
                contrast=aug.contrast,
                saturation=aug.saturation,
                hue=aug.hue,
            ),
            T.RandomAdjustSharpness(aug.sharpness_factor, p=aug.sharpness_p),
            T.RandomApply([T.GaussianBlur(kernel, sigma=aug.blur_sigma)], p=aug.blur_p),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=preprocessing["mean"], std=preprocessing["std"]),
        ]
    )
