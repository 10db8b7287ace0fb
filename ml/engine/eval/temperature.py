"""Temperature scaling: one T > 0 divides both heads' logits, as serving does. T is fitted by
LBFGS on the joint negative log-likelihood of both heads on validation logits (never on the
test split). The one module of ``ml.engine.eval`` that needs torch, kept apart so that the rest
(metrics, calibration, report, plots) loads without it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch.nn import functional as F


def fit_temperature(
    class_logits: ArrayLike,
    targets: ArrayLike,
    malignant_logits: ArrayLike | None = None,
    malignant_target_values: ArrayLike | None = None,
    *,
    max_iter: int = 200,
) -> float:
    """The temperature T > 0 minimising the NLL of ``class_logits / T`` (float[N, C], targets
    int[N]) plus, when given, the binary NLL of ``malignant_logits / T`` (float[N], 0/1
    targets). Fitted on validation logits, never on the test split."""
    z = torch.as_tensor(np.asarray(class_logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if len(y) == 0:
        return 1.0
    binary: tuple[torch.Tensor, torch.Tensor] | None = None
    if malignant_logits is not None:
        binary = (
            torch.as_tensor(np.asarray(malignant_logits), dtype=torch.float64),
            torch.as_tensor(np.asarray(malignant_target_values), dtype=torch.float64),
        )
    # Optimise log T: T stays positive and the problem is better conditioned.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        t = log_t.exp()
        loss = F.cross_entropy(z / t, y)
        if binary is not None:
            loss = loss + F.binary_cross_entropy_with_logits(binary[0] / t, binary[1])
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # torch leaves LBFGS.step bare
    return float(min(max(math.exp(log_t.item()), 0.05), 20.0))
