"""The whole run, ``train``: data, folds, then the chosen model, calibrated and tested once.

1. read the data set into the model's class list, decode every image once and skip the
   unreadable ones (``prepared.prepare_data``; counted and listed in the model's metadata);
2. hold out a lesion-grouped, stratified test split and make K folds of the rest
   (``ml.engine.data.splits``); the test split is never looked at until the model is chosen;
3. train each fold (``fold.train_fold``), keeping its best weights;
4. take the fold whose model validated best, fit the temperature on its validation logits,
   evaluate it once on the test split, and return it as a ``Checkpoint`` whose metadata holds
   the config, the data summary, the splits, every fold's history and the test report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import random
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision  # type: ignore[import-untyped, unused-ignore]

from ml.engine.eval.metrics import operating_curve
from ml.engine.eval.plots import save_plots
from ml.engine.eval.report import format_report
from ml.engine.eval.temperature import fit_temperature
from ml.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.model.transforms import default_preprocessing
from ml.engine.serve.torch_predictor import pick_device
from ml.engine.train.config import MODEL_FILE, EpochCallback, TrainConfig
from ml.engine.train.fold import train_fold
from ml.engine.train.loaders import eval_loader
from ml.engine.train.loops import EvalOutputs, collect_outputs
from ml.engine.train.prepared import PreparedData, prepare_data
from ml.engine.train.reports import outputs_report
from ml.engine.train.state import check_resumable, load_training_state

logger = logging.getLogger(__name__)

TRAINED_WITH = "ml.engine.train.train"

LABEL_MAPPING = (
    "HAM10000 dx: mel→MEL nv→NV bcc→BCC bkl→BKL df→DF vasc→VASC "
    "akiec→AK (dx_isic2019, when present, splits akiec into AK/SCC); "
    "malignant target = class category malignant"
)


def train(
    config: TrainConfig,
    callbacks: Iterable[EpochCallback] | EpochCallback = (),
    *,
    data: PreparedData | None = None,
) -> Checkpoint:
    """Run the whole training (see the module docstring); returns the chosen model.

    ``callbacks`` are called after every epoch of every fold with a JSON-able dict (fold,
    epoch, losses, validation balanced accuracy / macro AUC / malignant AUC, lr, images/s,
    best so far). With ``config.output_dir`` the run keeps its state there after every epoch
    (``last.pt``; resume with ``config.resume``), each fold's best weights, and at the end
    ``model.pt``, ``report.json`` and ``plots/``. ``data`` skips reading the data set again
    (it must come from ``prepare_data`` with the same config).
    """
    callback_list = [callbacks] if callable(callbacks) else list(callbacks)
    started = time.perf_counter()
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    config, state = _resume_from(config)
    data = data or prepare_data(config)
    if state is not None:
        check_resumable(state["config"], config, data.fingerprint(), state["data_fingerprint"])

    with contextlib.ExitStack() as stack:
        if config.output_dir:
            run_dir = Path(config.output_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skinsense-")))
        completed = _train_folds(config, data, run_dir, device, callback_list, state)
        return _finish(config, data, completed, run_dir, device, started)


def _resume_from(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The saved state of ``config.resume`` (or None), and the config continuing in its folder."""
    if not config.resume:
        return config, None
    state = load_training_state(config.resume)
    # Finished folds' weights live beside the state file: the run continues in that folder.
    state_dir = Path(config.resume).parent
    if config.output_dir is None:
        config = dataclasses.replace(config, output_dir=str(state_dir))
    elif Path(config.output_dir).resolve() != state_dir.resolve():
        raise ValueError(f"a resumed run continues in {state_dir}, not {config.output_dir}")
    return config, state


def _train_folds(
    config: TrainConfig,
    data: PreparedData,
    run_dir: Path,
    device: torch.device,
    callbacks: Sequence[EpochCallback],
    state: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Every fold's summary: those a resumed state had finished, then the rest, trained."""
    n_folds = min(config.run_folds or config.folds, len(data.splits.folds))
    completed: list[dict[str, Any]] = list(state["completed_folds"]) if state else []
    if state is not None and state["fold_done"]:
        completed.append(state["fold_summary"])
    for fold in range(len(completed), n_folds):
        resuming = state is not None and state["fold"] == fold and not state["fold_done"]
        summary = train_fold(
            config,
            data,
            fold,
            run_dir,
            device=device,
            callbacks=callbacks,
            completed=completed,
            resume_state=state if resuming else None,
        )
        completed.append(summary)
    return completed


def _evaluate_split(
    config: TrainConfig,
    data: PreparedData,
    model: SkinSenseNet,
    device: torch.device,
    indices: Iterable[int],
) -> EvalOutputs:
    """The chosen model's outputs on some of the run's samples, through the eval preset."""
    channels_last = config.channels_last and device.type == "cuda"
    loader = eval_loader(
        data.subset(indices),
        data.classes,
        default_preprocessing(config.image_size),
        batch_size=config.eval_batch,
        num_workers=config.num_workers,
        device=device,
    )
    amp = config.amp and device.type == "cuda"
    return collect_outputs(
        model, loader, device, amp=amp, channels_last=channels_last, progress=config.progress
    )


def _finish(
    config: TrainConfig,
    data: PreparedData,
    completed: list[dict[str, Any]],
    run_dir: Path,
    device: torch.device,
    started: float,
) -> Checkpoint:
    """Pick the best fold, calibrate it on its validation split, test it once, package it."""
    classes = data.classes
    best = max(completed, key=lambda s: s["best_val_balanced_accuracy"])
    model = load_checkpoint(run_dir / best["weights"]).build_model().to(device)
    if config.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    validation = _evaluate_split(config, data, model, device, data.splits.folds[best["fold"]][1])
    temperature = fit_temperature(
        validation.class_logits.numpy(),
        validation.targets.numpy(),
        validation.malignant_logits.numpy(),
        validation.malignant_targets.numpy(),
    )
    test_report = None
    if len(data.splits.test):
        test = _evaluate_split(config, data, model, device, data.splits.test)
        test_report = outputs_report(test, classes, temperature=temperature)
        test_report["images_per_second"] = test.images_per_second
        logger.info("held-out test split:\n%s", format_report(test_report))

    metadata = {
        "trained_with": TRAINED_WITH,
        "config": asdict(config),
        "data": _data_summary(data),
        "splits": data.splits.summary([s.label for s in data.samples], [c.code for c in classes]),
        # the held-out images by id (file stem): later checks (the int8 gate, the default
        # model's test) score exactly these, never a split rebuilt from freshly read data
        "test_image_ids": sorted(data.samples[i].path.stem for i in data.splits.test),
        "folds": completed,
        "selected_fold": best["fold"],
        "temperature": temperature,
        **_validation_summary(validation, classes, temperature),
        "test_report": test_report,
        "timing": _timing(completed, started),
        "environment": _environment(device),
    }
    checkpoint = Checkpoint(
        backbone=config.backbone,
        classes=classes,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        preprocessing=default_preprocessing(config.image_size),
        temperature=temperature,
        metadata=metadata,
    )
    if config.output_dir:
        _save_outputs(checkpoint, test_report, run_dir)
    return checkpoint


def _data_summary(data: PreparedData) -> dict[str, Any]:
    return {
        **data.sample_set.summary(),
        "unreadable": len(data.unreadable),
        "unreadable_examples": [f"{p.item}: {p.reason}" for p in data.unreadable[:20]],
        "malignant_classes": [c.code for c in data.classes if c.category == "malignant"],
        "label_mapping": LABEL_MAPPING,
    }


def _validation_summary(
    validation: EvalOutputs, classes: Sequence[DiagnosisClass], temperature: float
) -> dict[str, Any]:
    """``validation`` (the short report) and ``validation_roc``: the calibrated malignant
    probability's ROC on validation data, with thresholds, that a clinic chooses its operating
    point from."""
    full = outputs_report(validation, classes, temperature=temperature)
    keys = ("images", "balanced_accuracy", "macro_auc", "malignant_auc", "ece", "ece_calibrated")
    return {
        "validation": {k: full.get(k) for k in keys},
        "validation_roc": operating_curve(
            validation.malignant_targets.numpy(),
            torch.sigmoid(validation.malignant_logits / temperature).numpy(),
        ),
    }


def _timing(completed: list[dict[str, Any]], started: float) -> dict[str, float]:
    histories = [r for s in completed for r in s["history"]]
    return {
        "seconds": time.perf_counter() - started,
        "train_images_per_second": float(
            np.mean([r["train_images_per_second"] for r in histories])
        ),
        "eval_images_per_second": float(np.mean([r["val_images_per_second"] for r in histories])),
    }


def _environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _save_outputs(
    checkpoint: Checkpoint, test_report: dict[str, Any] | None, run_dir: Path
) -> None:
    """``model.pt``, and with a test split ``report.json`` and ``plots/``, in the run folder."""
    save_checkpoint(checkpoint, run_dir / MODEL_FILE)
    if test_report is not None:
        (run_dir / "report.json").write_text(json.dumps(test_report, indent=1))
        save_plots(test_report, None, None, run_dir / "plots", classes=checkpoint.classes)
