"""(a) The original app's way per upload vs our warm worker, per image.

The original app, for every upload: built a torchvision ResNet50-based SkinSenseNet from
scratch (random initialisation included), ``torch.load``-ed its weights file from disk, loaded
them, switched to eval, decoded the full image, preprocessed it and ran the forward pass. Our
worker loads its model once; per image it runs ``ml.engine.data.images.open_for_model`` (JPEG
draft mode for large images) and ``predict`` (preprocessing, forward, probabilities). Both are
timed on the same real images (``../shared/data/isic-sample``, stored at 224×224, scaled to a
dermoscopy upload's 600×450 and saved as quality-90 JPEGs; else generated JPEGs), on all CPUs::

    .venv/bin/python -m bench.original_vs_warm [--original 5] [--warm 20] [--json out.json]

``run()`` returns the figures as a dict (milliseconds per image, medians; the ratios).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    UPLOAD_SIZE,
    DemoModel,
    add_json_argument,
    add_model_arguments,
    make_demo_model,
    median,
    upload_images,
    write_json,
)
from bench.targets import target

WARM = target("a.warm_ratio")  # warm single-image inference ≤ 1/8 of the original per upload
TARGET_RATIO = WARM.threshold


def original_upload(model: DemoModel, image_path: Path) -> float:
    """One upload the original way; returns its seconds."""
    import torch
    from PIL import Image

    from ml.engine.model.network import SkinSenseNet
    from ml.engine.model.transforms import eval_transform

    started = time.perf_counter()
    network = SkinSenseNet(num_classes=model.num_classes, backbone=model.backbone)
    network.load_state_dict(torch.load(model.state_dict, map_location="cpu"))
    network.eval()
    image = Image.open(image_path).convert("RGB")
    batch = eval_transform(model.preprocessing)(image).unsqueeze(0)
    with torch.no_grad():
        binary_logit, class_logits = network(batch)
        _ = torch.sigmoid(binary_logit), torch.softmax(class_logits, dim=1)
    return time.perf_counter() - started


def warm_times(predictor, paths: list[Path], repeats: int, *, warmup: int = 2) -> list[float]:
    """Seconds per image of open_for_model + predict on an already loaded predictor."""
    from ml.engine.data.images import open_for_model

    for index in range(warmup):
        predictor.predict(open_for_model(paths[index % len(paths)], predictor.preprocessing))
    times = []
    for index in range(repeats):
        path = paths[index % len(paths)]
        started = time.perf_counter()
        image = open_for_model(path, predictor.preprocessing)
        predictor.predict(image)
        times.append(time.perf_counter() - started)
    return times


def _int8_predictor(model: DemoModel, calibration: int):
    """The DEMO model quantised to int8 (calibrated on ``calibration`` real images when the
    ISIC sample is here). For its speed only: random weights say nothing of int8's accuracy,
    which ``manage.py export_onnx --int8`` gates per model."""
    from bench.inference_speed import calibration_images
    from ml.engine.serve import onnx as onnx_engine
    from ml.engine.serve.onnx import OnnxPredictor

    path = onnx_engine.onnx_path_for(model.onnx.parent, model.sha256, variant="int8")
    if not path.is_file():
        onnx_engine.quantize_int8(
            model.onnx, calibration_images(calibration, model.image_size), path
        )
    return OnnxPredictor.from_cache(path, threads=0, verify=False)


def _predictors(model: DemoModel, int8_calibration: int) -> dict:
    """The warm workers' predictors: torch, and ONNX Runtime fp32 (and int8) when exported."""
    from ml.engine.model.checkpoint import load_checkpoint
    from ml.engine.serve.torch_predictor import Predictor

    predictors = {"torch": Predictor(load_checkpoint(model.weights), device="cpu")}
    if model.onnx is not None:
        from ml.engine.serve.onnx import OnnxPredictor

        predictors["onnx"] = OnnxPredictor.from_cache(model.onnx, threads=0)
        if int8_calibration:
            predictors["onnx-int8"] = _int8_predictor(model, int8_calibration)
    return predictors


def _warm_figures(name: str, predictor, paths: list[Path], repeats: int, original_ms: float):
    times = warm_times(predictor, paths, repeats)
    warm_ms = median(times) * 1000
    return {
        "target": name != "onnx-int8",  # int8: speed only, accuracy is gated per model
        "ms": warm_ms,
        "ms_all": [t * 1000 for t in times],
        "ratio": warm_ms / original_ms,
        "speedup": original_ms / warm_ms,
        "met": WARM.met(warm_ms / original_ms),
    }


def run(
    *,
    model: DemoModel | None = None,
    original_repeats: int = 5,
    warm_repeats: int = 20,
    backbone: str = "resnet50",
    image_size: int = 224,
    onnx: bool = True,
    int8_calibration: int = 16,
    log: Callable[[str], None] = print,
) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-original-") as work:
        if model is None:
            model = make_demo_model(work, backbone=backbone, image_size=image_size, onnx=onnx)
        paths = upload_images(max(original_repeats, warm_repeats, 2), work)

        original_upload(model, paths[0])  # warm-up: libraries, allocator, thread pool
        original = [original_upload(model, paths[i % len(paths)]) for i in range(original_repeats)]
        original_ms = median(original) * 1000
        log(f"(a) original per upload: {original_ms:.0f} ms/image (median of {len(original)})")

        result: dict = {
            "backbone": model.backbone,
            "image_size": model.image_size,
            "torch_threads": torch.get_num_threads(),
            "images": len(paths),
            "image_size_px": list(UPLOAD_SIZE),
            "original_ms": original_ms,
            "original_ms_all": [t * 1000 for t in original],
            "target_ratio": TARGET_RATIO,
            "warm": {},
        }
        for name, predictor in _predictors(model, int8_calibration).items():
            result["warm"][name] = _warm_figures(name, predictor, paths, warm_repeats, original_ms)
            warm_ms = result["warm"][name]["ms"]
            log(
                f"(a) warm {name:<9}: {warm_ms:.1f} ms/image, {warm_ms / original_ms:.3f} of the "
                f"original ({original_ms / warm_ms:.1f}× faster)"
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=int, default=5, help="original-way uploads timed")
    parser.add_argument("--warm", type=int, default=20, help="warm images timed")
    add_model_arguments(parser)
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(
        original_repeats=args.original,
        warm_repeats=args.warm,
        backbone=args.backbone,
        image_size=args.image_size,
    )
    write_json(args.json_path, result)


if __name__ == "__main__":
    main()
