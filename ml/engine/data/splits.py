"""Seeded, lesion-grouped, class-stratified splits. No Django here.

First a held-out test split, never used for model selection; then K folds over the rest. Images
of one lesion, and every lesion of one patient where patients are known, always stay together:
they are one *group*, and a group lies in exactly one fold and on one side of the test split.
Both steps are scikit-learn's ``StratifiedGroupKFold`` with a fixed seed, so the same samples in
the same order with the same seed give the same split on any machine.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.model_selection import StratifiedGroupKFold

from ml.engine.data.readers import Sample

# Positions into a sample list (or into a part of it).
Indices = NDArray[np.intp]

logger = logging.getLogger(__name__)


@dataclass
class Splits:
    """Indices into the sample list: ``test``, and (train, validation) for each fold."""

    test: Indices
    folds: list[tuple[Indices, Indices]]
    seed: int

    @property
    def development(self) -> Indices:
        """Every index that is not in the test split (what the folds cover)."""
        return np.sort(np.concatenate([self.folds[0][0], self.folds[0][1]]))

    def summary(
        self, labels: Sequence[int] | None = None, codes: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """JSON-able sizes, and class counts per part when ``labels`` (and, to name the classes,
        ``codes``) are given."""

        def part(indices: Indices) -> dict[str, Any]:
            info: dict[str, Any] = {"images": int(len(indices))}
            if labels is not None:
                values, counts = np.unique(np.asarray(labels)[indices], return_counts=True)
                info["class_counts"] = {
                    (codes[v] if codes else str(v)): int(c)
                    for v, c in zip(values, counts, strict=True)
                }
            return info

        return {
            "seed": self.seed,
            "test": part(self.test),
            "folds": [{"train": part(t), "validation": part(v)} for t, v in self.folds],
        }


def group_ids(samples: Sequence[Sample]) -> Indices:
    """int[N]: one id per connected group of images sharing a lesion or a patient."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[tuple[str, str], int] = {}
    for index, sample in enumerate(samples):
        keys = [("lesion", sample.lesion_id)]
        if sample.patient_id:
            keys.append(("patient", sample.patient_id))
        for key in keys:
            other = first_seen.setdefault(key, index)
            parent[find(index)] = find(other)
    roots = [find(i) for i in range(len(samples))]
    _, ids = np.unique(roots, return_inverse=True)
    return ids


def _stratified_group_folds(
    labels: NDArray[Any], groups: NDArray[Any], n_splits: int, seed: int
) -> list[Indices]:
    """Positions (into ``labels``) of each of ``n_splits`` lesion-grouped, stratified folds."""
    if len(np.unique(groups)) < n_splits:
        raise ValueError(
            f"{len(np.unique(groups))} lesion groups cannot fill {n_splits} folds; "
            "use fewer folds or more data"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        # A class rarer than the number of folds cannot be in every fold; that is a property of
        # the data, logged below, not a reason to fail (tests turn warnings into errors).
        warnings.filterwarnings("always", message="The least populated class", category=UserWarning)
        folds = [test for _, test in splitter.split(np.zeros(len(labels)), labels, groups)]
    for warning in caught:
        logger.info("splits: %s", warning.message)
    return folds


def holdout_split(
    labels: ArrayLike, groups: ArrayLike, fraction: float, *, seed: int
) -> tuple[Indices, Indices]:
    """(kept, held out) positions; about ``fraction`` of the data held out, grouped and stratified.

    The held-out part is one fold of ``round(1 / fraction)`` stratified group folds.
    """
    y, group = np.asarray(labels), np.asarray(groups)
    if not 0 < fraction < 1:
        raise ValueError("a held-out fraction must be between 0 and 1")
    n_splits = max(2, round(1 / fraction))
    held = np.sort(_stratified_group_folds(y, group, n_splits, seed)[0])
    kept = np.setdiff1d(np.arange(len(y)), held)
    return kept, held


def make_splits(
    samples: Sequence[Sample],
    *,
    folds: int = 5,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """The test split, then ``folds`` (train, validation) pairs over the rest; indices.

    ``folds=1`` gives a single train/validation split holding out ``validation_fraction``.
    ``test_fraction=0`` makes no test split (quick experiments only: the metrics reported are
    then validation metrics, which selected the model and are optimistic).
    """
    labels = np.array([s.label for s in samples])
    groups = group_ids(samples)
    everything = np.arange(len(samples))
    if test_fraction > 0:
        development, test = holdout_split(labels, groups, test_fraction, seed=seed)
    else:
        development, test = everything, np.array([], dtype=int)

    dev_labels, dev_groups = labels[development], groups[development]
    pairs: list[tuple[Indices, Indices]] = []
    if folds == 1:
        train, validation = holdout_split(
            dev_labels, dev_groups, validation_fraction, seed=seed + 1
        )
        pairs.append((development[train], development[validation]))
    elif folds >= 2:
        # A different seed from the test split's, so fold 0 is not shaped like the test split.
        positions = _stratified_group_folds(dev_labels, dev_groups, folds, seed + 1)
        for held in positions:
            validation = np.sort(development[held])
            train = np.setdiff1d(development, validation)
            pairs.append((train, validation))
    else:
        raise ValueError("folds must be at least 1")
    return Splits(test=np.sort(test), folds=pairs, seed=seed)
