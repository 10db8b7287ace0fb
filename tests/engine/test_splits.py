import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ml.engine.data.readers import Sample
from ml.engine.data.splits import group_ids, make_splits


def synthetic_samples(n_lesions=240, seed=0) -> list[Sample]:
    """Lesions of 1-4 images each, some patients with several lesions, imbalanced classes."""
    rng = random.Random(seed)
    samples = []
    for lesion in range(n_lesions):
        label = rng.choices(range(5), weights=[50, 20, 15, 10, 5])[0]
        patient = f"P{lesion // 3}" if lesion % 2 == 0 else None
        for image in range(rng.randint(1, 4)):
            samples.append(
                Sample(Path(f"L{lesion}_{image}.jpg"), label, f"L{lesion}", patient, str(label))
            )
    return samples


def lesions(samples, indices) -> set[str]:
    return {samples[i].lesion_id for i in indices}


def patients(samples, indices) -> set[str]:
    return {samples[i].patient_id for i in indices if samples[i].patient_id}


@pytest.fixture(scope="module")
def samples():
    return synthetic_samples()


@pytest.fixture(scope="module")
def splits(samples):
    return make_splits(samples, folds=4, test_fraction=0.2, seed=7)


def test_no_lesion_or_patient_is_in_both_the_test_split_and_the_folds(samples, splits):
    development = splits.development
    assert not lesions(samples, splits.test) & lesions(samples, development)
    assert not patients(samples, splits.test) & patients(samples, development)
    assert sorted([*splits.test, *development]) == list(range(len(samples)))


def test_no_lesion_is_in_two_folds_and_the_folds_cover_the_rest(samples, splits):
    validations = [set(v) for _, v in splits.folds]
    assert sum(len(v) for v in validations) == len(splits.development)
    assert set().union(*validations) == set(splits.development)
    for a in range(len(validations)):
        for b in range(a + 1, len(validations)):
            assert not lesions(samples, validations[a]) & lesions(samples, validations[b])
            assert not patients(samples, validations[a]) & patients(samples, validations[b])
    for train, validation in splits.folds:
        assert not set(train) & set(validation)
        assert not lesions(samples, train) & lesions(samples, validation)
        assert not set(train) & set(splits.test)


def test_stratification_roughly_keeps_the_class_proportions(samples, splits):
    labels = np.array([s.label for s in samples])
    overall = np.bincount(labels, minlength=5) / len(labels)
    for part in [splits.test, *(v for _, v in splits.folds)]:
        share = np.bincount(labels[part], minlength=5) / len(part)
        assert np.abs(share - overall).max() < 0.06, (share, overall)
    assert 0.15 < len(splits.test) / len(samples) < 0.25


def test_the_same_seed_gives_the_same_split_and_another_seed_another(samples, splits):
    again = make_splits(samples, folds=4, test_fraction=0.2, seed=7)
    assert np.array_equal(again.test, splits.test)
    for (t1, v1), (t2, v2) in zip(again.folds, splits.folds, strict=True):
        assert np.array_equal(t1, t2)
        assert np.array_equal(v1, v2)
    other = make_splits(samples, folds=4, test_fraction=0.2, seed=8)
    assert not np.array_equal(other.test, splits.test)


def test_one_fold_is_a_grouped_train_validation_split(samples):
    splits = make_splits(samples, folds=1, test_fraction=0.2, validation_fraction=0.25, seed=0)
    ((train, validation),) = splits.folds
    assert not lesions(samples, train) & lesions(samples, validation)
    assert 0.15 < len(validation) / len(splits.development) < 0.35


def test_no_test_split_when_asked_for_none(samples):
    splits = make_splits(samples, folds=3, test_fraction=0, seed=0)
    assert len(splits.test) == 0
    assert len(splits.development) == len(samples)


def test_patients_join_their_lesions_into_one_group():
    samples = [
        Sample(Path("a"), 0, "L1", "P1", "x"),
        Sample(Path("b"), 0, "L2", "P1", "x"),  # same patient, other lesion
        Sample(Path("c"), 1, "L2", None, "x"),  # same lesion, no patient recorded
        Sample(Path("d"), 1, "L3", None, "x"),
        Sample(Path("e"), 1, "L4", "P2", "x"),
    ]
    ids = group_ids(samples)
    assert ids[0] == ids[1] == ids[2]
    assert len({ids[0], ids[3], ids[4]}) == 3


def test_too_few_lesions_for_the_folds_is_a_clear_error():
    samples = [Sample(Path(f"{i}"), i % 2, f"L{i % 3}", None, "x") for i in range(12)]
    with pytest.raises(ValueError, match="3 lesion groups cannot fill 4 folds"):
        make_splits(samples, folds=4, test_fraction=0, seed=0)


def test_a_class_rarer_than_the_folds_does_not_fail_the_split():
    samples = synthetic_samples(60)
    samples.append(Sample(Path("rare.jpg"), 5, "rare", None, "5"))
    splits = make_splits(samples, folds=5, test_fraction=0.2, seed=0)
    where = [i for i, s in enumerate(samples) if s.label == 5]
    in_validation = Counter(i in v for _, v in splits.folds for i in where)
    assert in_validation[True] + (where[0] in splits.test) == 1
