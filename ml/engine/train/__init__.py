"""Training as plain functions, in the style of torchvision's classification references:
every hyper-parameter in ``TrainConfig``, ``train_one_epoch`` / ``collect_outputs``, full training
state for ``--resume``. No Django here: the Django glue calls ``train`` and
``evaluate_on_data`` and passes a callback that records each epoch.

This package is the public face; the parts live in ``config``, ``pretrained`` (where the
network starts), ``weights`` and ``loss`` (imbalance, the joint loss), ``optim``, ``prepared``
and ``loaders`` (data), ``loops``, ``state`` (resume), ``fold`` (one fold), ``run`` (the whole
run) and ``reports`` (evaluating a finished model).
"""

from ml.engine.train.config import MODEL_FILE, STATE_FILE, EpochCallback, TrainConfig
from ml.engine.train.fold import train_fold
from ml.engine.train.loaders import eval_loader, make_loaders
from ml.engine.train.loops import (
    EvalOutputs,
    StepOptions,
    autocast,
    collect_outputs,
    to_device,
    train_one_epoch,
)
from ml.engine.train.loss import JointLoss, make_loss
from ml.engine.train.optim import make_optimizer, make_scheduler
from ml.engine.train.prepared import PreparedData, prepare_data
from ml.engine.train.pretrained import (
    WeightsNotAvailableError,
    build_model,
    find_imagenet_weights,
    imagenet_weight_files,
)
from ml.engine.train.reports import checkpoint_report, evaluate_on_data, outputs_report
from ml.engine.train.run import train
from ml.engine.train.state import (
    load_training_state,
    rng_state,
    save_training_state,
    set_rng_state,
)

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "EpochCallback",
    "EvalOutputs",
    "JointLoss",
    "PreparedData",
    "TrainConfig",
    "WeightsNotAvailableError",
    "autocast",
    "build_model",
    "eval_loader",
    "collect_outputs",
    "checkpoint_report",
    "evaluate_on_data",
    "find_imagenet_weights",
    "imagenet_weight_files",
    "load_training_state",
    "make_loaders",
    "make_loss",
    "make_optimizer",
    "make_scheduler",
    "outputs_report",
    "prepare_data",
    "rng_state",
    "save_training_state",
    "set_rng_state",
    "to_device",
    "train",
    "train_fold",
    "StepOptions",
    "train_one_epoch",
]
