"""ONNX Runtime CPU inference: export, int8 quantisation, and a Predictor that needs no torch.

No Django here. The pieces, in the order a model goes through them:

- ``export_onnx`` turns a SkinSense checkpoint into ``<sha256>.onnx`` (fp32, dynamic batch axis,
  outputs ``malignant_logit`` float[N] and ``class_logits`` float[N, C]) with torch's dynamo
  exporter, and writes the JSON sidecar ``<sha256>.json`` next to it: the class list,
  preprocessing, temperature and thresholds, so serving never has to unpickle the checkpoint.
  Both files are named by the weights' SHA-256 and written atomically; a second export of the
  same weights reuses them.
- ``quantize_int8`` makes ``<sha256>.int8.onnx``: static QDQ quantisation calibrated on real,
  preprocessed images (uint8 activations, per-channel int8 weights: the u8s8 kernels of x86
  VNNI), and ``evaluate_int8_gate`` decides whether the int8 model may be offered: its balanced
  accuracy on held-out images may be at most one point below fp32's.
- ``OnnxPredictor`` answers like ``serve.torch_predictor.Predictor`` (same ``PredictionResult``,
  read by the same ``interpret``) from the .onnx file and its sidecar. Preprocessing is NumPy + PIL,
  equal to the eval preset of ``model.transforms`` (see ``preprocess_image``), so a worker that only
  serves ONNX never imports torch; only ``export_onnx`` (and the rare preset NumPy does not
  cover) imports it, lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from ml.engine.model.taxonomy import classes_from_dicts
from ml.engine.serve.base import BatchPredictor

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = "skinsense.onnx"
SIDECAR_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("malignant_logit", "class_logits")
INT8_TOLERANCE = 0.01  # the most balanced accuracy int8 may lose against fp32 and be offered
EXPORT_TOLERANCE = 1e-3  # the largest logit difference, ONNX Runtime vs torch, of an export

# Modules whose warnings (deprecations of exporter internals) are not ours to fix: silenced while
# exporting or quantising, so they neither clutter a command's output nor fail the tests.
_EXPORTER_MODULES = r"(torch\.onnx|torch\._?export|torch\.fx|onnxscript|onnx_ir|onnx)(\.|$)"
_QUANTIZER_MODULES = r"(onnxruntime|onnx)(\.|$)"
# Loggers that narrate every optimisation pass at INFO; a command's output keeps their warnings.
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "onnxruntime.quantization")


class OnnxModelMismatchError(RuntimeError):
    """An .onnx file is not the one its sidecar recorded (or has no sidecar)."""


# --- files ----------------------------------------------------------------------------------


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file (as ``model.checkpoint.sha256_file``, without torch)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def onnx_path_for(cache_dir: str | Path, sha256: str, *, variant: str = "fp32") -> Path:
    """Where the cache keeps the model of these weights: ``<sha256>.onnx`` or ``….int8.onnx``."""
    if variant not in ("fp32", "int8"):
        raise ValueError(f"unknown variant {variant!r}; fp32 or int8")
    suffix = ".onnx" if variant == "fp32" else ".int8.onnx"
    return Path(cache_dir) / f"{sha256}{suffix}"


def sidecar_path(onnx_path: str | Path) -> Path:
    """``<sha256>.json`` beside ``<sha256>.onnx`` and ``<sha256>.int8.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name.split(".")[0] + ".json")


def variant_of(onnx_path: str | Path) -> str:
    return "int8" if Path(onnx_path).name.endswith(".int8.onnx") else "fp32"


def read_sidecar(onnx_path: str | Path) -> dict:
    path = sidecar_path(onnx_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OnnxModelMismatchError(f"{Path(onnx_path).name} has no sidecar {path.name}")
    if data.get("format") != SIDECAR_FORMAT or data.get("format_version") != SIDECAR_VERSION:
        raise OnnxModelMismatchError(f"{path.name} is not a version {SIDECAR_VERSION} sidecar")
    return data


def write_sidecar(onnx_path: str | Path, data: dict) -> Path:
    """Write (replace) the sidecar of ``onnx_path`` atomically."""
    path = sidecar_path(onnx_path)
    with _atomic_target(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


@contextlib.contextmanager
def _atomic_target(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``, moved onto it when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


# --- export ---------------------------------------------------------------------------------


def export_onnx(checkpoint_path: str | Path, sha256: str, cache_dir: str | Path) -> Path:
    """Export the checkpoint's SkinSenseNet to ``cache_dir/<sha256>.onnx`` (fp32), with its
    sidecar; reuse both when they are already there.

    The graph takes ``image`` float[N, 3, S, S] (N dynamic; S from the checkpoint's
    preprocessing) and returns ``malignant_logit`` float[N] and ``class_logits`` float[N, C].
    The checkpoint file must have the given SHA-256 (``WeightsMismatchError`` otherwise), and
    the exported graph must reproduce the torch model's logits within ``EXPORT_TOLERANCE``.
    """
    final = onnx_path_for(cache_dir, sha256)
    if final.is_file() and sidecar_path(final).is_file():
        return final

    import torch

    from ml.engine.model.checkpoint import load_checkpoint
    from ml.engine.serve.torch_predictor import WeightsMismatchError

    actual = sha256_of(checkpoint_path)
    if actual != sha256:
        raise WeightsMismatchError(
            f"weights file {Path(checkpoint_path).name} has SHA-256 {actual[:12]}…, expected "
            f"{sha256[:12]}…; refusing to export it"
        )
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build_model().eval()
    size = int(checkpoint.preprocessing["image_size"])
    # Batch 2, not 1: torch.export specialises a dimension whose example size is 1.
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), _quiet_loggers():
        warnings.filterwarnings("ignore", module=_EXPORTER_MODULES)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"x": {0: batch}},
            optimize=True,
            verbose=False,
        )
    with _atomic_target(final) as temporary:
        with warnings.catch_warnings(), _quiet_loggers():
            warnings.filterwarnings("ignore", module=_EXPORTER_MODULES)
            program.save(temporary, external_data=False)
        with torch.inference_mode():
            expected = [t.numpy() for t in model(example)]
        session = create_session(temporary, threads=0)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.numpy()})
        difference = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
        if not difference <= EXPORT_TOLERANCE:
            raise RuntimeError(
                f"the exported graph differs from the model by {difference:.2g} in its logits"
            )
        del session
        onnx_sha256 = sha256_of(temporary)
        write_sidecar(
            final,
            {
                "format": SIDECAR_FORMAT,
                "format_version": SIDECAR_VERSION,
                "weights_sha256": sha256,
                "backbone": checkpoint.backbone,
                "classes": [c.as_dict() for c in checkpoint.classes],
                "preprocessing": dict(checkpoint.preprocessing),
                "temperature": float(checkpoint.temperature),
                "thresholds": dict(checkpoint.thresholds),
                "fp32": {
                    "file": final.name,
                    "sha256": onnx_sha256,
                    "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
                    "opset": _opset(temporary),
                    "max_abs_logit_difference": difference,
                },
            },
        )
    logger.info("exported %s (logits within %.2g of torch)", final.name, difference)
    return final


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


# --- preprocessing without torch ------------------------------------------------------------


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic with a = -0.5 (as PIL and torch's antialiased bicubic), torch's operation order.
    a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


# interpolation -> (filter, interp_size): what torch's antialiased uint8 resize uses.
_FILTERS = {"bilinear": (_bilinear, 2), "bicubic": (_bicubic, 4)}


def _resize_weights(
    in_size: int, out_size: int, interpolation: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Torch's antialiased uint8 resampling along one axis, as integers.

    Returns (indices int64[out, K], weights int32[out, K], precision): output i is
    ``clip((2**(precision-1) + Σ_k weights[i, k]·input[indices[i, k]]) >> precision, 0, 255)``.
    Mirrors ``_compute_index_ranges_int16_weights`` of ATen's UpSampleKernel.cpp step by step in
    float64 (the same operations in the same order), so the integers, and so the pixels, are
    torch's exactly.
    """
    filter_fn, interp_size = _FILTERS[interpolation]
    scale = in_size / out_size
    support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    max_size = int(math.ceil(support)) * 2 + 1
    center = scale * (np.arange(out_size, dtype=np.int64) + 0.5)
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xsize = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    xsize = np.clip(xsize, 0, max_size)
    j = np.arange(max_size, dtype=np.int64)
    inside = j[None, :] < xsize[:, None]
    weights = filter_fn(((j[None, :] + xmin[:, None]) - center[:, None] + 0.5) * invscale)
    weights = np.where(inside, weights, 0.0)
    total = np.cumsum(weights, axis=1)[:, -1]  # sequential sums, as the C loop adds
    weights = weights / np.where(total == 0.0, 1.0, total)[:, None]  # a zero total: left as is
    weights_max = float(weights.max())
    precision = 0
    while precision < 22:
        if int(0.5 + weights_max * (1 << (precision + 1))) >= (1 << 15):
            break
        precision += 1
    scaled = weights * (1 << precision)
    integers = np.where(scaled < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled))
    indices = np.where(inside, xmin[:, None] + j[None, :], xmin[:, None])
    return indices, integers.astype(np.int32), precision


def _resample(pixels: np.ndarray, axis: int, indices, weights, precision: int) -> np.ndarray:
    """uint8[H, W, 3] resampled along ``axis`` at the rows of ``indices``/``weights``."""
    shape = [1, 1, 1]
    shape[axis] = len(indices)
    acc = np.full(
        [len(indices) if a == axis else s for a, s in enumerate(pixels.shape)],
        1 << (precision - 1),
        dtype=np.int32,
    )
    for k in range(indices.shape[1]):
        column = weights[:, k]
        if not column.any():
            continue
        taken = np.take(pixels, indices[:, k], axis=axis).astype(np.int32)
        acc += taken * column.reshape(shape)
    return np.clip(acc >> precision, 0, 255).astype(np.uint8)


def _crop_window(length: int, crop: int) -> tuple[int, int]:
    """torchvision's centre crop along one axis: (first position, crop) in the resized image;
    a negative first position means zero padding before the image (crop larger than it)."""
    if crop > length:
        return -((crop - length) // 2), crop
    return int(round((length - crop) / 2.0)), crop


def _resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``size`` (long side truncated)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def preprocess_image(image: Image.Image, preprocessing: dict) -> np.ndarray:
    """PIL image -> float32[3, S, S]: the eval preset of ``model.transforms.eval_transform`` in
    NumPy (resize the shorter side with antialiasing, centre crop, scale to [0, 1], normalise).

    Bilinear and bicubic presets reproduce torch's uint8 resize exactly (the path torchvision
    takes on x86 with AVX2 and on ARM); only the output window of the crop is computed. Another
    interpolation falls back to torchvision itself (and so imports torch).
    """
    interpolation = preprocessing.get("interpolation", "bilinear")
    rgb = image.convert("RGB")
    if interpolation not in _FILTERS:
        from ml.engine.model.transforms import eval_transform

        return eval_transform(preprocessing)(rgb).numpy()
    pixels = np.asarray(rgb, dtype=np.uint8)
    in_h, in_w = pixels.shape[:2]
    out_h, out_w = _resized_size(in_h, in_w, int(preprocessing["resize_size"]))
    crop = int(preprocessing["image_size"])
    top, _ = _crop_window(out_h, crop)
    left, _ = _crop_window(out_w, crop)
    rows = np.arange(top, top + crop)
    columns = np.arange(left, left + crop)
    valid_rows = rows[(rows >= 0) & (rows < out_h)]
    valid_columns = columns[(columns >= 0) & (columns < out_w)]

    if out_w != in_w:  # horizontal first, as torch does
        indices, weights, precision = _resize_weights(in_w, out_w, interpolation)
        needed_rows = valid_rows
        if out_h != in_h:
            v_indices, v_weights, v_precision = _resize_weights(in_h, out_h, interpolation)
            v_indices, v_weights = v_indices[valid_rows], v_weights[valid_rows]
            first, last = int(v_indices.min()), int(v_indices.max()) + 1
            needed_rows = np.arange(first, last)
        pixels = _resample(
            pixels[needed_rows], 1, indices[valid_columns], weights[valid_columns], precision
        )
        if out_h != in_h:
            pixels = _resample(pixels, 0, v_indices - first, v_weights, v_precision)
    elif out_h != in_h:
        indices, weights, precision = _resize_weights(in_h, out_h, interpolation)
        pixels = _resample(
            pixels[:, valid_columns], 0, indices[valid_rows], weights[valid_rows], precision
        )
    else:
        pixels = pixels[valid_rows][:, valid_columns]

    window = np.zeros((crop, crop, 3), dtype=np.uint8)  # zero padding where the crop is larger
    row_offset, column_offset = int(valid_rows[0] - top), int(valid_columns[0] - left)
    window[
        row_offset : row_offset + pixels.shape[0], column_offset : column_offset + pixels.shape[1]
    ] = pixels
    scaled = window.astype(np.float32) / np.float32(255)
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file as RGB with its EXIF orientation applied (as ``decode_rgb``)."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _as_image(item) -> Image.Image:
    return item if isinstance(item, Image.Image) else open_rgb(item)


# --- the predictor --------------------------------------------------------------------------


def create_session(path: str | Path, *, threads: int) -> ort.InferenceSession:
    """The serving session: CPU, ``threads`` intra-op threads (0: ONNX Runtime's default), one
    inter-op thread, sequential execution, every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)  # 0: ONNX Runtime's default (physical cores)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class OnnxPredictor(BatchPredictor):
    """An ONNX Runtime model ready to answer, as ``ml.engine.serve.torch_predictor.Predictor`` does.

    Build with ``OnnxPredictor.from_cache(onnx_path)`` (reads and checks the sidecar) or from a
    path and a metadata dict (``classes``, ``preprocessing``, ``temperature``, ``thresholds``).
    ``threads`` is ONNX Runtime's intra-op thread count (0: its default).
    """

    def __init__(self, onnx_path: str | Path, metadata: dict, *, threads: int = 0) -> None:
        self.path = Path(onnx_path)
        self.variant = variant_of(self.path)
        self.classes = classes_from_dicts(metadata["classes"])
        self.codes = [c.code for c in self.classes]
        self.temperature = float(metadata.get("temperature") or 1.0) or 1.0
        self.thresholds = {
            "malignant": 0.5,
            "confidence": 0.5,
            **(metadata.get("thresholds") or {}),
        }
        self.preprocessing = dict(metadata["preprocessing"])
        self.session = create_session(self.path, threads=threads)

    @classmethod
    def from_cache(
        cls, onnx_path: str | Path, *, threads: int = 0, verify: bool = True
    ) -> OnnxPredictor:
        """The model at ``onnx_path`` with the metadata of its sidecar; with ``verify``, the
        file's SHA-256 must be the one the sidecar recorded for it."""
        sidecar = read_sidecar(onnx_path)
        variant = variant_of(onnx_path)
        if verify:
            recorded = (sidecar.get(variant) or {}).get("sha256")
            if recorded is None:
                raise OnnxModelMismatchError(f"the sidecar records no {variant} model")
            actual = sha256_of(onnx_path)
            if actual != recorded:
                raise OnnxModelMismatchError(
                    f"{Path(onnx_path).name} has SHA-256 {actual[:12]}…, its sidecar records "
                    f"{recorded[:12]}…; refusing to load it"
                )
        return cls(onnx_path, sidecar, threads=threads)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> float32[N, 3, S, S]."""
        return np.stack([preprocess_image(image, self.preprocessing) for image in images])

    def logits(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32[N, 3, S, S] -> (malignant logit float32[N], class logits float32[N, C])."""
        malignant, classes = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return malignant, classes

    def probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Temperature-scaled (malignant float64[N], classes float64[N, C]) probabilities."""
        malignant, classes = self.logits(batch)
        t = np.float32(self.temperature)
        return _sigmoid(malignant / t), _softmax(classes / t)

    def batch_probabilities(self, images: Sequence[Image.Image]) -> tuple[list, list]:
        malignant, probabilities = self.probabilities(self.preprocess(images))
        return malignant.tolist(), probabilities.tolist()


_cache: dict[tuple[str, int], OnnxPredictor] = {}
_cache_lock = threading.Lock()


def get_onnx_predictor(onnx_path: str | Path, *, threads: int = 0) -> OnnxPredictor:
    """The process-wide OnnxPredictor for this file: loaded (and verified) once, then reused."""
    key = (str(Path(onnx_path).resolve()), int(threads))
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is None:
            predictor = OnnxPredictor.from_cache(onnx_path, threads=threads)
            _cache.clear()  # one active model per worker
            _cache[key] = predictor
        return predictor


# --- int8 -----------------------------------------------------------------------------------


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def quantize_int8(
    fp32_path: str | Path,
    calibration_images: Iterable,
    out_path: str | Path,
    *,
    preprocessing: dict | None = None,
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
        CalibrationDataReader,
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

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = _batches(images, batch_size)

        def get_next(self) -> dict | None:
            chunk = next(self._batches, None)
            if chunk is None:
                return None
            arrays = [preprocess_image(_as_image(item), preprocessing) for item in chunk]
            return {INPUT_NAME: np.stack(arrays)}

    out_path = Path(out_path)
    with (
        tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize.") as work,
        warnings.catch_warnings(),
        _quiet_loggers(),
        _atomic_target(out_path) as temporary,
    ):
        warnings.filterwarnings("ignore", module=_QUANTIZER_MODULES)
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            prepared,
            temporary,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return out_path


def gate_from_outputs(
    targets,
    fp32: tuple[np.ndarray, np.ndarray],
    int8: tuple[np.ndarray, np.ndarray],
    *,
    tolerance: float = INT8_TOLERANCE,
) -> dict:
    """The int8 gate from both models' (malignant float[N], classes float[N, C]) probabilities
    on the same labelled images (``targets`` int[N] class indices).

    ``offered`` when int8's ISIC balanced accuracy is at most ``tolerance`` below fp32's.
    """
    from ml.engine.eval.metrics import balanced_accuracy

    targets = np.asarray(targets, dtype=int)
    fp32_malignant, fp32_classes = (np.asarray(a, dtype=np.float64) for a in fp32)
    int8_malignant, int8_classes = (np.asarray(a, dtype=np.float64) for a in int8)
    fp32_ba = balanced_accuracy(targets, fp32_classes)
    int8_ba = balanced_accuracy(targets, int8_classes)
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
        "images": len(targets),
        "max_abs_probability_difference": difference,
        "top_class_agreement": float(
            (fp32_classes.argmax(axis=1) == int8_classes.argmax(axis=1)).mean()
        ),
    }


def evaluate_int8_gate(
    fp32_path: str | Path,
    int8_path: str | Path,
    metadata: dict,
    samples: Sequence,
    *,
    batch_size: int = 32,
    threads: int = 0,
    tolerance: float = INT8_TOLERANCE,
) -> dict:
    """Balanced accuracy of the fp32 and int8 models on held-out labelled images, and whether
    int8 may be offered (see ``gate_from_outputs``).

    ``samples`` have ``path`` and ``label`` (a class index), as ``ml.engine.data.datasets.Sample``;
    ``metadata`` is the sidecar's (classes, preprocessing, temperature).
    """
    if not samples:
        raise ValueError("the int8 gate needs held-out images")
    models = {
        "fp32": OnnxPredictor(fp32_path, metadata, threads=threads),
        "int8": OnnxPredictor(int8_path, metadata, threads=threads),
    }
    outputs: dict[str, tuple[list, list]] = {name: ([], []) for name in models}
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
