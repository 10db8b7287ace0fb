"""Training one fold: build the network, train with augmentation and the imbalance policy,
validate with the eval preset after every epoch, keep the weights with the best validation
balanced accuracy, stop early when it stops improving, and save the training state after every
epoch so that an interrupted fold resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ml.engine.eval.metrics import classification_metrics
from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.model.transforms import default_preprocessing
from ml.engine.numeric import sigmoid, softmax
from ml.engine.train.config import STATE_FILE, EpochCallback, TrainConfig
from ml.engine.train.loaders import Loader, make_loaders
from ml.engine.train.loops import EvalOutputs, StepOptions, collect_outputs, train_one_epoch
from ml.engine.train.loss import JointLoss, make_loss
from ml.engine.train.optim import Scheduler, make_optimizer, make_scheduler, step_scheduler
from ml.engine.train.prepared import PreparedData
from ml.engine.train.pretrained import build_model
from ml.engine.train.state import rng_state, save_training_state, set_rng_state

logger = logging.getLogger(__name__)


@dataclass
class _Fold:
    """What one fold trains with; fixed once the fold starts."""

    config: TrainConfig
    fold: int
    n_folds: int
    classes: list[DiagnosisClass]
    device: torch.device
    amp: bool
    channels_last: bool
    model: SkinSenseNet
    train_loader: Loader
    val_loader: Loader
    generator: torch.Generator
    loss_fn: JointLoss
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler | None
    fingerprint: str

    @property
    def weights_name(self) -> str:
        return f"fold{self.fold}-best.pt"


@dataclass
class _Progress:
    """Where the fold stands; saved in the training state after every epoch."""

    summary: dict[str, Any]
    best_metric: float = -math.inf
    epochs_since_best: int = 0
    next_epoch: int = 1


def _setup(config: TrainConfig, data: PreparedData, fold: int, device: torch.device) -> _Fold:
    classes = data.classes
    train_idx, val_idx = data.splits.folds[fold]
    train_samples, val_samples = data.subset(train_idx), data.subset(val_idx)
    on_cuda = device.type == "cuda"
    channels_last = config.channels_last and on_cuda
    amp = config.amp and on_cuda
    model = build_model(config.backbone, len(classes), config.init, dropout=config.dropout)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator()
    train_loader, val_loader = make_loaders(
        train_samples, val_samples, classes, config, device=device, generator=generator
    )
    loss_fn = make_loss([s.label for s in train_samples], classes, config).to(device)
    optimizer = make_optimizer(model, config)
    return _Fold(
        config=config,
        fold=fold,
        n_folds=config.run_folds or config.folds,
        classes=classes,
        device=device,
        amp=amp,
        channels_last=channels_last,
        model=model,
        train_loader=train_loader,
        val_loader=val_loader,
        generator=generator,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config),
        scaler=torch.amp.GradScaler("cuda") if amp else None,
        fingerprint=data.fingerprint(),
    )


def _start(setup: _Fold, data: PreparedData) -> _Progress:
    train_idx, val_idx = data.splits.folds[setup.fold]
    summary: dict[str, Any] = {
        "fold": setup.fold,
        "train_images": len(train_idx),
        "validation_images": len(val_idx),
        "best_val_balanced_accuracy": None,
        "best_epoch": 0,
        "epochs_run": 0,
        "stopped_early": False,
        "weights": setup.weights_name,
        "history": [],
    }
    return _Progress(summary)


def _resume(setup: _Fold, state: dict[str, Any]) -> _Progress:
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.scheduler.load_state_dict(state["scheduler"])
    if setup.scaler is not None and state.get("scaler"):
        setup.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    logger.info("fold %d: resuming after epoch %d", setup.fold + 1, state["epoch"])
    return _Progress(
        summary=dict(state["fold_summary"]),
        best_metric=state["best_metric"],
        epochs_since_best=state["epochs_since_best"],
        next_epoch=state["epoch"] + 1,
    )


def _train_and_validate(setup: _Fold, epoch: int) -> tuple[dict[str, float], EvalOutputs]:
    config = setup.config
    # The sampling order depends only on (seed, fold, epoch): a resumed run draws the same.
    setup.generator.manual_seed(config.seed * 1_000_003 + setup.fold * 10_007 + epoch)
    train_stats = train_one_epoch(
        setup.model,
        setup.train_loader,
        setup.loss_fn,
        setup.optimizer,
        setup.device,
        options=StepOptions(
            scaler=setup.scaler,
            amp=setup.amp,
            channels_last=setup.channels_last,
            grad_clip=config.grad_clip,
        ),
        max_steps=config.max_steps_per_epoch,
        progress=f"epoch {epoch}" if config.progress else None,
    )
    outputs = collect_outputs(
        setup.model,
        setup.val_loader,
        setup.device,
        loss_fn=setup.loss_fn,
        amp=setup.amp,
        channels_last=setup.channels_last,
        progress=config.progress,
        description="validate",
    )
    return train_stats, outputs


def _keep_if_best(
    setup: _Fold, progress: _Progress, epoch: int, metric: float | None, run_dir: Path
) -> bool:
    """Save the weights when ``metric`` beats the fold's best; returns whether it did."""
    if metric is None or not metric > progress.best_metric:
        progress.epochs_since_best += 1
        return False
    progress.best_metric, progress.epochs_since_best = metric, 0
    progress.summary["best_val_balanced_accuracy"] = metric
    progress.summary["best_epoch"] = epoch
    state = setup.model.state_dict()
    best = Checkpoint(
        backbone=setup.config.backbone,
        classes=setup.classes,
        state_dict={k: v.detach().cpu().clone() for k, v in state.items()},
        preprocessing=default_preprocessing(setup.config.image_size),
        metadata={"fold": setup.fold, "epoch": epoch, "val_balanced_accuracy": metric},
    )
    save_checkpoint(best, run_dir / setup.weights_name)
    return True


def _nan_to_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _record(
    setup: _Fold,
    progress: _Progress,
    epoch: int,
    lr: float,
    train_stats: dict[str, float],
    outputs: EvalOutputs,
    metrics: dict[str, Any],
    improved: bool,
) -> dict[str, Any]:
    """The JSON-able record of one epoch (what the callbacks get); without ``seconds``."""
    summary = progress.summary
    return {
        "fold": setup.fold,
        "folds": setup.n_folds,
        "epoch": epoch,
        "epochs": setup.config.epochs,
        "lr": lr,
        "train_loss": _nan_to_none(train_stats["loss"]),
        "train_class_loss": _nan_to_none(train_stats["class_loss"]),
        "train_binary_loss": _nan_to_none(train_stats["binary_loss"]),
        "train_images": train_stats["images"],
        "train_images_per_second": train_stats["images_per_second"],
        "val_loss": outputs.loss,
        "val_images": len(outputs.targets),
        "val_images_per_second": outputs.images_per_second,
        "val_balanced_accuracy": metrics["balanced_accuracy"],
        "val_macro_auc": metrics["macro_auc"],
        "val_malignant_auc": metrics.get("malignant_auc"),
        "best_val_balanced_accuracy": summary["best_val_balanced_accuracy"],
        "best_epoch": summary["best_epoch"],
        "improved": improved,
    }


def _run_epoch(
    setup: _Fold, progress: _Progress, epoch: int, run_dir: Path
) -> tuple[dict[str, Any], bool]:
    """Train, validate, step the schedule, keep the best weights. Returns (the epoch's record,
    whether the fold is done)."""
    config = setup.config
    lr = setup.optimizer.param_groups[0]["lr"]
    started = time.perf_counter()
    train_stats, outputs = _train_and_validate(setup, epoch)
    metrics = classification_metrics(
        softmax(outputs.class_logits.numpy()),
        sigmoid(outputs.malignant_logits.numpy()),
        outputs.targets.numpy(),
        setup.classes,
    )
    metric = metrics["balanced_accuracy"]
    step_scheduler(setup.scheduler, metric)
    improved = _keep_if_best(setup, progress, epoch, metric, run_dir)
    record = _record(setup, progress, epoch, lr, train_stats, outputs, metrics, improved)
    record["seconds"] = time.perf_counter() - started
    summary = progress.summary
    summary["history"] = [*summary["history"], record]
    summary["epochs_run"] = epoch
    stopping = bool(config.patience) and progress.epochs_since_best >= config.patience
    summary["stopped_early"] = stopping and epoch < config.epochs
    return record, stopping or epoch == config.epochs


def _save_state(
    setup: _Fold,
    progress: _Progress,
    epoch: int,
    fold_done: bool,
    run_dir: Path,
    completed: Sequence[dict[str, Any]],
) -> None:
    scaler = setup.scaler
    save_training_state(
        run_dir / STATE_FILE,
        {
            "config": asdict(setup.config),
            "data_fingerprint": setup.fingerprint,
            "fold": setup.fold,
            "epoch": epoch,
            "fold_done": fold_done,
            "completed_folds": list(completed),
            "fold_summary": progress.summary,
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "best_metric": progress.best_metric,
            "epochs_since_best": progress.epochs_since_best,
            "rng": rng_state(),
        },
    )


def _log_epoch(record: dict[str, Any], progress: bool) -> None:
    def fmt(value: float | None, spec: str = ".3f") -> str:
        return "—" if value is None else format(value, spec)

    line = (
        f"fold {record['fold'] + 1}/{record['folds']} epoch {record['epoch']}/{record['epochs']}: "
        f"train loss {fmt(record['train_loss'])} ({record['train_images_per_second']:.1f} img/s)"
        f" · val loss {fmt(record['val_loss'])}"
        f" · bal. acc {fmt(record['val_balanced_accuracy'])}"
        f" (best {fmt(record['best_val_balanced_accuracy'])} @ {record['best_epoch']})"
        f" · malignant AUC {fmt(record['val_malignant_auc'])}"
        f" · lr {record['lr']:.2e} · {record['seconds']:.0f}s"
    )
    logger.info(line)
    if progress:
        tqdm.write(line)


def train_fold(
    config: TrainConfig,
    data: PreparedData,
    fold: int,
    run_dir: Path,
    *,
    device: torch.device,
    callbacks: Sequence[EpochCallback] = (),
    completed: Sequence[dict[str, Any]] = (),
    resume_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train fold ``fold`` to the end (or early stop). Returns its JSON-able summary; its best
    weights are in ``run_dir / summary["weights"]``, its state after every epoch in
    ``run_dir / last.pt``."""
    setup = _setup(config, data, fold, device)
    progress = _start(setup, data) if resume_state is None else _resume(setup, resume_state)
    epochs = tqdm(
        range(progress.next_epoch, config.epochs + 1),
        desc=f"fold {fold + 1}/{setup.n_folds}",
        disable=not config.progress,
        unit="epoch",
        initial=progress.next_epoch - 1,
        total=config.epochs,
    )
    for epoch in epochs:
        if config.patience and progress.epochs_since_best >= config.patience:
            break
        record, fold_done = _run_epoch(setup, progress, epoch, run_dir)
        _save_state(setup, progress, epoch, fold_done, run_dir, completed)
        _log_epoch(record, config.progress)
        # After the state is saved: a callback that raises (a cancelled run) can be resumed.
        for callback in callbacks:
            callback(dict(record))
    if progress.summary["best_epoch"] == 0:
        raise RuntimeError(f"fold {fold + 1}: no epoch produced a validation metric")
    return progress.summary
