"""Where a run's network starts: ImageNet weights from torchvision's local cache, random, or a
weights file (a SkinSense checkpoint, an original-layout SkinSense file, a ResNet state dict).

Nothing is ever downloaded: missing ImageNet weights are a ``WeightsNotAvailableError`` that
says where to put the file, and a cached file whose name's SHA-256 prefix does not match its
content is refused as damaged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torchvision  # type: ignore[import-untyped, unused-ignore]
from torch import nn

from ml.engine.files import sha256_file
from ml.engine.model.checkpoint import load_checkpoint
from ml.engine.model.network import BACKBONES, SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES

logger = logging.getLogger(__name__)


class WeightsNotAvailableError(FileNotFoundError):
    """Pretrained weights were asked for but are not on this machine (nothing is downloaded)."""


def imagenet_weight_files(backbone: str) -> list[tuple[str, Path]]:
    """(torchvision weights name, where its file must be) for a backbone, the default first.

    The place is torchvision's own cache, ``torch.hub.get_dir()/checkpoints/`` (``TORCH_HOME``
    moves it), under the file name torchvision would download it as.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
    weights = torchvision.models.get_model_weights(backbone)
    ordered = [weights.DEFAULT] + [w for w in weights if w is not weights.DEFAULT]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [(str(w.name), folder / str(w.url).rsplit("/", 1)[-1]) for w in ordered]


def _check_torchvision_hash(path: Path) -> None:
    # torchvision file names end in the first hex digits of the file's SHA-256; a partial or
    # corrupt download shows up here rather than as strange training.
    expected = path.stem.rsplit("-", 1)[-1]
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        return
    if not sha256_file(path).startswith(expected):
        raise WeightsNotAvailableError(
            f"{path} does not match its name's SHA-256 prefix {expected}: the file is damaged"
        )


def find_imagenet_weights(backbone: str) -> Path:
    """The cached torchvision ImageNet weights file for ``backbone``, or a clear error."""
    candidates = imagenet_weight_files(backbone)
    for name, path in candidates:
        if path.is_file():
            if name != candidates[0][0]:
                logger.info("using %s ImageNet weights (%s); the default is not cached", name, path)
            return path
    looked = ", ".join(f"{p.name} ({n})" for n, p in candidates)
    raise WeightsNotAvailableError(
        f"ImageNet weights for {backbone} are not on this machine: looked for {looked} in "
        f"{candidates[0][1].parent} (torch.hub.get_dir(); TORCH_HOME moves it). SkinSense never "
        f"downloads weights: copy the file there, pass its path as the init "
        f"(--init /path/to/{candidates[0][1].name}), or use --init random."
    )


def _trunk_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def build_model(
    backbone: str = "resnet50",
    num_classes: int = len(ISIC2019_CLASSES),
    init: str = "imagenet",
    *,
    dropout: float = 0.0,
) -> SkinSenseNet:
    """A SkinSenseNet (in train mode) initialised from ``init``:

    - ``"imagenet"``: torchvision's ImageNet weights for the trunk, from the local cache only
      (``find_imagenet_weights``); ``WeightsNotAvailableError`` when they are not there;
    - ``"random"``: torchvision's default initialisation;
    - a file path: a SkinSense checkpoint (trunk, and both heads when it has ``num_classes``
      classes), an original-layout SkinSense file (``model.*``: trunk only), or a torchvision
      ResNet state dict (trunk). The backbone must match.

    The heads start fresh unless they come from a checkpoint with the same number of classes.
    """
    model = SkinSenseNet(num_classes=num_classes, backbone=backbone, dropout=dropout)
    if init == "random":
        return model.train()
    if init == "imagenet":
        path = find_imagenet_weights(backbone)
        _check_torchvision_hash(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.trunk.load_state_dict(_trunk_state(state), strict=True)
        logger.info("trunk initialised from ImageNet weights %s", path.name)
        return model.train()
    path = Path(init)
    if not path.is_file():
        raise WeightsNotAvailableError(
            f"init {init!r} is neither 'imagenet', 'random' nor an existing weights file"
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and obj.get("format") == "skinsense.checkpoint":
        model = _from_checkpoint(model, path, backbone, num_classes, dropout)
        logger.info("initialised from SkinSense checkpoint %s", path.name)
        return model.train()
    _load_trunk_file(model, obj, path, backbone)
    logger.info("trunk initialised from %s", path.name)
    return model.train()


def _from_checkpoint(
    model: SkinSenseNet, path: Path, backbone: str, num_classes: int, dropout: float
) -> SkinSenseNet:
    """The checkpoint's whole network for the same number of classes, else its trunk only."""
    checkpoint = load_checkpoint(path)
    if checkpoint.backbone != backbone:
        raise ValueError(f"{path.name} is a {checkpoint.backbone}, not a {backbone}")
    if len(checkpoint.classes) == num_classes:
        model = checkpoint.build_model()
        model.dropout = nn.Dropout(dropout)
        return model
    trunk = {
        k[len("trunk.") :]: v for k, v in checkpoint.state_dict.items() if k.startswith("trunk.")
    }
    model.trunk.load_state_dict(trunk, strict=True)
    return model


def _load_trunk_file(model: SkinSenseNet, obj: object, path: Path, backbone: str) -> None:
    """Load a ResNet state dict, or an original-layout SkinSense file's trunk, into ``model``."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} holds no weights this project can read")
    if any(k.startswith("model.") for k in state):  # the original SkinSense layout
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    try:
        model.trunk.load_state_dict(_trunk_state(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path.name} does not fit a {backbone} trunk: {exc}") from None
