"""The two heads' activations in NumPy (float64), shared by evaluation and ONNX serving."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def sigmoid(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """float[N] logits -> float[N] probabilities."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)  # no overflow warning


def softmax(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """float[N, C] logits -> float[N, C] probabilities, per row."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
