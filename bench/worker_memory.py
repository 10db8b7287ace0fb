"""(e) Worker peak RSS and model load time, per backend, each in a fresh process.

For each CPU backend a new Python process imports only what that backend's worker imports,
loads the model (timed: reading and hashing the file, building the model or the ONNX Runtime
session), predicts ``--images`` real images (``open_for_model`` + ``predict``) and reports its
peak resident set size (``VmHWM``; ``getrusage``'s ``ru_maxrss`` where there is no ``/proc``),
its RSS after loading, and whether torch was imported. The torch worker loads a SkinSense
checkpoint (``Predictor.from_file``); the ONNX Runtime worker loads an exported file with
``OnnxPredictor.from_cache`` and must not import torch. Target: peak RSS with the model loaded
under 1 GB on the CPU backend (``bench.targets``)::

    .venv/bin/python -m bench.worker_memory [--images 10] [--json out.json]

This module imports no torch itself (it is also the children's program: ``--child``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    ROOT,
    DemoModel,
    add_json_argument,
    add_model_arguments,
    make_demo_model,
    upload_images,
    write_json,
)
from bench.targets import target

PEAK_RSS = target("e.peak_rss")  # peak RSS with the model loaded under 1 GB
TARGET_BYTES = PEAK_RSS.threshold
BACKENDS = ("torch", "onnx")


def child(backend: str, model_path: str, sha256: str, threads: int, images: list[str]) -> dict:
    """The measured process: import, load, predict; returns its figures."""
    import resource

    started = time.perf_counter()
    if backend == "torch":
        import torch

        from ml.engine.serve.torch_predictor import Predictor

        if threads:
            torch.set_num_threads(threads)
    else:
        from ml.engine.serve.onnx.predict import OnnxPredictor
    from ml.engine.data.images import open_for_model

    import_s = time.perf_counter() - started
    rss_imported = _rss()
    started = time.perf_counter()
    if backend == "torch":
        predictor = Predictor.from_file(model_path, expected_sha256=sha256, device="cpu")
    else:
        predictor = OnnxPredictor.from_cache(model_path, threads=threads)
    load_s = time.perf_counter() - started
    rss_loaded = _rss()
    started = time.perf_counter()
    for path in images:
        predictor.predict(open_for_model(path, predictor.preprocessing))
    predict_s = time.perf_counter() - started
    peak = _peak_rss() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB
    return {
        "backend": backend,
        "import_s": import_s,
        "load_s": load_s,
        "predict_ms_per_image": predict_s * 1000 / max(len(images), 1),
        "images": len(images),
        "rss_after_import_bytes": rss_imported,
        "rss_after_load_bytes": rss_loaded,
        "rss_after_predict_bytes": _rss(),
        "peak_rss_bytes": peak,
        "torch_imported": "torch" in sys.modules,
    }


def _peak_rss() -> int | None:
    """This process's peak RSS since its exec (VmHWM). ``ru_maxrss`` is not that: Linux keeps
    the high-water mark of the forked parent's image across exec (a bench that forked us from
    a process holding torch would be charged for it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def measure(
    backend: str, model_path: Path, sha256: str, images: list[Path], *, threads: int = 0
) -> dict:
    """Run the child for one backend in a fresh interpreter; its dict."""
    command = [sys.executable, "-m", "bench.worker_memory", "--child", backend]
    command += [str(model_path), sha256, str(threads), *map(str, images)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the {backend} worker child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(
    *,
    model: DemoModel | None = None,
    images: int = 10,
    threads: int = 0,
    backbone: str = "resnet50",
    image_size: int = 224,
    log: Callable[[str], None] = print,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        if model is None:
            model = make_demo_model(work, backbone=backbone, image_size=image_size)
        paths = upload_images(images, work)
        result: dict = {"backbone": model.backbone, "target_bytes": TARGET_BYTES, "backends": {}}
        for backend in BACKENDS:
            path = model.weights if backend == "torch" else model.onnx
            if path is None:
                continue
            row = measure(backend, path, model.sha256, paths, threads=threads)
            row["met"] = PEAK_RSS.met(row["peak_rss_bytes"])
            result["backends"][backend] = row
            log(
                f"(e) {backend:<5} worker: peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB "
                f"(after import {row['rss_after_import_bytes'] / 2**20:.0f}, after load "
                f"{row['rss_after_load_bytes'] / 2**20:.0f}), import {row['import_s']:.2f} s, "
                f"model load {row['load_s']:.2f} s, {row['predict_ms_per_image']:.0f} ms/image, "
                f"torch imported: {row['torch_imported']}"
            )
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        backend, model_path, sha256, threads, *images = sys.argv[2:]
        print(json.dumps(child(backend, model_path, sha256, int(threads), images)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="0: the backend's default")
    add_model_arguments(parser, image_size=False)
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(images=args.images, threads=args.threads, backbone=args.backbone)
    write_json(args.json_path, result)


if __name__ == "__main__":
    main()
