"""SkinSenseNet: a torchvision ResNet trunk with a malignant (binary) head and a diagnosis head.

Plain PyTorch, no Django. Weights are never downloaded here: the trunk is built empty
(``weights=None``) and filled from a checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models  # type: ignore[import-untyped]  # no stubs, no py.typed

BACKBONES = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "resnet101": models.resnet101,
}


def build_trunk(backbone: str) -> tuple[nn.Module, int]:
    """A ResNet without its classifier. Returns (trunk, feature size)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
    trunk = BACKBONES[backbone](weights=None)
    features = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return trunk, features


def head_from_linear_shapes(shapes: dict[int, tuple[int, int]]) -> nn.Module:
    """Rebuild a head from the Linear layers found in a state dict.

    ``shapes`` maps a Sequential index to (out_features, in_features); index -1 means the head is
    a bare Linear. Between Linear layers the activation is ReLU (dropout is the identity at
    inference), which is how the original SkinSense heads were built.
    """
    if list(shapes) == [-1]:
        out_features, in_features = shapes[-1]
        return nn.Linear(in_features, out_features)
    indices = sorted(shapes)
    layers: list[nn.Module] = [nn.Identity() for _ in range(indices[-1] + 1)]
    for position, index in enumerate(indices):
        out_features, in_features = shapes[index]
        layers[index] = nn.Linear(in_features, out_features)
        is_last = position == len(indices) - 1
        if not is_last:
            if index + 1 in shapes:
                raise ValueError("head layout not understood: two Linear layers without activation")
            layers[index + 1] = nn.ReLU()
    return nn.Sequential(*layers)


class SkinSenseNet(nn.Module):
    """ResNet trunk + ``binary_head`` (malignant logit) + ``multi_head`` (one logit per class).

    forward(x: float[N, 3, H, W]) -> (malignant_logit: float[N], class_logits: float[N, C]).
    A binary head with two outputs (softmax over benign/malignant, as some original checkpoints
    have) is reduced to the equivalent single logit ``l1 - l0``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str = "resnet50",
        binary_head: nn.Module | None = None,
        multi_head: nn.Module | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.trunk, features = build_trunk(backbone)
        self.dropout = nn.Dropout(dropout)
        self.binary_head = binary_head if binary_head is not None else nn.Linear(features, 1)
        self.multi_head = multi_head if multi_head is not None else nn.Linear(features, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.dropout(self.trunk(x))
        binary = self.binary_head(features)
        if binary.shape[-1] == 2:
            binary_logit = binary[:, 1] - binary[:, 0]
        else:
            binary_logit = binary[:, 0]
        class_logits: torch.Tensor = self.multi_head(features)
        return binary_logit, class_logits
