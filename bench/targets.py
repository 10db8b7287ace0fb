"""The targets the benchmark figures are compared with, as data: one row per target.

A target's ``threshold`` is compared (``comparison``) with the figure either as it is
(``relative=""``) or with a reference the run measures: ``"+"`` adds the threshold to it (p50 at
most the warm inference time + 150 ms), ``"×"`` multiplies it (p95 at most 2× p50). The sections
take their thresholds from here, and the report (``bench.report``) its target column.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

GB = 1024**3

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
}
_SYMBOL = {"<=": "≤", "<": "<", ">=": "≥"}


@dataclass(frozen=True)
class Target:
    key: str  # the report row it applies to (``a.warm_ratio``: each ``a.warm_<engine>_ratio``)
    threshold: float
    comparison: str  # "<=", "<" or ">="
    unit: str  # what ``threshold`` is in
    description: str
    relative: str = ""  # "", "+" (reference + threshold) or "×" (reference × threshold)

    @property
    def symbol(self) -> str:
        return _SYMBOL[self.comparison]

    def bound(self, reference: float | None = None) -> float:
        """The limit a figure is compared with (the threshold, or it applied to ``reference``)."""
        if self.relative == "+":
            return reference + self.threshold
        if self.relative == "×":
            return self.threshold * reference
        return self.threshold

    def met(self, value: float, reference: float | None = None) -> bool:
        return _COMPARE[self.comparison](value, self.bound(reference))

    def fraction(self) -> str:
        """The threshold as a small fraction: ``1/8``."""
        return str(Fraction(self.threshold).limit_denominator(100))


TARGETS: dict[str, Target] = {
    target.key: target
    for target in (
        Target(
            "a.warm_ratio",
            1 / 8,
            "<=",
            "fraction of the original app's per-upload time",
            "warm single-image inference (decode + predict) at most 1/8 of the original app's "
            "per-upload time (torch and ONNX Runtime fp32; int8's accuracy is gated per model)",
        ),
        Target(
            "b.best_batched_fp32",
            0.8,
            ">=",
            "fraction of the fp32 ceiling",
            "the best batched (batch > 1) fp32 engine at least 80 % of the measured ceiling",
        ),
        Target(
            "b.best_int8",
            2.0,
            ">=",
            "multiple of the fp32 ceiling",
            "the best int8 engine at least 2× the fp32 ceiling (integer kernels)",
        ),
        Target(
            "c.p50_ms",
            150.0,
            "<=",
            "ms over the warm single-image inference time",
            "upload→result p50 at most the warm single-image inference time + 150 ms",
            relative="+",
        ),
        Target(
            "c.p95_ms",
            2.0,
            "<=",
            "multiple of the p50",
            "upload→result p95 at most 2× the p50",
            relative="×",
        ),
        Target(
            "c.drain_images_per_s",
            0.8,
            ">=",
            "fraction of (b)'s batched images/s of the served engine",
            "a backlog of waiting cases drains at least at 80 % of (b)'s batch-8 throughput",
            relative="×",
        ),
        Target(
            "c.worker_peak_rss",
            GB,
            "<",
            "bytes",
            "the stack's Celery worker process below 1 GB peak RSS",
        ),
        Target(
            "e.peak_rss",
            GB,
            "<",
            "bytes",
            "a CPU worker's peak RSS with the model loaded below 1 GB (ONNX Runtime: no torch)",
        ),
    )
}


def target(key: str) -> Target:
    return TARGETS[key]


def gigabytes(target_: Target) -> str:
    """A byte threshold as the report writes it: ``1 GB``."""
    return f"{target_.threshold / GB:g} GB"
