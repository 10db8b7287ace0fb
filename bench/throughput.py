"""(b) Throughput at batch 1/8/32 as a fraction of this machine's fp32 arithmetic ceiling, and
the worker layout (N single-threaded processes vs one N-threaded process).

``bench.inference_speed.run()`` measures the fp32 peak (a large sgemm on all CPUs) and torch
fp32, ONNX Runtime fp32 and ONNX Runtime int8 at each batch size; the ceiling is peak GFLOP/s ÷
the model's GFLOP per image (ResNet50 at 224: 8.17), so a fraction of 1.0 means the arithmetic
limit. Targets (``bench.targets``): the best batched (batch > 1) fp32 engine at least 80 % of
the ceiling; int8 at least 2× the ceiling (its accuracy is gated elsewhere: ``manage.py
export_onnx --int8``; here the weights are random). ``bench.worker_layout.run()`` measures the
layouts::

    .venv/bin/python -m bench.throughput [--seconds 3] [--layout-seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import inference_speed, worker_layout
from bench.common import DemoModel, add_json_argument, add_model_arguments, write_json
from bench.targets import target

FP32 = target("b.best_batched_fp32")  # best batched fp32 at least 80 % of the ceiling
INT8 = target("b.best_int8")  # int8 at least 2× the ceiling
FP32_TARGET = FP32.threshold
INT8_TARGET = INT8.threshold
FP32_ENGINES = ("torch-fp32", "onnxruntime-fp32")
INT8_ENGINES = ("onnxruntime-int8",)


@dataclass(frozen=True)
class Layouts:
    """How the worker layouts are measured (``worker_layout.run``); no engines: not at all."""

    seconds: float = 5.0
    rounds: int = 2
    engines: Sequence[str] = worker_layout.ENGINES


def summarise(speed: dict) -> dict:
    """The ceiling and the target figures from ``inference_speed.run()``'s result."""
    gflop = speed["model"]["gflop_per_image"]
    ceiling = speed["peak_gflops"] / gflop
    rows = speed["results"]
    batched_fp32 = [r for r in rows if r["engine"] in FP32_ENGINES and r["batch"] > 1]
    fp32_rows = batched_fp32 or [r for r in rows if r["engine"] in FP32_ENGINES]
    int8_rows = [r for r in rows if r["engine"] in INT8_ENGINES]
    best_fp32 = max(fp32_rows, key=lambda r: r["images_per_s"]) if fp32_rows else None
    best_int8 = max(int8_rows, key=lambda r: r["images_per_s"]) if int8_rows else None
    return {
        "gflop_per_image": gflop,
        "peak_gflops": speed["peak_gflops"],
        "peak_gflops_by_library": speed.get("peak_gflops_by_library") or {},
        "ceiling_images_per_s": ceiling,
        "best_batched_fp32": best_fp32,
        "best_batched_fp32_met": best_fp32 is not None and FP32.met(best_fp32["fraction_of_peak"]),
        "best_int8": best_int8,
        "best_int8_met": best_int8 is not None and INT8.met(best_int8["fraction_of_peak"]),
        "fp32_target": FP32_TARGET,
        "int8_target": INT8_TARGET,
    }


def run(
    *,
    model: DemoModel | None = None,
    backbone: str = "resnet50",
    image_size: int = 224,
    batch_sizes: Sequence[int] = (1, 8, 32),
    seconds: float = 3.0,
    calibration: int = 16,
    layouts: Layouts | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    layouts = layouts or Layouts()
    speed = inference_speed.run(
        backbone=backbone,
        image_size=image_size,
        batch_sizes=batch_sizes,
        seconds=seconds,
        calibration=calibration,
        log=lambda line: log(f"(b) {line}"),
    )
    summary = summarise(speed)
    log(
        f"(b) ceiling {summary['ceiling_images_per_s']:.1f} images/s "
        f"({summary['peak_gflops']:.0f} GFLOP/s ÷ {summary['gflop_per_image']:.2f} GFLOP)"
    )
    layout = None
    if layouts.engines:
        layout = worker_layout.run(
            model=model,
            seconds=layouts.seconds,
            rounds=layouts.rounds,
            engines=tuple(layouts.engines),
            backbone=backbone,
            image_size=image_size,
            log=log,
        )
    return {"inference_speed": speed, "summary": summary, "worker_layout": layout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--layout-seconds", type=float, default=5.0)
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(
        backbone=args.backbone,
        image_size=args.image_size,
        seconds=args.seconds,
        layouts=Layouts(seconds=args.layout_seconds),
    )
    print()
    print(inference_speed.table(result["inference_speed"]))
    write_json(args.json_path, result)


if __name__ == "__main__":
    main()
