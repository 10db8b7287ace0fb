"""The torch side of the data: decoding images and the Dataset the DataLoaders read. No Django.

A sample whose image fails to decode never stops a run: ``SkinLesionDataset`` returns ``None``
for it and ``collate_skipping_failures`` drops it from the batch. Reading the data sets
themselves (CSV layouts, label mapping) is torch-free and lives in ``readers`` and ``labels``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, default_collate

from ml.engine.data.readers import Problem, Sample
from ml.engine.model.taxonomy import DiagnosisClass

logger = logging.getLogger(__name__)

# One decoded sample: (image float[3, S, S], class index, malignant target 0.0/1.0).
Item = tuple[torch.Tensor, int, float]
# One batch: (images float[B, 3, S, S], labels int64[B], malignant float32[B]).
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def decode_rgb(path: str | Path, *, draft_size: int | None = None) -> Image.Image:
    """Decode an image file as RGB with its EXIF orientation applied (as uploads are).

    ``draft_size`` lets the JPEG decoder scale down by a power of two while keeping both sides
    at least that large: large archive images decode several times faster. Training only; the
    eval preset decodes at full size, as serving does.
    """
    with Image.open(path) as image:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        return ImageOps.exif_transpose(image).convert("RGB")


class SkinLesionDataset(Dataset[Item | None]):
    """Samples -> (image: float[3, S, S], class index: int, malignant target: float 0/1).

    ``malignant`` is 1.0 when the class's category is malignant. An image that fails to decode
    yields ``None`` (logged, and remembered in ``failures`` in this process) instead of raising:
    use ``collate_skipping_failures`` so the batch goes on without it.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[DiagnosisClass],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        draft_size: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform
        self.draft_size = draft_size
        self.malignant = [1.0 if c.category == "malignant" else 0.0 for c in self.classes]
        self.failures: list[Problem] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item | None:
        sample = self.samples[index]
        try:
            image = decode_rgb(sample.path, draft_size=self.draft_size)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a run
            problem = Problem(str(sample.path), f"{type(exc).__name__}: {exc}")
            self.failures.append(problem)
            logger.warning("skipping unreadable image %s (%s)", problem.item, problem.reason)
            return None
        return self.transform(image), sample.label, self.malignant[sample.label]


def collate_skipping_failures(batch: Sequence[Item | None]) -> Batch | None:
    """``default_collate`` without the ``None`` items of unreadable images.

    Returns (images: float[B, 3, S, S], labels: int64[B], malignant: float32[B]), or ``None``
    when every image of the batch failed (the loops skip such a batch).
    """
    items = [item for item in batch if item is not None]
    if not items:
        return None
    collated: Any = default_collate(items)
    images, labels, malignant = collated
    return images, labels, malignant.float()
