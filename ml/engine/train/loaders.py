"""The DataLoaders of a run. Decoding and augmentation run in worker processes kept alive across
epochs; a batch whose every image failed to decode comes out as ``None`` (the loops skip it).

Training draws through a sampler seeded by the fold's generator (``weights.make_sampler``) and
augments with ``model.transforms.train_transform``; validation and test use the eval preset,
the one serving uses, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from ml.engine.data.datasets import Item, SkinLesionDataset, collate_skipping_failures
from ml.engine.data.readers import Sample
from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.model.transforms import default_preprocessing, eval_transform, train_transform
from ml.engine.train.config import TrainConfig
from ml.engine.train.weights import make_sampler

Loader = DataLoader[Item | None]


def _loader(
    dataset: SkinLesionDataset,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
    sampler: Sampler[int] | None = None,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> Loader:
    options: dict[str, Any] = {}
    if num_workers > 0:
        # Decoding and augmentation run in worker processes, kept alive across epochs.
        options = {"persistent_workers": True, "prefetch_factor": 4}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last,
        collate_fn=collate_skipping_failures,
        generator=generator,
        **options,
    )


def make_loaders(
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    classes: Sequence[DiagnosisClass],
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Loader, Loader]:
    """(train loader, validation loader). Batches are (images float[B, 3, S, S], labels
    int64[B], malignant float32[B]), or None when every image of a batch failed to decode.

    Training draws ``len(train_samples)`` images per epoch through a sampler seeded by
    ``generator`` (class-balanced with ``imbalance="sampler"``, else a shuffle) and augments
    them; validation uses the eval preset, in order.
    """
    preprocessing = default_preprocessing(config.image_size)
    generator = generator or torch.Generator().manual_seed(config.seed)
    train_set = SkinLesionDataset(
        train_samples,
        classes,
        train_transform(preprocessing),
        # Large JPEGs decode at a reduced scale that still leaves room for the crop.
        draft_size=2 * config.image_size,
    )
    labels = [s.label for s in train_samples]
    sampler = make_sampler(labels, len(classes), config.imbalance, generator)
    val_set = SkinLesionDataset(val_samples, classes, eval_transform(preprocessing))
    train_loader = _loader(
        train_set,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        device=device,
        sampler=sampler,
        # A last batch of one image would break batch norm; an epoch is a sample anyway.
        drop_last=len(labels) > config.batch_size,
        generator=generator,
    )
    val_loader = _loader(
        val_set, batch_size=config.eval_batch, num_workers=config.num_workers, device=device
    )
    return train_loader, val_loader


def eval_loader(
    samples: Sequence[Sample],
    classes: Sequence[DiagnosisClass],
    preprocessing: dict[str, Any],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> Loader:
    """A loader of ``samples`` through the model's eval preset (the one serving uses)."""
    dataset = SkinLesionDataset(samples, classes, eval_transform(preprocessing))
    return _loader(dataset, batch_size=batch_size, num_workers=num_workers, device=device)
