"""Image preprocessing. One eval preset, shared by evaluation and serving, so they cannot drift.

No Django here. The preset is described by the model's ``preprocessing`` dict (stored in its
checkpoint and ModelVersion), so a worker preprocesses exactly as the model was trained.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_preprocessing(image_size: int = 224) -> dict:
    return {
        "image_size": image_size,
        "resize_size": round(image_size * 256 / 224),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def eval_transform(preprocessing: dict) -> T.Compose:
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


def load_rgb(path) -> Image.Image:
    """Open a stored (already validated and normalised) image as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")
