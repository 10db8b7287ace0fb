"""A model's default operating point: the thresholds that read its two heads.

Torch-free (web code imports it too): one definition, used by the checkpoint format, both
serving backends and the pages that show a model's threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# malignant: the binary head's probability at or above which a lesion reads as malignant;
# confidence: the top diagnosis's probability below which a result is "uncertain — refer".
DEFAULT_THRESHOLDS: Final[dict[str, float]] = {"malignant": 0.5, "confidence": 0.5}


def with_defaults(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """``thresholds`` over the defaults: every key present, the given values winning."""
    return {**DEFAULT_THRESHOLDS, **(thresholds or {})}
