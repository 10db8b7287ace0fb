"""One pass over a loader: ``train_one_epoch`` (forward, joint loss, backward, step) and
``collect_outputs`` (logits and targets in eval mode), in the style of torchvision's references.

Mixed precision and channels-last apply on CUDA only; throughput is measured including any
wait for data, so images/s is what the whole pipeline delivers.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ml.engine.data.datasets import Batch
from ml.engine.train.loaders import Loader
from ml.engine.train.loss import JointLoss


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """float16 autocast on CUDA when ``amp``; otherwise nothing."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    """(images, labels, malignant) on ``device``, images channels-last when asked."""
    images, labels, malignant = batch
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True, memory_format=memory_format)
    return images, labels.to(device, non_blocking=True), malignant.to(device, non_blocking=True)


@dataclass(frozen=True)
class StepOptions:
    """How each training step runs: loss scaling (CUDA float16), channels-last images,
    gradient clipping."""

    scaler: torch.amp.GradScaler | None = None
    amp: bool = False
    channels_last: bool = False
    grad_clip: float | None = None


def _backward_and_step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float | None,
) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()  # type: ignore[no-untyped-call]
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()


def train_one_epoch(
    model: nn.Module,
    loader: Loader,
    loss_fn: JointLoss,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    options: StepOptions | None = None,
    max_steps: int | None = None,
    progress: str | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` (with a progress bar of that name when ``progress``). Returns
    mean losses, image count, seconds and images/s (throughput including any wait for data)."""
    options = options or StepOptions()
    model.train()
    totals = {"loss": 0.0, "class_loss": 0.0, "binary_loss": 0.0}
    images_seen, started = 0, time.perf_counter()
    bar = tqdm(loader, desc=progress, leave=False, disable=not progress, unit="batch")
    for step, batch in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        if batch is None:
            continue
        images, labels, malignant = to_device(batch, device, options.channels_last)
        with autocast(device, options.amp):
            malignant_logit, class_logits = model(images)
        loss, class_part, binary_part = loss_fn(malignant_logit, class_logits, labels, malignant)
        _backward_and_step(loss, model, optimizer, options.scaler, options.grad_clip)
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
    """What ``collect_outputs`` collected, on the CPU, in the loader's order."""

    class_logits: torch.Tensor  # float[N, C]
    malignant_logits: torch.Tensor  # float[N]
    targets: torch.Tensor  # int64[N]
    malignant_targets: torch.Tensor  # float[N]
    loss: float | None
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.targets) / self.seconds if self.seconds > 0 else 0.0


def _cat(parts: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else empty


@torch.inference_mode()
def collect_outputs(
    model: nn.Module,
    loader: Loader,
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
    class_logits: list[torch.Tensor] = []
    malignant_logits: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    malignant_targets: list[torch.Tensor] = []
    total_loss, started = 0.0, time.perf_counter()
    for batch in tqdm(loader, desc=description, leave=False, disable=not progress, unit="batch"):
        if batch is None:
            continue
        images, labels, malignant = to_device(batch, device, channels_last)
        with autocast(device, amp):
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
        class_logits=_cat(class_logits, torch.zeros(0, num_classes)),
        malignant_logits=_cat(malignant_logits, torch.zeros(0)),
        targets=_cat(targets, torch.zeros(0, dtype=torch.long)),
        malignant_targets=_cat(malignant_targets, torch.zeros(0)),
        loss=None,
        seconds=seconds,
    )
    if loss_fn is not None and len(outputs.targets):
        outputs.loss = total_loss / len(outputs.targets)
    return outputs
