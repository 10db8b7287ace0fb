"""The run's data, read once before any model exists: the samples in the model's class list,
the unreadable images left out, and the lesion-grouped splits (indices into the samples).
Its fingerprint ties a saved training state to exactly these images and labels.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ml.engine.data.checks import check_images, limit_per_class
from ml.engine.data.readers import Problem, Sample, SampleSet, read_samples
from ml.engine.data.splits import Splits, make_splits
from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.train.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The run's images: what was read, what was unreadable, and the splits (indices)."""

    sample_set: SampleSet
    unreadable: list[Problem]
    splits: Splits

    @property
    def samples(self) -> list[Sample]:
        return self.sample_set.samples

    @property
    def classes(self) -> list[DiagnosisClass]:
        return self.sample_set.classes

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(f"{sample.path}\t{sample.label}\t{sample.lesion_id}\n".encode())
        return digest.hexdigest()

    def subset(self, indices: Iterable[int]) -> list[Sample]:
        return [self.samples[i] for i in indices]


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read, check and split the data set named by the config (no model involved)."""
    sample_set = read_samples(
        config.data,
        config.format,
        classes=config.class_list(),
        csv_path=config.csv_path,
        metadata_path=config.metadata_path,
    )
    samples = sample_set.samples
    if config.max_per_class:
        samples = limit_per_class(samples, config.max_per_class, seed=config.seed)
    unreadable: list[Problem] = []
    if config.check_images:
        samples, unreadable = check_images(samples, workers=max(1, config.num_workers))
    if not samples:
        raise ValueError(f"no usable images in {config.data} ({config.format})")
    sample_set.samples = samples
    logger.info(
        "%s (%s): %d images used, %d rows skipped, %d images unreadable; classes %s",
        config.data,
        config.format,
        len(samples),
        len(sample_set.skipped),
        len(unreadable),
        sample_set.class_counts(),
    )
    splits = make_splits(
        samples,
        folds=config.folds,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    return PreparedData(sample_set, unreadable, splits)
