"""Every hyper-parameter of a training run, in one JSON-able dataclass, and the run folder's
file names. The config is stored in the model's metadata (``asdict``) and, on ``--resume``,
compared with the one the run started with (``state.RESUME_MUST_MATCH``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ml.engine.model.taxonomy import ISIC2019_CLASSES, DiagnosisClass, classes_from_dicts

STATE_FILE = "last.pt"  # the training state after the latest epoch (``--resume``)
MODEL_FILE = "model.pt"  # the chosen, calibrated model

# Called after every epoch with a JSON-able record of it (see ``ml.engine.train.train``).
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run. JSON-able (``asdict``), stored in the model's metadata."""

    # data
    data: str = ""  # the data set's folder (or its CSV file)
    format: str = "ham10000"  # ham10000 | isic2019 | isic-archive | folder
    csv_path: str | None = None  # the labels CSV, when the folder has several
    metadata_path: str | None = None  # isic2019: the metadata CSV with lesion ids
    classes: list[dict[str, Any]] | None = None  # the class list as dicts; None = ISIC 2019's 8
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
    imbalance: str = "sampler"  # sampler | loss | none (see ml.engine.train.weights)
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

    @property
    def eval_batch(self) -> int:
        """The validation and test batch size."""
        return self.eval_batch_size or 2 * self.batch_size

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**values)
