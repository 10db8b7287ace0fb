"""Reports on a model: of collected outputs (``outputs_report``), of a finished checkpoint on
samples (``checkpoint_report``) and on a whole data set read into its classes
(``evaluate_on_data``, what the ``evaluate`` command runs). Always through the model's own
eval preset and temperature, as serving uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml.engine.data.checks import check_images, limit_per_class
from ml.engine.data.readers import Sample, SampleSet
from ml.engine.eval.report import report
from ml.engine.model.checkpoint import Checkpoint
from ml.engine.model.taxonomy import DiagnosisClass
from ml.engine.serve.torch_predictor import pick_device
from ml.engine.train.loaders import eval_loader
from ml.engine.train.loops import EvalOutputs, collect_outputs


def outputs_report(
    outputs: EvalOutputs, classes: Sequence[DiagnosisClass], *, temperature: float = 1.0
) -> dict[str, Any]:
    """``ml.engine.eval.report.report`` of collected outputs."""
    return report(
        outputs.class_logits.numpy(),
        outputs.malignant_logits.numpy(),
        outputs.targets.numpy(),
        classes,
        temperature=temperature,
    )


def checkpoint_report(
    checkpoint: Checkpoint,
    samples: Sequence[Sample],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
) -> tuple[dict[str, Any], EvalOutputs]:
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
    outputs = collect_outputs(model, loader, target)
    result = outputs_report(outputs, checkpoint.classes, temperature=checkpoint.temperature)
    result["images_per_second"] = outputs.images_per_second
    return result, outputs


def evaluate_on_data(
    checkpoint: Checkpoint,
    sample_set: SampleSet,
    *,
    max_per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Report on a data set read into the model's classes (``read_samples(...,
    classes=checkpoint.classes)``), unreadable images skipped.

    The report's ``data`` key says what was read and skipped. Evaluating on images the model
    was trained or calibrated on gives optimistic numbers; use a held-out set.
    """
    samples = sample_set.samples
    if max_per_class:
        samples = limit_per_class(samples, max_per_class, seed=seed)
    samples, unreadable = check_images(samples, workers=max(1, num_workers))
    sample_set.samples = samples
    if not samples:
        raise ValueError(f"no usable images in {sample_set.root} ({sample_set.format})")
    result, _ = checkpoint_report(
        checkpoint, samples, batch_size=batch_size, num_workers=num_workers, device=device
    )
    result["data"] = {
        **sample_set.summary(),
        "unreadable": len(unreadable),
        "unreadable_examples": [f"{p.item}: {p.reason}" for p in unreadable[:20]],
    }
    return result
