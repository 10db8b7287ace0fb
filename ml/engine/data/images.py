"""Opening images for the model (PIL only: no torch, so every backend can use it).

A stored image can be a 4000×3000 phone photo while the model looks at a 224×224 crop of it
resized to 256 on its shorter side. For JPEGs, Pillow's draft mode lets libjpeg decode straight
to a 1/2, 1/4 or 1/8 scale (its DCT scaling), never below what the resize needs, which costs a
fraction of a full decode; the eval preset's antialiased resize then does the rest as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, BinaryIO

from PIL import Image

# Draft only when the image is at least this many times the resize target on its shorter side:
# below that, libjpeg could not scale by even 1/2 without going under the target.
DRAFT_MIN_RATIO = 2.0


def draft_size(width: int, height: int, resize_size: int) -> tuple[int, int] | None:
    """The size to ask libjpeg for, keeping the shorter side at least ``resize_size``."""
    short = min(width, height)
    if short < DRAFT_MIN_RATIO * resize_size:
        return None
    scale = resize_size / short
    return math.ceil(width * scale), math.ceil(height * scale)


def open_for_model(
    source: str | BinaryIO, preprocessing: Mapping[str, Any], *, draft: bool = True
) -> Image.Image:
    """An RGB PIL image ready for the eval preset; JPEGs are decoded in draft mode when large."""
    with Image.open(source) as image:
        if draft and image.format == "JPEG":
            size = draft_size(image.width, image.height, int(preprocessing["resize_size"]))
            if size is not None:
                image.draft("RGB", size)
        return image.convert("RGB")
