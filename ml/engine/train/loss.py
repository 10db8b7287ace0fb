"""The training loss: CE(diagnosis logits, class) + ``binary_loss_weight`` · BCEWithLogits
(malignant logit, class category == malignant), on every batch, optionally weighted against
class imbalance (``weights.loss_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.train.config import TrainConfig
from ml.engine.train.weights import loss_weights


class JointLoss(nn.Module):
    """CE(class_logits float[N, C], targets int[N]) + λ·BCEWithLogits(malignant_logit float[N],
    malignant float[N]). Returns (total, class part, binary part)."""

    def __init__(
        self,
        *,
        binary_weight: float = 0.5,
        class_weights: torch.Tensor | None = None,
        pos_weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.binary_weight = binary_weight
        self.class_loss = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
        self.binary_loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def forward(
        self,
        malignant_logit: torch.Tensor,
        class_logits: torch.Tensor,
        targets: torch.Tensor,
        malignant: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        class_part = self.class_loss(class_logits.float(), targets)
        binary_part = self.binary_loss(malignant_logit.float(), malignant)
        return class_part + self.binary_weight * binary_part, class_part, binary_part


def make_loss(
    labels: Sequence[int], classes: Sequence[DiagnosisClass], config: TrainConfig
) -> JointLoss:
    """The joint loss; with ``imbalance="loss"`` weighted by inverse class frequency."""
    class_weights, pos_weight = loss_weights(labels, classes, config.imbalance)
    return JointLoss(
        binary_weight=config.binary_loss_weight,
        class_weights=class_weights,
        pos_weight=pos_weight,
        label_smoothing=config.label_smoothing,
    )
