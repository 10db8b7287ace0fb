"""The self-describing SkinSense checkpoint, and conversion from the original project's layout.

No Django here. A checkpoint is one ``torch.save`` file holding a dict of plain data and tensors
(loadable with ``weights_only=True``, so a checkpoint cannot run code when opened)::

    format: "skinsense.checkpoint", format_version: 1
    backbone: "resnet50"
    classes: [{code, name, category, isic_diagnosis}, ...]   # the multi-head's output order
    preprocessing: {image_size, resize_size, mean, std, interpolation}
    temperature: float          # calibration, divides both heads' logits
    thresholds: {malignant, confidence}
    state_dict: {...}           # SkinSenseNet weights
    metadata: {...}             # free-form: training config, metrics, notes
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from ml.engine.files import sha256_file
from ml.engine.model.network import BACKBONES, SkinSenseNet, head_from_linear_shapes
from ml.engine.model.taxonomy import DiagnosisClass, classes_from_dicts
from ml.engine.model.thresholds import DEFAULT_THRESHOLDS, with_defaults
from ml.engine.model.transforms import default_preprocessing

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "checkpoint_from_object",
    "from_original_layout",
    "head_output_size",
    "is_skinsense_checkpoint",
    "load_checkpoint",
    "original_trunk_state",
    "read_weights_file",
    "save_checkpoint",
]

FORMAT = "skinsense.checkpoint"
FORMAT_VERSION = 1
StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """The file is not a checkpoint we can use; the message says why."""


@dataclass
class Checkpoint:
    backbone: str
    classes: list[DiagnosisClass]
    state_dict: StateDict
    preprocessing: dict[str, Any] = field(default_factory=default_preprocessing)
    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "classes": [c.as_dict() for c in self.classes],
            "preprocessing": dict(self.preprocessing),
            "temperature": float(self.temperature),
            "thresholds": dict(self.thresholds),
            "metadata": dict(self.metadata),
            "state_dict": self.state_dict,
        }

    def build_model(self, *, take_weights: bool = False) -> SkinSenseNet:
        """A SkinSenseNet with these weights, in eval mode.

        ``take_weights``: the model is built without initialising its own parameters (on the
        meta device) and takes this checkpoint's tensors as they are: no second copy of the
        weights and no random initialisation (a serving process loads faster and peaks lower).
        The checkpoint's tensors then belong to that model; do not build another from them.
        """
        with torch.device("meta") if take_weights else contextlib.nullcontext():
            model = SkinSenseNet(
                num_classes=len(self.classes),
                backbone=self.backbone,
                binary_head=_head_for(self.state_dict, "binary_head"),
                multi_head=_head_for(self.state_dict, "multi_head"),
            )
        state = self.state_dict
        if take_weights:  # assigned as they are: a float16 file's tensors become float32 first
            state = {
                key: value.float() if value.is_floating_point() else value
                for key, value in state.items()
            }
        try:
            model.load_state_dict(state, strict=True, assign=take_weights)
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit a {self.backbone} SkinSenseNet: {exc}")
        if take_weights and any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
            raise CheckpointError("the checkpoint leaves some of the model's tensors unset")
        return model.eval()


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> str:
    """Write the checkpoint; returns the file's SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint.to_dict(), path)
    return sha256_file(path)


# --- reading --------------------------------------------------------------------------------


def read_weights_file(path: str | Path) -> object:
    """What a weights file holds (tensors and plain data only: ``weights_only``), read once;
    ``checkpoint_from_object`` makes a Checkpoint of it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"cannot read {Path(path).name} as a PyTorch checkpoint: {exc}")


def is_skinsense_checkpoint(obj: object) -> TypeGuard[dict[str, Any]]:
    """Whether ``obj`` (from ``read_weights_file``) is in the SkinSense checkpoint format."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | Path, *, classes: list[DiagnosisClass] | None = None) -> Checkpoint:
    """Read a SkinSense checkpoint, or an original-layout one (then ``classes`` is needed)."""
    return checkpoint_from_object(read_weights_file(path), classes=classes)


def checkpoint_from_object(
    obj: object, *, classes: list[DiagnosisClass] | None = None
) -> Checkpoint:
    """A Checkpoint of what a weights file held: the SkinSense format as it is, the original
    layout converted (``from_original_layout``, which needs ``classes``)."""
    if not is_skinsense_checkpoint(obj):
        return from_original_layout(obj, classes=classes)
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"unsupported checkpoint version {obj.get('format_version')}")
    if obj["backbone"] not in BACKBONES:
        raise CheckpointError(f"unknown backbone {obj['backbone']!r}")
    try:
        stored_classes = classes_from_dicts(obj["classes"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"bad class list: {exc}")
    return Checkpoint(
        backbone=obj["backbone"],
        classes=stored_classes,
        state_dict=obj["state_dict"],
        preprocessing=obj.get("preprocessing") or default_preprocessing(),
        temperature=float(obj.get("temperature", 1.0)),
        thresholds=with_defaults(obj.get("thresholds")),
        metadata=obj.get("metadata") or {},
    )


# --- heads ----------------------------------------------------------------------------------


def _linear_shapes(
    state_dict: Mapping[str, torch.Tensor], prefix: str
) -> dict[int, tuple[int, int]]:
    shapes: dict[int, tuple[int, int]] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix + "."):
            continue
        rest = key[len(prefix) + 1 :]
        match = re.fullmatch(r"(?:(\d+)\.)?(weight|bias)", rest)
        if not match:
            raise CheckpointError(f"unsupported layer in {prefix}: {key}")
        if match.group(2) == "weight":
            if tensor.ndim != 2:
                raise CheckpointError(f"{key}: only Linear layers are supported in heads")
            index = int(match.group(1)) if match.group(1) is not None else -1
            shapes[index] = (int(tensor.shape[0]), int(tensor.shape[1]))
    if not shapes:
        raise CheckpointError(f"no {prefix} weights in the checkpoint")
    return shapes


def _head_for(state_dict: Mapping[str, torch.Tensor], prefix: str) -> nn.Module:
    return head_from_linear_shapes(_linear_shapes(state_dict, prefix))


def head_output_size(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    shapes = _linear_shapes(state_dict, prefix)
    return shapes[max(shapes)][0]


# --- the original SkinSense layout ----------------------------------------------------------


def _is_state_dict(obj: object) -> TypeGuard[StateDict]:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _unwrap_state_dict(obj: object) -> StateDict:
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            inner = obj.get(key)
            if _is_state_dict(inner):
                return dict(inner)
        if _is_state_dict(obj):
            return dict(obj)
    raise CheckpointError("the file holds neither a SkinSense checkpoint nor a state dict")


def original_trunk_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """The torchvision ResNet weights of an original-layout state dict: the ``model.*`` keys
    without their prefix, less the classifier (``fc.*``) the trunk does not have."""
    trunk = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    return {k: v for k, v in trunk.items() if not k.startswith("fc.")}


def _infer_backbone(trunk_state: Mapping[str, torch.Tensor]) -> str:
    blocks = {int(m.group(1)) for k in trunk_state if (m := re.match(r"layer3\.(\d+)\.", k))}
    is_bottleneck = any(k.startswith("layer1.0.conv3.") for k in trunk_state)
    layer3 = max(blocks) + 1 if blocks else 0
    table = {
        (False, 2): "resnet18",
        (False, 6): "resnet34",
        (True, 6): "resnet50",
        (True, 23): "resnet101",
    }
    backbone = table.get((is_bottleneck, layer3))
    if backbone is None:
        raise CheckpointError("could not recognise the ResNet depth of the backbone weights")
    return backbone


def _convert_original_state(state: StateDict) -> tuple[StateDict, StateDict]:
    """(trunk weights, SkinSenseNet state dict) of an original-layout state dict."""
    if not any(k.startswith("model.") for k in state) or not any(
        k.startswith("multi_head.") for k in state
    ):
        raise CheckpointError(
            "not the original SkinSense layout: expected keys model.*, binary_head.*, multi_head.*"
        )
    unknown = [k for k in state if not k.startswith(("model.", "binary_head.", "multi_head."))]
    if unknown:
        raise CheckpointError(f"unexpected keys in the original checkpoint: {unknown[:5]}")
    trunk = original_trunk_state(state)
    converted = {f"trunk.{k}": v for k, v in trunk.items()}
    for key, value in state.items():
        if key.startswith(("binary_head.", "multi_head.")):
            converted[key] = value
    return trunk, converted


def _check_original_heads(converted: StateDict, classes: list[DiagnosisClass]) -> None:
    outputs = head_output_size(converted, "multi_head")
    if outputs != len(classes):
        raise CheckpointError(
            f"the multi-class head has {outputs} outputs but the class list has {len(classes)}"
        )
    binary_outputs = head_output_size(converted, "binary_head")
    if binary_outputs not in (1, 2):
        raise CheckpointError(f"the binary head has {binary_outputs} outputs; expected 1 or 2")


def from_original_layout(
    obj: object, *, classes: list[DiagnosisClass] | None, class_names_key: str = "class_names"
) -> Checkpoint:
    """Convert the original SkinSense layout: ResNet under ``model.*``, ``binary_head``,
    ``multi_head`` (27 classes in the original). The class list comes from the file when it
    carries one (``class_names``/``classes``), else from ``classes``.
    """
    trunk, converted = _convert_original_state(_unwrap_state_dict(obj))
    if classes is None and isinstance(obj, dict):
        names = obj.get(class_names_key) or obj.get("classes")
        if names:
            raise CheckpointError(
                "the checkpoint names its classes but not their ISIC diagnoses; "
                "pass a class list file (see register_model --classes)"
            )
    if classes is None:
        raise CheckpointError("the original layout needs a class list (register_model --classes)")
    _check_original_heads(converted, classes)
    return Checkpoint(
        backbone=_infer_backbone(trunk),
        classes=classes,
        state_dict=converted,
        metadata={"converted_from": "original SkinSense layout"},
    )
