"""Class imbalance: sampling weights for the training sampler, or weights for the loss.

By default (``imbalance="sampler"``) each training epoch draws images with probability inversely
proportional to their class's frequency (``WeightedRandomSampler``, with replacement), so every
class is seen about equally often: balanced accuracy, the selection metric, weighs every class
equally. ``imbalance="loss"`` instead weights the cross-entropy by inverse class frequency (and
the malignant BCE by negatives/positives); ``"none"`` does neither (the sampler then shuffles).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from ml.engine.eval.metrics import malignant_targets
from ml.engine.model.taxonomy import DiagnosisClass

IMBALANCE_MODES = ("sampler", "loss", "none")


def loss_weights(
    labels: Sequence[int], classes: Sequence[DiagnosisClass], imbalance: str
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(cross-entropy class weights float[C], BCE positive weight float[]); both None unless
    ``imbalance == "loss"``."""
    if imbalance not in IMBALANCE_MODES:
        raise ValueError("imbalance must be sampler, loss or none")
    if imbalance != "loss":
        return None, None
    counts = np.bincount(np.asarray(labels), minlength=len(classes)).astype(np.float64)
    present = counts > 0
    # Inverse frequency, scaled so that a uniform data set gets weight 1 everywhere.
    weights = np.zeros(len(classes))
    weights[present] = counts.sum() / (present.sum() * counts[present])
    class_weights = torch.tensor(weights, dtype=torch.float32)
    malignant = malignant_targets(labels, classes)
    positives, negatives = malignant.sum(), len(malignant) - malignant.sum()
    pos_weight = None
    if positives and negatives:
        pos_weight = torch.tensor(negatives / positives, dtype=torch.float32)
    return class_weights, pos_weight


def make_sampler(
    labels: Sequence[int], num_classes: int, imbalance: str, generator: torch.Generator
) -> WeightedRandomSampler:
    """Draws ``len(labels)`` indices per epoch: class-balanced, with replacement, for
    ``imbalance="sampler"``; otherwise a plain shuffle."""
    y = np.asarray(labels)
    # The sampler makes a float64 tensor of these; a list of Python floats keeps every digit.
    if imbalance == "sampler":
        counts = np.bincount(y, minlength=num_classes)
        weights: list[float] = (1.0 / counts[y]).tolist()
    else:
        weights = [1.0] * len(y)
    # Equal weights with replacement would repeat images; without replacement it is a shuffle.
    return WeightedRandomSampler(
        weights,
        num_samples=len(y),
        replacement=imbalance == "sampler",
        generator=generator,
    )
