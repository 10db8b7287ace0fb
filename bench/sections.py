"""The sections of ``python -m bench``, (a) to (e): their sample counts (full and ``--quick``)
and how each is run with what the others measured before it.

(c)'s worker takes the process × thread layout (b) measured faster for its engine, and its
drain target (b)'s batched figure of that engine; (c)'s p50 target takes (a)'s warm times.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SECTIONS = "abcde"
ORDER = "daebc"  # cheap and independent first; the real stack last
DEFAULT_BACKEND = "onnx"  # (c)'s worker: the CPU production backend (docs/deployment.md)

FULL = {
    "decode_repeats": 10,
    "original_repeats": 5,
    "warm_repeats": 20,
    "memory_images": 10,
    "speed_seconds": 3.0,
    "batch_sizes": (1, 8, 32),
    "calibration": 16,
    "layout_seconds": 5.0,
    "layout_rounds": 2,
    "uploads": 20,
    "warmup_uploads": 2,
}
QUICK = {
    "decode_repeats": 2,
    "original_repeats": 1,
    "warm_repeats": 3,
    "memory_images": 2,
    "speed_seconds": 0.1,
    "batch_sizes": (1, 8),
    "calibration": 2,
    "layout_seconds": 0.3,
    "layout_rounds": 1,
    "uploads": 3,
    "warmup_uploads": 1,
}

ENGINE_OF_BACKEND = {
    "torch": "torch-fp32",
    "onnx": "onnxruntime-fp32",
    "onnx-int8": "onnxruntime-int8",
}


def layout_for(backend: str, b: dict | None) -> tuple[int, int]:
    """(processes, threads each) for (c)'s worker: the layout (b) measured faster for the
    served engine (int8 follows fp32 ONNX Runtime); N single-threaded processes without (b)."""
    cores = os.cpu_count() or 1
    engine = "torch-fp32" if backend == "torch" else "onnxruntime-fp32"
    layout = ((b or {}).get("worker_layout") or {}).get("engines", {}).get(engine) or {}
    faster = layout.get("faster") or f"{cores}x1"
    processes, threads = (int(part) for part in faster.split("x"))
    return processes, threads


def batched_figure(backend: str, b: dict | None) -> float | None:
    """(b)'s batch-8 images/s of the served engine (or its largest batch measured)."""
    rows = [
        r
        for r in ((b or {}).get("inference_speed") or {}).get("results", [])
        if r["engine"] == ENGINE_OF_BACKEND[backend] and r["batch"] > 1
    ]
    if not rows:
        return None
    eight = [r for r in rows if r["batch"] == 8]
    return (eight or sorted(rows, key=lambda r: r["batch"]))[-1]["images_per_s"]


@dataclass
class Context:
    """What a section runs with: the sample counts, the command line's options, the demo
    model (sections a, b and e), the sections' results so far, the log."""

    settings: dict
    args: Any
    model: Any
    results: dict
    log: Callable[[str], None]


def _run_a(run: Context) -> dict:
    from bench import original_vs_warm

    return original_vs_warm.run(
        model=run.model,
        original_repeats=run.settings["original_repeats"],
        warm_repeats=run.settings["warm_repeats"],
        int8_calibration=run.settings["calibration"],
        log=run.log,
    )


def _run_b(run: Context) -> dict:
    from bench import throughput

    return throughput.run(
        model=run.model,
        backbone=run.args.backbone,
        image_size=run.args.image_size,
        batch_sizes=run.settings["batch_sizes"],
        seconds=run.settings["speed_seconds"],
        calibration=run.settings["calibration"],
        layouts=throughput.Layouts(
            seconds=run.settings["layout_seconds"], rounds=run.settings["layout_rounds"]
        ),
        log=run.log,
    )


def _run_c(run: Context) -> dict:
    from bench import latency

    warm = (run.results.get("a") or {}).get("warm") or {}
    backend = run.args.backend or DEFAULT_BACKEND
    processes, threads = layout_for(backend, run.results.get("b"))
    return latency.run(
        uploads=latency.Uploads(
            count=run.settings["uploads"], warmup=run.settings["warmup_uploads"]
        ),
        backend=backend,
        processes=processes,
        inference_threads=threads,
        inference_ms={engine: figures["ms"] for engine, figures in warm.items()},
        batched_images_per_s=batched_figure(backend, run.results.get("b")),
        log=run.log,
    )


def _run_d(run: Context) -> dict:
    from bench import decode

    return decode.run(
        repeats=run.settings["decode_repeats"], image_size=run.args.image_size, log=run.log
    )


def _run_e(run: Context) -> dict:
    from bench import worker_memory

    return worker_memory.run(model=run.model, images=run.settings["memory_images"], log=run.log)


RUNNERS: dict[str, Callable[[Context], dict]] = {
    "a": _run_a,
    "b": _run_b,
    "c": _run_c,
    "d": _run_d,
    "e": _run_e,
}


def run_section(section: str, settings: dict, args, model, results: dict, log) -> dict:
    """Run one section (``args``: the command line's; ``results``: the sections run so far)."""
    if section not in RUNNERS:
        raise ValueError(section)
    return RUNNERS[section](Context(settings, args, model, results, log))
