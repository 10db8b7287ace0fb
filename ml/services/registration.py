"""Registering model weights: a checkpoint rewritten under MODEL_ROOT, named by its SHA-256;
the model shipped in the repository that ``make run`` activates; and the DEMO model (random
weights) for tests and for a checkout without the shipped file. Needs torch."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from ml.models import ModelVersion
from ml.services.registry import metrics_from_metadata, model_version_activate


def model_version_register(
    *,
    path: str | Path,
    name: str,
    version: str,
    classes: list[dict[str, Any]] | None = None,
    activate: bool = False,
    is_demo: bool = False,
    notes: str = "",
) -> ModelVersion:
    """Register a checkpoint file (SkinSense format, or the original layout with ``classes``).

    The weights are rewritten as a self-describing SkinSense checkpoint under MODEL_ROOT, named
    by their SHA-256, which the registry records; workers refuse a file whose hash differs.
    """
    from ml.engine.model.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(path, classes=classes)
    checkpoint.build_model()  # proves the weights fit before anything is recorded
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise ValueError(f"model {name} {version} is already registered")
    root = Path(settings.MODEL_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    # Named by its content: written beside, then moved onto its name in one step.
    with tempfile.TemporaryDirectory(dir=root) as folder:
        temporary = Path(folder) / "checkpoint.pt"
        digest = save_checkpoint(checkpoint, temporary)
        final_name = f"{digest}.pt"
        temporary.replace(root / final_name)
    with transaction.atomic():
        model_version = ModelVersion.objects.create(
            name=name,
            version=version,
            backbone=checkpoint.backbone,
            classes=[c.as_dict() for c in checkpoint.classes],
            weights_file=final_name,
            weights_sha256=digest,
            preprocessing=checkpoint.preprocessing,
            thresholds=checkpoint.thresholds,
            temperature=checkpoint.temperature,
            metrics=metrics_from_metadata(checkpoint.metadata),
            is_demo=is_demo,
            notes=notes,
        )
        if activate:
            model_version_activate(model_version=model_version)
    return model_version


def demo_model_ensure(*, seed: int = 0) -> ModelVersion | None:
    """Make sure some model is active: when none is, activate the DEMO model (random ResNet50
    weights), registering it first if needed.

    Returns the DEMO version it activated, or None when a model was already active. Predictions
    made with it carry a visible "demo model — predictions are meaningless" banner.
    """
    if ModelVersion.objects.filter(is_active=True).exists():
        return None
    existing = ModelVersion.objects.filter(is_demo=True).order_by("-created_at").first()
    if existing is not None:
        return model_version_activate(model_version=existing)
    import torch

    from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
    from ml.engine.model.network import SkinSenseNet
    from ml.engine.model.taxonomy import ISIC2019_CLASSES

    torch.manual_seed(seed)
    network = SkinSenseNet(num_classes=len(ISIC2019_CLASSES), backbone="resnet50")
    with torch.no_grad():  # small heads: outputs near chance, as an untrained model should be
        for head in (network.binary_head, network.multi_head):
            head.weight.mul_(1e-3)
            head.bias.zero_()
    checkpoint = Checkpoint(
        backbone="resnet50",
        classes=ISIC2019_CLASSES,
        state_dict=network.state_dict(),
        metadata={"demo": True, "notes": "random weights; predictions are meaningless"},
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.pt"
        save_checkpoint(checkpoint, path)
        return model_version_register(
            path=path,
            name="DEMO",
            version="random-resnet50",
            activate=True,
            is_demo=True,
            notes="Random weights for trying the platform. Predictions are meaningless.",
        )


class ShippedModelError(ValueError):
    """The shipped model file does not match its manifest (or the manifest is unreadable)."""


def shipped_model_manifest(path: Path) -> dict[str, Any]:
    """The manifest beside a shipped model file (``<file>.json``): name, version, sha256,
    notes."""
    try:
        manifest = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        raise ShippedModelError(f"{path}: no readable manifest beside it ({exc})") from exc
    missing = {"name", "version", "sha256"} - set(manifest)
    if missing:
        raise ShippedModelError(f"{path}: the manifest lacks {', '.join(sorted(missing))}")
    return manifest


def default_model_ensure() -> tuple[ModelVersion | None, str]:
    """Make sure some model is active: when none is, the shipped model (``DEFAULT_MODEL_PATH``,
    its SHA-256 checked against its manifest), else the DEMO model.

    Returns (the version it activated or None, what happened: "active" when a model was
    already active, "shipped" or "demo")."""
    from ml.engine.files import sha256_file

    if ModelVersion.objects.filter(is_active=True).exists():
        return None, "active"
    path = Path(settings.DEFAULT_MODEL_PATH) if settings.DEFAULT_MODEL_PATH else None
    if path is None or not path.is_file():
        return demo_model_ensure(), "demo"
    manifest = shipped_model_manifest(path)
    digest = sha256_file(path)
    if digest != manifest["sha256"]:
        raise ShippedModelError(
            f"{path}: its SHA-256 is {digest}, its manifest says {manifest['sha256']}; the file "
            "was changed or damaged, so it is not used"
        )
    existing = ModelVersion.objects.filter(
        name=manifest["name"], version=manifest["version"]
    ).first()
    if existing is not None:
        return model_version_activate(model_version=existing), "shipped"
    registered = model_version_register(
        path=path,
        name=manifest["name"],
        version=manifest["version"],
        activate=True,
        notes=manifest.get("notes", ""),
    )
    return registered, "shipped"
