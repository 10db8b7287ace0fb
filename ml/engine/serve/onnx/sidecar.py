"""The ONNX cache's files: where a model of given weights lives, and its JSON sidecar.

No torch here. Files are named by the weights' SHA-256: ``<sha256>.onnx`` (fp32),
``<sha256>.int8.onnx`` and the sidecar ``<sha256>.json`` they share, which records the class
list, preprocessing, temperature and thresholds, so serving never unpickles the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml.engine.files import atomic_path

SIDECAR_FORMAT = "skinsense.onnx"
SIDECAR_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("malignant_logit", "class_logits")

Sidecar = dict[str, Any]  # the JSON object of a sidecar


class OnnxModelMismatchError(RuntimeError):
    """An .onnx file is not the one its sidecar recorded (or has no sidecar)."""


def onnx_path_for(cache_dir: str | Path, sha256: str, *, variant: str = "fp32") -> Path:
    """Where the cache keeps the model of these weights: ``<sha256>.onnx`` or ``….int8.onnx``."""
    if variant not in ("fp32", "int8"):
        raise ValueError(f"unknown variant {variant!r}; fp32 or int8")
    suffix = ".onnx" if variant == "fp32" else ".int8.onnx"
    return Path(cache_dir) / f"{sha256}{suffix}"


def sidecar_path(onnx_path: str | Path) -> Path:
    """``<sha256>.json`` beside ``<sha256>.onnx`` and ``<sha256>.int8.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name.split(".")[0] + ".json")


def variant_of(onnx_path: str | Path) -> str:
    return "int8" if Path(onnx_path).name.endswith(".int8.onnx") else "fp32"


def read_sidecar(onnx_path: str | Path) -> Sidecar:
    path = sidecar_path(onnx_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OnnxModelMismatchError(f"{Path(onnx_path).name} has no sidecar {path.name}")
    if (
        not isinstance(data, dict)
        or data.get("format") != SIDECAR_FORMAT
        or data.get("format_version") != SIDECAR_VERSION
    ):
        raise OnnxModelMismatchError(f"{path.name} is not a version {SIDECAR_VERSION} sidecar")
    return data


def write_sidecar(onnx_path: str | Path, data: Sidecar) -> Path:
    """Write (replace) the sidecar of ``onnx_path`` atomically."""
    path = sidecar_path(onnx_path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path
