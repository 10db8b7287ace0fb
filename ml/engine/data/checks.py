"""Checking and subsetting samples before a run. PIL only: no Django, no torch.

``check_images`` opens and fully decodes every image once, so a corrupt file is counted and
listed (in the model's metadata) instead of surfacing mid-epoch; ``limit_per_class`` makes the
small, seeded subsets of quick runs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ml.engine.data.readers import Problem, Sample

logger = logging.getLogger(__name__)


def _check_one(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()
        # verify() leaves the file unusable and misses truncated pixel data; decode it too.
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes PIL raise many kinds
        return f"{type(exc).__name__}: {exc}"
    return None


def check_images(
    samples: Sequence[Sample], *, workers: int = 4
) -> tuple[list[Sample], list[Problem]]:
    """Open and fully decode every image. Returns (readable samples, problems), order kept."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        errors = list(pool.map(_check_one, [s.path for s in samples]))
    ok = [s for s, error in zip(samples, errors, strict=True) if error is None]
    problems = [
        Problem(str(s.path), error)
        for s, error in zip(samples, errors, strict=True)
        if error is not None
    ]
    if problems:
        logger.warning(
            "%d of %d images are unreadable and skipped (e.g. %s)",
            len(problems),
            len(samples),
            "; ".join(f"{p.item}: {p.reason}" for p in problems[:3]),
        )
    return ok, problems


def limit_per_class(
    samples: Sequence[Sample], max_per_class: int, *, seed: int = 0
) -> list[Sample]:
    """At most ``max_per_class`` samples of each class, chosen with ``seed``; order kept."""
    by_class: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_class.setdefault(sample.label, []).append(index)
    rng = random.Random(seed)
    keep: set[int] = set()
    for indices in by_class.values():
        keep.update(
            indices if len(indices) <= max_per_class else rng.sample(indices, max_per_class)
        )
    return [s for i, s in enumerate(samples) if i in keep]
