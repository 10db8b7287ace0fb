"""The optimiser and the learning-rate schedule, as torchvision's classification references
build them: AdamW or SGD without weight decay on norm weights and biases, and a per-epoch
cosine decay after a linear warm-up, or ReduceLROnPlateau on the validation balanced accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from ml.engine.train.config import TrainConfig

Scheduler = LRScheduler | ReduceLROnPlateau


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on normalisation weights and biases (as torchvision's
    references do with ``--norm-weight-decay 0``)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    raise ValueError("optimizer must be adamw or sgd")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Scheduler:
    """Stepped once per epoch: cosine decay after a linear warm-up, or ReduceLROnPlateau on the
    validation balanced accuracy (``scheduler.step(metric)``, see ``step_scheduler``)."""
    if config.scheduler == "plateau":
        return ReduceLROnPlateau(
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

    return LambdaLR(optimizer, factor)


def step_scheduler(scheduler: Scheduler, metric: float | None) -> None:
    """The end-of-epoch step: a plateau schedule gets the validation metric (0 when undefined)."""
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(metric if metric is not None else 0.0)
    else:
        scheduler.step()
