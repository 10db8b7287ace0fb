"""int8 for ONNX Runtime: static QDQ quantisation, and the gate that decides it may be offered.

No Django and no torch here. ``quantize_int8`` makes ``<sha256>.int8.onnx``, calibrated on real,
preprocessed images (uint8 activations, per-channel int8 weights: the u8s8 kernels of x86 VNNI);
``int8_gate`` compares it with fp32 on held-out images: int8 is offered when its
balanced accuracy is at most ``INT8_TOLERANCE`` (one point) below fp32's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from ml.engine.files import atomic_path
from ml.engine.serve.onnx.predict import OnnxPredictor
from ml.engine.serve.onnx.preprocess import as_image, open_rgb, preprocess_image
from ml.engine.serve.onnx.quiet import QUANTIZER_MODULES, quiet
from ml.engine.serve.onnx.sidecar import INPUT_NAME, read_sidecar

INT8_TOLERANCE = 0.01  # the most balanced accuracy int8 may lose against fp32 and be offered

T = TypeVar("T")
HeadOutputs = tuple[ArrayLike, ArrayLike]  # (malignant float[N], classes float[N, C])


class LabelledImage(Protocol):
    """A held-out image, as the data readers' ``Sample``: its file and class index."""

    @property
    def path(self) -> Path: ...

    @property
    def label(self) -> int: ...


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _calibration_reader(
    images: Sequence[Image.Image | str | Path], preprocessing: Mapping[str, Any], batch_size: int
) -> Any:
    """An onnxruntime CalibrationDataReader feeding ``images`` preprocessed, in batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime is untyped
        def __init__(self) -> None:
            self._batches = _batches(images, batch_size)

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            chunk = next(self._batches, None)
            if chunk is None:
                return None
            arrays = [preprocess_image(as_image(item), preprocessing) for item in chunk]
            return {INPUT_NAME: np.stack(arrays)}

    return Reader()


def quantize_int8(
    fp32_path: str | Path,
    calibration_images: Iterable[Image.Image | str | Path],
    out_path: str | Path,
    *,
    preprocessing: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    reduce_range: bool = False,
) -> Path:
    """Static QDQ int8 quantisation of the fp32 model, calibrated on real images.

    ``calibration_images`` are PIL images or image paths, preprocessed with the eval preset
    (``preprocessing``, by default the sidecar's) and fed in batches of ``batch_size``; the
    activation ranges are their min/max. Activations uint8, weights int8 per output channel:
    the u8s8 kernels of x86 VNNI. ``reduce_range`` (7-bit weights) avoids saturation on x86
    without VNNI (AVX2 only). Conv/BatchNorm fusion and shape inference run first
    (``quant_pre_process``). Writes ``out_path`` atomically; returns it.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    preprocessing = preprocessing or read_sidecar(fp32_path)["preprocessing"]
    images = list(calibration_images)
    if not images:
        raise ValueError("int8 calibration needs at least one image")
    reader = _calibration_reader(images, preprocessing, batch_size)

    out_path = Path(out_path)
    with (
        tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize.") as work,
        quiet(QUANTIZER_MODULES),
        atomic_path(out_path) as temporary,
    ):
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            prepared,
            temporary,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return out_path


def gate_from_outputs(
    targets: ArrayLike,
    fp32: HeadOutputs,
    int8: HeadOutputs,
    *,
    tolerance: float = INT8_TOLERANCE,
) -> dict[str, Any]:
    """The int8 gate from both models' (malignant float[N], classes float[N, C]) probabilities
    on the same labelled images (``targets`` int[N] class indices).

    ``offered`` when int8's ISIC balanced accuracy is at most ``tolerance`` below fp32's.
    """
    from ml.engine.eval.metrics import balanced_accuracy

    labels = np.asarray(targets, dtype=int)
    fp32_malignant, fp32_classes = (np.asarray(a, dtype=np.float64) for a in fp32)
    int8_malignant, int8_classes = (np.asarray(a, dtype=np.float64) for a in int8)
    fp32_ba = balanced_accuracy(labels, fp32_classes)
    int8_ba = balanced_accuracy(labels, int8_classes)
    drop = fp32_ba - int8_ba
    difference = max(
        float(np.abs(fp32_classes - int8_classes).max()),
        float(np.abs(fp32_malignant - int8_malignant).max()),
    )
    return {
        "offered": bool(drop <= tolerance + 1e-12),  # "at most one point" counts exactly one
        "fp32_balanced_accuracy": float(fp32_ba),
        "int8_balanced_accuracy": float(int8_ba),
        "balanced_accuracy_drop": float(drop),
        "tolerance": tolerance,
        "images": len(labels),
        "max_abs_probability_difference": difference,
        "top_class_agreement": float(
            (fp32_classes.argmax(axis=1) == int8_classes.argmax(axis=1)).mean()
        ),
    }


def int8_gate(
    fp32_path: str | Path,
    int8_path: str | Path,
    metadata: Mapping[str, Any],
    samples: Sequence[LabelledImage],
    *,
    batch_size: int = 32,
    threads: int = 0,
    tolerance: float = INT8_TOLERANCE,
) -> dict[str, Any]:
    """Balanced accuracy of the fp32 and int8 models on held-out labelled images, and whether
    int8 may be offered (see ``gate_from_outputs``).

    ``samples`` have ``path`` and ``label`` (a class index), as the data readers' ``Sample``;
    ``metadata`` is the sidecar's (classes, preprocessing, temperature).
    """
    if not samples:
        raise ValueError("the int8 gate needs held-out images")
    models = {
        "fp32": OnnxPredictor(fp32_path, metadata, threads=threads),
        "int8": OnnxPredictor(int8_path, metadata, threads=threads),
    }
    outputs: dict[str, tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]] = {
        name: ([], []) for name in models
    }
    for chunk in _batches(list(samples), batch_size):
        batch = models["fp32"].preprocess([open_rgb(s.path) for s in chunk])
        for name, model in models.items():
            malignant, classes = model.probabilities(batch)
            outputs[name][0].append(malignant)
            outputs[name][1].append(classes)
    joined = {name: (np.concatenate(m), np.concatenate(c)) for name, (m, c) in outputs.items()}
    return gate_from_outputs(
        [s.label for s in samples], joined["fp32"], joined["int8"], tolerance=tolerance
    )
