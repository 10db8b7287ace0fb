"""Training and evaluation as plain functions, in the style of torchvision's classification
references: every hyper-parameter in ``TrainConfig``, ``train_one_epoch`` / ``evaluate``, full
training state for ``--resume``. No Django here: the Django glue calls ``train`` and
``evaluate_on_data`` and passes a callback that records each epoch.

The run, in ``train``:

1. read the data set into the model's class list (``data.datasets``), decode every image once and
   skip the unreadable ones (counted and listed in the model's metadata);
2. hold out a lesion-grouped, stratified test split and make K folds of the rest
   (``ml.engine.data.splits``); the test split is never looked at until the model is chosen;
3. for each fold: build the network (``init``: ImageNet weights from the local cache, random,
   or a checkpoint file), train with augmentation (``model.transforms.train_transform``) and
   class-balanced sampling, validate with the eval preset after every epoch, keep the weights
   with the best validation balanced accuracy, stop early when it stops improving;
4. take the fold whose model validated best, fit the temperature on its validation logits,
   evaluate it once on the test split, and return it as a ``Checkpoint`` whose metadata holds
   the config, the data summary, the splits, every fold's history and the test report.

Imbalance: by default (``imbalance="sampler"``) each training epoch draws images with
probability inversely proportional to their class's frequency (``WeightedRandomSampler``, with
replacement), so every class is seen about equally often: balanced accuracy, the selection
metric, weighs every class equally. ``imbalance="loss"`` instead weights the cross-entropy by
inverse class frequency (and the malignant BCE by negatives/positives); ``"none"`` does neither.

Loss: CE(diagnosis logits, class) + ``binary_loss_weight`` · BCEWithLogits(malignant logit,
class category == malignant), on every batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from ml.engine.data.datasets import (
    Problem,
    Sample,
    SampleSet,
    SkinLesionDataset,
    check_images,
    collate_skipping_failures,
    limit_per_class,
    read_samples,
)
from ml.engine.data.splits import Splits, make_splits
from ml.engine.eval import metrics as evaluation
from ml.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ml.engine.model.network import BACKBONES, SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES, DiagnosisClass, classes_from_dicts
from ml.engine.model.transforms import default_preprocessing, eval_transform, train_transform
from ml.engine.serve.torch_predictor import pick_device

logger = logging.getLogger(__name__)

STATE_FORMAT = "skinsense.training-state"
STATE_VERSION = 1
STATE_FILE = "last.pt"
MODEL_FILE = "model.pt"

EpochCallback = Callable[[dict], None]


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run. JSON-able (``asdict``), stored in the model's metadata."""

    # data
    data: str = ""  # the data set's folder (or its CSV file)
    format: str = "ham10000"  # ham10000 | isic2019 | isic-archive | folder
    csv_path: str | None = None  # the labels CSV, when the folder has several
    metadata_path: str | None = None  # isic2019: the metadata CSV with lesion ids
    classes: list[dict] | None = None  # the class list as dicts; None = the ISIC 2019 eight
    max_per_class: int | None = None  # quick runs: at most this many images of each class
    check_images: bool = True  # decode every image before training; skip unreadable ones
    # splits
    folds: int = 5
    run_folds: int | None = None  # train only the first N folds (None: all)
    test_fraction: float = 0.2
    validation_fraction: float = 0.2  # used when folds == 1
    seed: int = 0
    # model
    backbone: str = "resnet50"
    init: str = "imagenet"  # imagenet | random | PATH (SkinSense checkpoint or ResNet weights)
    image_size: int = 224
    dropout: float = 0.0
    # optimisation
    epochs: int = 30
    batch_size: int = 32
    eval_batch_size: int | None = None  # None: 2 × batch_size
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 3e-4
    momentum: float = 0.9  # sgd
    weight_decay: float = 0.01  # not applied to norm layers and biases
    scheduler: str = "cosine"  # cosine (with linear warm-up) | plateau
    warmup_epochs: int = 1
    min_lr_ratio: float = 0.01  # cosine: the last epoch's lr / lr
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    patience: int = 5  # early stopping: epochs without a better validation metric; 0 = never
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    # imbalance and loss
    imbalance: str = "sampler"  # sampler | loss | none (see the module docstring)
    binary_loss_weight: float = 0.5  # λ in CE + λ·BCE
    # machinery
    num_workers: int = 4
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, CUDA only
    channels_last: bool = True  # CUDA only
    max_steps_per_epoch: int | None = None  # quick runs and benchmarks
    output_dir: str | None = None  # state, fold weights, model.pt, report.json, plots/
    resume: str | None = None  # a training-state file (``output_dir/last.pt``) to continue
    progress: bool = True  # tqdm bars

    def class_list(self) -> list[DiagnosisClass]:
        return classes_from_dicts(self.classes) if self.classes else list(ISIC2019_CLASSES)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**values)


# Options that decide which images land where: a run can only resume with the same ones.
_RESUME_MUST_MATCH = (
    "data",
    "format",
    "csv_path",
    "metadata_path",
    "classes",
    "max_per_class",
    "check_images",
    "folds",
    "test_fraction",
    "validation_fraction",
    "seed",
    "backbone",
    "image_size",
    "imbalance",
)


# --- model ----------------------------------------------------------------------------------


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
    return [(w.name, folder / w.url.rsplit("/", 1)[-1]) for w in ordered]


def _check_torchvision_hash(path: Path) -> None:
    # torchvision file names end in the first hex digits of the file's SHA-256; a partial or
    # corrupt download shows up here rather than as strange training.
    expected = path.stem.rsplit("-", 1)[-1]
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(expected):
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


def _trunk_state(state: dict) -> dict:
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
        checkpoint = load_checkpoint(path)
        if checkpoint.backbone != backbone:
            raise ValueError(f"{path.name} is a {checkpoint.backbone}, not a {backbone}")
        if len(checkpoint.classes) == num_classes:
            model = checkpoint.build_model()
            model.dropout = nn.Dropout(dropout)
        else:
            trunk = {
                k[len("trunk.") :]: v
                for k, v in checkpoint.state_dict.items()
                if k.startswith("trunk.")
            }
            model.trunk.load_state_dict(trunk, strict=True)
        logger.info("initialised from SkinSense checkpoint %s", path.name)
        return model.train()
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} holds no weights this project can read")
    if any(k.startswith("model.") for k in state):  # the original SkinSense layout
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    try:
        model.trunk.load_state_dict(_trunk_state(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path.name} does not fit a {backbone} trunk: {exc}") from None
    logger.info("trunk initialised from %s", path.name)
    return model.train()


# --- loss, optimiser, schedule --------------------------------------------------------------


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
    ):
        super().__init__()
        self.binary_weight = binary_weight
        self.class_loss = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
        self.binary_loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def forward(self, malignant_logit, class_logits, targets, malignant):
        class_part = self.class_loss(class_logits.float(), targets)
        binary_part = self.binary_loss(malignant_logit.float(), malignant)
        return class_part + self.binary_weight * binary_part, class_part, binary_part


def make_loss(
    labels: Sequence[int], classes: Sequence[DiagnosisClass], config: TrainConfig
) -> JointLoss:
    """The joint loss; with ``imbalance="loss"`` weighted by inverse class frequency."""
    class_weights = pos_weight = None
    if config.imbalance == "loss":
        counts = np.bincount(np.asarray(labels), minlength=len(classes)).astype(np.float64)
        present = counts > 0
        # Inverse frequency, scaled so that a uniform data set gets weight 1 everywhere.
        weights = np.zeros(len(classes))
        weights[present] = counts.sum() / (present.sum() * counts[present])
        class_weights = torch.tensor(weights, dtype=torch.float32)
        malignant = evaluation.malignant_targets(labels, classes)
        positives, negatives = malignant.sum(), len(malignant) - malignant.sum()
        if positives and negatives:
            pos_weight = torch.tensor(negatives / positives, dtype=torch.float32)
    elif config.imbalance not in ("sampler", "none"):
        raise ValueError("imbalance must be sampler, loss or none")
    return JointLoss(
        binary_weight=config.binary_loss_weight,
        class_weights=class_weights,
        pos_weight=pos_weight,
        label_smoothing=config.label_smoothing,
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on normalisation weights and biases (as torchvision's
    references do with ``--norm-weight-decay 0``)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    raise ValueError("optimizer must be adamw or sgd")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """Stepped once per epoch: cosine decay after a linear warm-up, or ReduceLROnPlateau on the
    validation balanced accuracy (``scheduler.step(metric)``)."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler != "cosine":
        raise ValueError("scheduler must be cosine or plateau")
    warmup, epochs, floor = config.warmup_epochs, config.epochs, config.min_lr_ratio

    def factor(step: int) -> float:  # step = epochs finished so far
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, epochs - warmup - 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- data -----------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """The run's images: what was read, what was unreadable, and the splits (indices)."""

    sample_set: SampleSet
    unreadable: list[Problem]
    splits: Splits

    @property
    def samples(self) -> list[Sample]:
        return self.sample_set.samples

    @property
    def classes(self) -> list[DiagnosisClass]:
        return self.sample_set.classes

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(f"{sample.path}\t{sample.label}\t{sample.lesion_id}\n".encode())
        return digest.hexdigest()

    def subset(self, indices) -> list[Sample]:
        return [self.samples[i] for i in indices]


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read, check and split the data set named by the config (no model involved)."""
    sample_set = read_samples(
        config.data,
        config.format,
        classes=config.class_list(),
        csv_path=config.csv_path,
        metadata_path=config.metadata_path,
    )
    samples = sample_set.samples
    if config.max_per_class:
        samples = limit_per_class(samples, config.max_per_class, seed=config.seed)
    unreadable: list[Problem] = []
    if config.check_images:
        samples, unreadable = check_images(samples, workers=max(1, config.num_workers))
    if not samples:
        raise ValueError(f"no usable images in {config.data} ({config.format})")
    sample_set.samples = samples
    logger.info(
        "%s (%s): %d images used, %d rows skipped, %d images unreadable; classes %s",
        config.data,
        config.format,
        len(samples),
        len(sample_set.skipped),
        len(unreadable),
        sample_set.class_counts(),
    )
    splits = make_splits(
        samples,
        folds=config.folds,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    return PreparedData(sample_set, unreadable, splits)


def _loader(
    dataset, *, batch_size, num_workers, device, sampler=None, drop_last=False, generator=None
):
    options = {}
    if num_workers > 0:
        # Decoding and augmentation run in worker processes, kept alive across epochs.
        options = {"persistent_workers": True, "prefetch_factor": 4}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last,
        collate_fn=collate_skipping_failures,
        generator=generator,
        **options,
    )


def make_loaders(
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    classes: Sequence[DiagnosisClass],
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[DataLoader, DataLoader]:
    """(train loader, validation loader). Batches are (images float[B, 3, S, S], labels
    int64[B], malignant float32[B]), or None when every image of a batch failed to decode.

    Training draws ``len(train_samples)`` images per epoch through a sampler seeded by
    ``generator`` (class-balanced with ``imbalance="sampler"``, else a shuffle) and augments
    them; validation uses the eval preset, in order.
    """
    preprocessing = default_preprocessing(config.image_size)
    generator = generator or torch.Generator().manual_seed(config.seed)
    train_set = SkinLesionDataset(
        train_samples,
        classes,
        train_transform(preprocessing),
        # Large JPEGs decode at a reduced scale that still leaves room for the crop.
        draft_size=2 * config.image_size,
    )
    labels = np.array([s.label for s in train_samples])
    if config.imbalance == "sampler":
        counts = np.bincount(labels, minlength=len(classes))
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    else:
        weights = torch.ones(len(labels), dtype=torch.double)
    # Equal weights with replacement would repeat images; without replacement it is a shuffle.
    sampler = WeightedRandomSampler(
        weights,
        num_samples=len(labels),
        replacement=config.imbalance == "sampler",
        generator=generator,
    )
    val_set = SkinLesionDataset(val_samples, classes, eval_transform(preprocessing))
    train_loader = _loader(
        train_set,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        device=device,
        sampler=sampler,
        # A last batch of one image would break batch norm; an epoch is a sample anyway.
        drop_last=len(labels) > config.batch_size,
        generator=generator,
    )
    val_loader = _loader(
        val_set,
        batch_size=config.eval_batch_size or 2 * config.batch_size,
        num_workers=config.num_workers,
        device=device,
    )
    return train_loader, val_loader


def eval_loader(
    samples: Sequence[Sample],
    classes: Sequence[DiagnosisClass],
    preprocessing: dict,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> DataLoader:
    """A loader of ``samples`` through the model's eval preset (the one serving uses)."""
    dataset = SkinLesionDataset(samples, classes, eval_transform(preprocessing))
    return _loader(dataset, batch_size=batch_size, num_workers=num_workers, device=device)


# --- the loops ------------------------------------------------------------------------------


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _to_device(batch, device: torch.device, channels_last: bool):
    images, labels, malignant = batch
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True, memory_format=memory_format)
    return images, labels.to(device, non_blocking=True), malignant.to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: JointLoss,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    channels_last: bool = False,
    grad_clip: float | None = None,
    max_steps: int | None = None,
    progress: bool = False,
    description: str = "train",
) -> dict:
    """One pass over ``loader``. Returns mean losses, image count, seconds and images/s
    (throughput including any wait for data)."""
    model.train()
    totals = {"loss": 0.0, "class_loss": 0.0, "binary_loss": 0.0}
    images_seen, started = 0, time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=not progress, unit="batch")
    for step, batch in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        if batch is None:
            continue
        images, labels, malignant = _to_device(batch, device, channels_last)
        with _autocast(device, amp):
            malignant_logit, class_logits = model(images)
        loss, class_part, binary_part = loss_fn(malignant_logit, class_logits, labels, malignant)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        n = len(labels)
        images_seen += n
        totals["loss"] += loss.item() * n
        totals["class_loss"] += class_part.item() * n
        totals["binary_loss"] += binary_part.item() * n
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - started
    means = {k: v / images_seen if images_seen else float("nan") for k, v in totals.items()}
    return {
        **means,
        "images": images_seen,
        "seconds": seconds,
        "images_per_second": images_seen / seconds if seconds > 0 else 0.0,
    }


@dataclass
class EvalOutputs:
    """What ``evaluate`` collected, on the CPU, in the loader's order."""

    class_logits: torch.Tensor  # float[N, C]
    malignant_logits: torch.Tensor  # float[N]
    targets: torch.Tensor  # int64[N]
    malignant_targets: torch.Tensor  # float[N]
    loss: float | None
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.targets) / self.seconds if self.seconds > 0 else 0.0


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    loss_fn: JointLoss | None = None,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
    description: str = "evaluate",
) -> EvalOutputs:
    """Run the model over ``loader`` in eval mode; returns logits and targets (and the mean
    loss when ``loss_fn`` is given)."""
    model.eval()
    class_logits, malignant_logits, targets, malignant_targets = [], [], [], []
    total_loss, started = 0.0, time.perf_counter()
    for batch in tqdm(loader, desc=description, leave=False, disable=not progress, unit="batch"):
        if batch is None:
            continue
        images, labels, malignant = _to_device(batch, device, channels_last)
        with _autocast(device, amp):
            malignant_logit, logits = model(images)
        if loss_fn is not None:
            loss = loss_fn(malignant_logit, logits, labels, malignant)[0]
            total_loss += float(loss) * len(labels)
        class_logits.append(logits.float().cpu())
        malignant_logits.append(malignant_logit.float().cpu())
        targets.append(labels.cpu())
        malignant_targets.append(malignant.cpu())
    seconds = time.perf_counter() - started
    num_classes = getattr(model, "num_classes", 0)
    outputs = EvalOutputs(
        class_logits=torch.cat(class_logits) if class_logits else torch.zeros(0, num_classes),
        malignant_logits=torch.cat(malignant_logits) if malignant_logits else torch.zeros(0),
        targets=torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
        malignant_targets=torch.cat(malignant_targets) if malignant_targets else torch.zeros(0),
        loss=None,
        seconds=seconds,
    )
    if loss_fn is not None and len(outputs.targets):
        outputs.loss = total_loss / len(outputs.targets)
    return outputs


def outputs_report(
    outputs: EvalOutputs, classes: Sequence[DiagnosisClass], *, temperature: float = 1.0
) -> dict:
    """``evaluation.report`` of collected outputs."""
    return evaluation.report(
        outputs.class_logits.numpy(),
        outputs.malignant_logits.numpy(),
        outputs.targets.numpy(),
        classes,
        temperature=temperature,
    )


# --- training state (--resume) --------------------------------------------------------------


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_state[0], "state": list(python_state[1])},
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), None))


def save_training_state(path: str | Path, state: dict) -> None:
    """Write a training state atomically (a crash mid-write leaves the previous one intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save({"format": STATE_FORMAT, "format_version": STATE_VERSION, **state}, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_training_state(path: str | Path) -> dict:
    """Read a training state written by ``save_training_state`` (tensors and plain data only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a SkinSense training state")
    if state.get("format_version") != STATE_VERSION:
        raise ValueError(f"unsupported training state version {state.get('format_version')}")
    return state


def _check_resumable(saved: dict, config: TrainConfig, fingerprint: str, saved_print: str):
    current = asdict(config)
    differing = [k for k in _RESUME_MUST_MATCH if saved.get(k) != current.get(k)]
    if differing:
        raise ValueError(
            "cannot resume: the run was started with different "
            + ", ".join(f"{k} ({saved.get(k)!r} → {current.get(k)!r})" for k in differing)
        )
    if fingerprint != saved_print:
        raise ValueError("cannot resume: the data set's images or labels changed since the run")


# --- one fold, and the whole run ------------------------------------------------------------


def _log_epoch(record: dict, progress: bool) -> None:
    def fmt(value, spec=".3f"):
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


def _nan_to_none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def train_fold(
    config: TrainConfig,
    data: PreparedData,
    fold: int,
    run_dir: Path,
    *,
    device: torch.device,
    callbacks: Sequence[EpochCallback] = (),
    completed: Sequence[dict] = (),
    resume_state: dict | None = None,
) -> dict:
    """Train fold ``fold`` to the end (or early stop). Returns its JSON-able summary; its best
    weights are in ``run_dir / summary["weights"]``, its state after every epoch in
    ``run_dir / last.pt``."""
    classes = data.classes
    train_idx, val_idx = data.splits.folds[fold]
    train_samples, val_samples = data.subset(train_idx), data.subset(val_idx)
    n_folds = config.run_folds or config.folds
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
    scheduler = make_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler("cuda") if amp else None

    weights_name = f"fold{fold}-best.pt"
    summary = {
        "fold": fold,
        "train_images": len(train_samples),
        "validation_images": len(val_samples),
        "best_val_balanced_accuracy": None,
        "best_epoch": 0,
        "epochs_run": 0,
        "stopped_early": False,
        "weights": weights_name,
        "history": [],
    }
    best_metric, epochs_since_best, start_epoch = -math.inf, 0, 1
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        _set_rng_state(resume_state["rng"])
        summary = dict(resume_state["fold_summary"])
        best_metric = resume_state["best_metric"]
        epochs_since_best = resume_state["epochs_since_best"]
        start_epoch = resume_state["epoch"] + 1
        logger.info("fold %d: resuming after epoch %d", fold + 1, resume_state["epoch"])

    preprocessing = default_preprocessing(config.image_size)
    fingerprint = data.fingerprint()
    epochs = tqdm(
        range(start_epoch, config.epochs + 1),
        desc=f"fold {fold + 1}/{n_folds}",
        disable=not config.progress,
        unit="epoch",
        initial=start_epoch - 1,
        total=config.epochs,
    )
    for epoch in epochs:
        if config.patience and epochs_since_best >= config.patience:
            break
        # The sampling order depends only on (seed, fold, epoch): a resumed run draws the same.
        generator.manual_seed(config.seed * 1_000_003 + fold * 10_007 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        train_stats = train_one_epoch(
            model,
            train_loader,
            loss_fn,
            optimizer,
            device,
            scaler=scaler,
            amp=amp,
            channels_last=channels_last,
            grad_clip=config.grad_clip,
            max_steps=config.max_steps_per_epoch,
            progress=config.progress,
            description=f"epoch {epoch}",
        )
        outputs = evaluate(
            model,
            val_loader,
            device,
            loss_fn=loss_fn,
            amp=amp,
            channels_last=channels_last,
            progress=config.progress,
            description="validate",
        )
        metrics = evaluation.classification_metrics(
            evaluation.softmax(outputs.class_logits.numpy()),
            evaluation.sigmoid(outputs.malignant_logits.numpy()),
            outputs.targets.numpy(),
            classes,
        )
        metric = metrics["balanced_accuracy"]
        if config.scheduler == "plateau":
            scheduler.step(metric if metric is not None else 0.0)
        else:
            scheduler.step()
        improved = metric is not None and metric > best_metric
        if improved:
            best_metric, epochs_since_best = metric, 0
            summary["best_val_balanced_accuracy"] = metric
            summary["best_epoch"] = epoch
            best = Checkpoint(
                backbone=config.backbone,
                classes=classes,
                state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                preprocessing=preprocessing,
                metadata={"fold": fold, "epoch": epoch, "val_balanced_accuracy": metric},
            )
            save_checkpoint(best, run_dir / weights_name)
        else:
            epochs_since_best += 1
        record = {
            "fold": fold,
            "folds": n_folds,
            "epoch": epoch,
            "epochs": config.epochs,
            "lr": lr,
            "train_loss": _nan_to_none(train_stats["loss"]),
            "train_class_loss": _nan_to_none(train_stats["class_loss"]),
            "train_binary_loss": _nan_to_none(train_stats["binary_loss"]),
            "train_images": train_stats["images"],
            "train_images_per_second": train_stats["images_per_second"],
            "val_loss": outputs.loss,
            "val_images": len(outputs.targets),
            "val_images_per_second": outputs.images_per_second,
            "val_balanced_accuracy": metric,
            "val_macro_auc": metrics["macro_auc"],
            "val_malignant_auc": metrics.get("malignant_auc"),
            "best_val_balanced_accuracy": summary["best_val_balanced_accuracy"],
            "best_epoch": summary["best_epoch"],
            "improved": improved,
            "seconds": time.perf_counter() - started,
        }
        summary["history"] = [*summary["history"], record]
        summary["epochs_run"] = epoch
        stopping = bool(config.patience) and epochs_since_best >= config.patience
        summary["stopped_early"] = stopping and epoch < config.epochs
        save_training_state(
            run_dir / STATE_FILE,
            {
                "config": asdict(config),
                "data_fingerprint": fingerprint,
                "fold": fold,
                "epoch": epoch,
                "fold_done": stopping or epoch == config.epochs,
                "completed_folds": list(completed),
                "fold_summary": summary,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "best_metric": best_metric,
                "epochs_since_best": epochs_since_best,
                "rng": _rng_state(),
            },
        )
        _log_epoch(record, config.progress)
        # After the state is saved: a callback that raises (a cancelled run) can be resumed.
        for callback in callbacks:
            callback(dict(record))
    if summary["best_epoch"] == 0:
        raise RuntimeError(f"fold {fold + 1}: no epoch produced a validation metric")
    return summary


def _environment(device: torch.device) -> dict:
    info = {
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _short(report: dict) -> dict:
    keys = ("images", "balanced_accuracy", "macro_auc", "malignant_auc", "ece", "ece_calibrated")
    return {k: report.get(k) for k in keys}


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
    if callable(callbacks):
        callbacks = [callbacks]
    callbacks = list(callbacks)
    started = time.perf_counter()
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    state = None
    if config.resume:
        state = load_training_state(config.resume)
        # Finished folds' weights live beside the state file: the run continues in that folder.
        state_dir = Path(config.resume).parent
        if config.output_dir is None:
            config = dataclasses.replace(config, output_dir=str(state_dir))
        elif Path(config.output_dir).resolve() != state_dir.resolve():
            raise ValueError(f"a resumed run continues in {state_dir}, not {config.output_dir}")
    data = data or prepare_data(config)
    if state is not None:
        _check_resumable(state["config"], config, data.fingerprint(), state["data_fingerprint"])

    with contextlib.ExitStack() as stack:
        if config.output_dir:
            run_dir = Path(config.output_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skinsense-")))
        n_folds = min(config.run_folds or config.folds, len(data.splits.folds))
        completed: list[dict] = list(state["completed_folds"]) if state else []
        if state is not None and state["fold_done"]:
            completed.append(state["fold_summary"])
        for fold in range(len(completed), n_folds):
            resuming = state is not None and state["fold"] == fold and not state["fold_done"]
            resume_fold = state if resuming else None
            summary = train_fold(
                config,
                data,
                fold,
                run_dir,
                device=device,
                callbacks=callbacks,
                completed=completed,
                resume_state=resume_fold,
            )
            completed.append(summary)
        return _finish(config, data, completed, run_dir, device, started)


def _finish(config, data, completed, run_dir, device, started) -> Checkpoint:
    """Pick the best fold, calibrate it on its validation split, test it once, package it."""
    classes = data.classes
    best = max(completed, key=lambda s: s["best_val_balanced_accuracy"])
    fold = best["fold"]
    model = load_checkpoint(run_dir / best["weights"]).build_model().to(device)
    channels_last = config.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = config.amp and device.type == "cuda"
    preprocessing = default_preprocessing(config.image_size)
    batch_size = config.eval_batch_size or 2 * config.batch_size

    def run(indices) -> EvalOutputs:
        loader = eval_loader(
            data.subset(indices),
            classes,
            preprocessing,
            batch_size=batch_size,
            num_workers=config.num_workers,
            device=device,
        )
        return evaluate(
            model, loader, device, amp=amp, channels_last=channels_last, progress=config.progress
        )

    validation = run(data.splits.folds[fold][1])
    temperature = evaluation.fit_temperature(
        validation.class_logits.numpy(),
        validation.targets.numpy(),
        validation.malignant_logits.numpy(),
        validation.malignant_targets.numpy(),
    )
    validation_report = outputs_report(validation, classes, temperature=temperature)
    test_report = None
    if len(data.splits.test):
        test = run(data.splits.test)
        test_report = outputs_report(test, classes, temperature=temperature)
        test_report["images_per_second"] = test.images_per_second
        logger.info("held-out test split:\n%s", evaluation.format_report(test_report))

    histories = [r for s in completed for r in s["history"]]
    metadata = {
        "trained_with": "ml.engine.train.run.train",
        "config": asdict(config),
        "data": {
            **data.sample_set.summary(),
            "unreadable": len(data.unreadable),
            "unreadable_examples": [f"{p.item}: {p.reason}" for p in data.unreadable[:20]],
            "malignant_classes": [c.code for c in classes if c.category == "malignant"],
            "label_mapping": "HAM10000 dx: mel→MEL nv→NV bcc→BCC bkl→BKL df→DF vasc→VASC "
            "akiec→AK (dx_isic2019, when present, splits akiec into AK/SCC); "
            "malignant target = class category malignant",
        },
        "splits": data.splits.summary([s.label for s in data.samples], [c.code for c in classes]),
        "folds": completed,
        "selected_fold": fold,
        "temperature": temperature,
        "validation": _short(validation_report),
        # The calibrated malignant probability's ROC on validation data, with thresholds: what a
        # clinic chooses its operating point from.
        "validation_roc": evaluation.operating_curve(
            validation.malignant_targets.numpy(),
            torch.sigmoid(validation.malignant_logits / temperature).numpy(),
        ),
        "test_report": test_report,
        "timing": {
            "seconds": time.perf_counter() - started,
            "train_images_per_second": float(
                np.mean([r["train_images_per_second"] for r in histories])
            ),
            "eval_images_per_second": float(
                np.mean([r["val_images_per_second"] for r in histories])
            ),
        },
        "environment": _environment(device),
    }
    checkpoint = Checkpoint(
        backbone=config.backbone,
        classes=classes,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        preprocessing=preprocessing,
        temperature=temperature,
        metadata=metadata,
    )
    if config.output_dir:
        save_checkpoint(checkpoint, run_dir / MODEL_FILE)
        if test_report is not None:
            (run_dir / "report.json").write_text(json.dumps(test_report, indent=1))
            evaluation.save_plots(test_report, None, None, run_dir / "plots", classes=classes)
    return checkpoint


# --- evaluating a finished model ------------------------------------------------------------


def evaluate_checkpoint(
    checkpoint: Checkpoint,
    samples: Sequence[Sample],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
) -> tuple[dict, EvalOutputs]:
    """Report of a model on samples read with its own class list (``checkpoint.classes``),
    through its own eval preset and temperature. Returns (report, raw outputs)."""
    target = pick_device(device)
    model = checkpoint.build_model().to(target)
    loader = eval_loader(
        samples,
        checkpoint.classes,
        checkpoint.preprocessing,
        batch_size=batch_size,
        num_workers=num_workers,
        device=target,
    )
    outputs = evaluate(model, loader, target)
    result = outputs_report(outputs, checkpoint.classes, temperature=checkpoint.temperature)
    result["images_per_second"] = outputs.images_per_second
    return result, outputs


def evaluate_on_data(
    checkpoint: Checkpoint,
    root: str | Path,
    format: str,
    *,
    csv_path: str | Path | None = None,
    metadata_path: str | Path | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
) -> dict:
    """Read a data set into the model's classes, skip unreadable images, and report on it.

    The report's ``data`` key says what was read and skipped. Evaluating on images the model
    was trained or calibrated on gives optimistic numbers; use a held-out set.
    """
    sample_set = read_samples(
        root,
        format,
        classes=checkpoint.classes,
        csv_path=csv_path,
        metadata_path=metadata_path,
    )
    samples = sample_set.samples
    if max_per_class:
        samples = limit_per_class(samples, max_per_class, seed=seed)
    samples, unreadable = check_images(samples, workers=max(1, num_workers))
    sample_set.samples = samples
    if not samples:
        raise ValueError(f"no usable images in {root} ({format})")
    result, _ = evaluate_checkpoint(
        checkpoint, samples, batch_size=batch_size, num_workers=num_workers, device=device
    )
    result["data"] = {
        **sample_set.summary(),
        "unreadable": len(unreadable),
        "unreadable_examples": [f"{p.item}: {p.reason}" for p in unreadable[:20]],
    }
    return result


__all__ = [
    "EvalOutputs",
    "JointLoss",
    "PreparedData",
    "TrainConfig",
    "WeightsNotAvailableError",
    "build_model",
    "eval_loader",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_on_data",
    "find_imagenet_weights",
    "load_training_state",
    "make_loaders",
    "make_loss",
    "make_optimizer",
    "make_scheduler",
    "prepare_data",
    "save_training_state",
    "train",
    "train_fold",
    "train_one_epoch",
]
