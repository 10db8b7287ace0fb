"""What the benchmarks share: real images, a demo model on disk, statistics, the machine.

Importing this module does not import torch (the worker-memory and worker-layout children
measure processes that must not have it); ``make_demo_model`` imports it when called.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "isic-sample"

UPLOAD_SIZE = (600, 450)  # a HAM10000 original's size, what a dermatoscope's upload looks like
RESNET50_GFLOP = 8.17  # per 224×224 image (inference_speed measures it)


def real_image_paths(count: int, *, workdir: str | Path | None = None) -> list[Path]:
    """``count`` distinct dermoscopy JPEGs: the ISIC sample's (a fixed, spread-out choice), else
    generated lesion-like 600×450 JPEGs written to ``workdir`` (needed then)."""
    paths = sorted((SAMPLE / "images").glob("*.jpg")) if (SAMPLE / "images").is_dir() else []
    if paths:
        step = max(1, len(paths) // max(count, 1))
        chosen = paths[::step][:count]
        return chosen + paths[: count - len(chosen)] if len(chosen) < count else chosen
    if workdir is None:
        raise ValueError("no ISIC sample here: generated images need a workdir")
    folder = Path(workdir) / "generated-images"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(count):
        path = folder / f"generated-{index:03d}.jpg"
        path.write_bytes(generated_jpeg(index))
        out.append(path)
    return out


def upload_images(
    count: int, workdir: str | Path, *, size: tuple[int, int] = UPLOAD_SIZE, quality: int = 90
) -> list[Path]:
    """``count`` distinct JPEGs the size of a dermoscopy upload (HAM10000's originals are
    600×450): the ISIC sample's real images (stored at 224×224) scaled up to ``size`` (bicubic,
    aspect kept, centre crop) and saved at ``quality``, else generated ones; in ``workdir``."""
    from PIL import Image

    folder = Path(workdir) / f"uploads-{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, source in enumerate(real_image_paths(count, workdir=workdir)):
        path = folder / f"{index:03d}-{source.stem}.jpg"
        with Image.open(source) as image:
            fit_jpeg(image, size).save(path, "JPEG", quality=quality)
        out.append(path)
    return out


def fit_jpeg(image, size: tuple[int, int]):
    """``image`` as RGB scaled (bicubic) to cover ``size``, centre-cropped to it."""
    from PIL import Image

    width, height = size
    scale = max(width / image.width, height / image.height)
    scaled = image.convert("RGB").resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def images_are_real() -> bool:
    return (SAMPLE / "images").is_dir() and any((SAMPLE / "images").glob("*.jpg"))


def generated_jpeg(seed: int, size: tuple[int, int] = (600, 450), quality: int = 90) -> bytes:
    """A lesion-like JPEG: a dark blurred blob on noisy skin."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    width, height = size
    skin = tuple(int(v) for v in rng.integers([170, 110, 90], [240, 180, 160]))
    image = Image.new("RGB", size, skin)
    box = [width // 4, height // 4, 3 * width // 4, 3 * height // 4]
    ImageDraw.Draw(image).ellipse(box, fill=tuple(int(v) for v in rng.integers(30, 140, 3)))
    noise = rng.normal(0, 12, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=float) + noise, 0, 255).astype("uint8")
    image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@dataclass
class DemoModel:
    """A SkinSense checkpoint with random weights on disk, and (optionally) its ONNX export."""

    backbone: str
    image_size: int
    weights: Path  # the SkinSense checkpoint (what a worker loads)
    sha256: str
    state_dict: Path  # the bare state dict, as the original app kept its weights
    onnx: Path | None
    num_classes: int
    preprocessing: dict
    export_s: float | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def make_demo_model(
    workdir: str | Path, *, backbone: str = "resnet50", image_size: int = 224, onnx: bool = True
) -> DemoModel:
    import torch

    from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
    from ml.engine.model.network import SkinSenseNet
    from ml.engine.model.taxonomy import ISIC2019_CLASSES
    from ml.engine.model.transforms import default_preprocessing

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = SkinSenseNet(num_classes=len(ISIC2019_CLASSES), backbone=backbone).eval()
    preprocessing = default_preprocessing(image_size)
    checkpoint = Checkpoint(
        backbone=backbone,
        classes=ISIC2019_CLASSES,
        state_dict=network.state_dict(),
        preprocessing=preprocessing,
    )
    weights = workdir / "model.pt"
    sha256 = save_checkpoint(checkpoint, weights)
    state_dict = workdir / "original-state-dict.pt"
    torch.save(network.state_dict(), state_dict)
    onnx_path, export_s = None, None
    if onnx:
        from ml.engine.serve import onnx as onnx_engine

        started = time.perf_counter()
        onnx_path = onnx_engine.export_onnx(weights, sha256, workdir / "onnx")
        export_s = time.perf_counter() - started
    return DemoModel(
        backbone=backbone,
        image_size=image_size,
        weights=weights,
        sha256=sha256,
        state_dict=state_dict,
        onnx=onnx_path,
        num_classes=len(ISIC2019_CLASSES),
        preprocessing=preprocessing,
        export_s=export_s,
    )


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def add_model_arguments(parser: argparse.ArgumentParser, *, image_size: bool = True) -> None:
    """The model a section builds: ``--backbone`` (and ``--image-size``)."""
    parser.add_argument("--backbone", default="resnet50")
    if image_size:
        parser.add_argument("--image-size", type=int, default=224)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="json_path", help="also write the results here")


def write_json(path: str | None, result: dict) -> None:
    """Write a section's results as JSON, when a path was given."""
    if path:
        Path(path).write_text(json.dumps(result, indent=1) + "\n")
