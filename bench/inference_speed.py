"""CPU inference throughput (images/s): eager torch fp32 vs ONNX Runtime fp32 and int8.

A SkinSenseNet with random weights, exported and quantised through the real pipeline, timed at
batch 1, 8 and 32 on the model alone; each figure also as a fraction of the machine's fp32 peak
(the best large sgemm of torch, NumPy and ONNX Runtime on the same threads). int8 is calibrated
on ``../shared/data/isic-sample`` when it is there, else on noise (ranges matter for accuracy,
not speed)::

    .venv/bin/python -m bench.inference_speed [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bench.common import SAMPLE, add_json_argument, add_model_arguments, write_json
from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.engine.model.transforms import default_preprocessing
from ml.engine.serve import onnx as onnx_engine


def _sgemm_steps(size: int, threads: int) -> dict[str, Callable[[], object]]:
    """One size×size fp32 matmul in each BLAS this process has: torch (MKL or OpenBLAS),
    NumPy (OpenBLAS) and ONNX Runtime (MLAS), all on ``threads`` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    steps: dict[str, Callable[[], object]] = {"torch": lambda: torch.mm(ta, tb)}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # NumPy then runs on its own default threads
        steps["numpy"] = lambda: a @ b
    else:

        def numpy_step():
            with threadpool_limits(limits=threads, user_api="blas"):
                return a @ b

        steps["numpy"] = numpy_step
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "sgemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "AB"],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    steps["onnxruntime"] = lambda: session.run(None, {"A": a, "B": b})
    return steps


def peak_by_library(*, size: int = 4096, repeats: int = 5, threads: int | None = None) -> dict:
    """Best fp32 GFLOP/s of a size×size sgemm in each BLAS library (see ``_sgemm_steps``).
    One library can be far from the machine's limit (MKL keeps AVX-512 kernels for Intel
    CPUs: on an AMD EPYC torch.mm reached 196 GFLOP/s where MLAS reached 408)."""
    threads = threads or torch.get_num_threads()
    best: dict[str, float] = {}
    for name, step in _sgemm_steps(size, threads).items():
        step()  # warm-up: thread pool, packing buffers
        best[name] = 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            step()
            best[name] = max(best[name], 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def peak_gflops(*, size: int = 4096, repeats: int = 5, threads: int | None = None) -> float:
    """The machine's measured fp32 peak: the best sgemm of any BLAS here, on these threads."""
    return max(peak_by_library(size=size, repeats=repeats, threads=threads).values())


def images_per_second(step: Callable[[], object], batch: int, *, seconds: float) -> float:
    """Throughput of ``step`` (one batch) after one untimed call: at least two timed calls,
    more until ``seconds`` have passed; the best call's rate (the least disturbed one)."""
    step()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 2 or time.perf_counter() < deadline:
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return batch / min(times)


def gflop_per_image(model: torch.nn.Module, image_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops() / 1e9


def calibration_images(count: int, image_size: int) -> list:
    """Paths of real dermoscopy images when the ISIC sample is here, else noise images."""
    labels = SAMPLE / "labels.csv"
    if labels.is_file():
        paths = sorted((SAMPLE / "images").glob("*.jpg"))[:count]
        if paths:
            return paths
    from PIL import Image

    rng = np.random.default_rng(0)
    shape = (image_size + 32, image_size + 32, 3)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(count)]


def _machine(threads: int) -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _export(network, backbone: str, image_size: int, calibration: int, work: str):
    """The network through the real pipeline: checkpoint, ONNX fp32 export, int8 quantisation;
    (fp32 path, int8 path, export seconds, quantisation seconds)."""
    checkpoint = Checkpoint(
        backbone=backbone,
        classes=ISIC2019_CLASSES,
        state_dict=network.state_dict(),
        preprocessing=default_preprocessing(image_size),
    )
    weights = Path(work) / "model.pt"
    sha256 = save_checkpoint(checkpoint, weights)
    started = time.perf_counter()
    fp32_path = onnx_engine.export_onnx(weights, sha256, work)
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    int8_path = onnx_engine.onnx_path_for(work, sha256, variant="int8")
    onnx_engine.quantize_int8(fp32_path, calibration_images(calibration, image_size), int8_path)
    return fp32_path, int8_path, export_s, time.perf_counter() - started


def _batch_steps(model, sessions: dict, array: np.ndarray) -> dict[str, Callable[[], object]]:
    """One forward pass of the batch ``array`` per engine: torch, then each ONNX session."""
    tensor = torch.from_numpy(array).contiguous(memory_format=torch.channels_last)

    def torch_step():
        with torch.inference_mode():
            return model(tensor)

    steps: dict[str, Callable[[], object]] = {"torch-fp32": torch_step}
    for name, session in sessions.items():
        steps[name] = lambda session=session: session.run(None, {onnx_engine.INPUT_NAME: array})
    return steps


def _measure(model, sessions: dict, *, batch_sizes, image_size, seconds, gflop, peak, log):
    """Images/s and fraction of the peak of each engine at each batch size (random inputs)."""
    rows = []
    rng = np.random.default_rng(0)
    for batch in batch_sizes:
        array = rng.standard_normal((batch, 3, image_size, image_size), dtype=np.float32)
        for engine, step in _batch_steps(model, sessions, array).items():
            rate = images_per_second(step, batch, seconds=seconds)
            row = {
                "engine": engine,
                "batch": batch,
                "images_per_s": rate,
                "fraction_of_peak": rate * gflop / peak,
            }
            rows.append(row)
            log(
                f"  {engine:<17} batch {batch:>3}: {rate:8.2f} images/s "
                f"({row['fraction_of_peak']:.0%} of peak)"
            )
    return rows


def run(
    *,
    backbone: str = "resnet50",
    image_size: int = 224,
    batch_sizes: Sequence[int] = (1, 8, 32),
    threads: int | None = None,
    seconds: float = 3.0,
    calibration: int = 16,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure everything; returns a JSON-able dict (see ``main`` for its table)."""
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = SkinSenseNet(num_classes=len(ISIC2019_CLASSES), backbone=backbone).eval()
    gflop = gflop_per_image(network, image_size)
    log(f"{backbone} at {image_size}: {gflop:.2f} GFLOP per image; {threads} threads")
    by_library = peak_by_library(threads=threads)
    peak = max(by_library.values())
    log(
        f"fp32 peak (4096² sgemm, best library): {peak:.1f} GFLOP/s ("
        + ", ".join(f"{name} {value:.0f}" for name, value in by_library.items())
        + ")"
    )

    result: dict = {
        "machine": _machine(threads),
        "model": {"backbone": backbone, "image_size": image_size, "gflop_per_image": gflop},
        "peak_gflops": peak,
        "peak_gflops_by_library": by_library,
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="inference-speed.") as work:
        fp32_path, int8_path, export_s, quantize_s = _export(
            network, backbone, image_size, calibration, work
        )
        result["export_s"], result["quantize_s"] = export_s, quantize_s
        log(f"export {export_s:.1f} s, int8 quantisation {quantize_s:.1f} s")
        sessions = {
            "onnxruntime-fp32": onnx_engine.create_session(fp32_path, threads=threads),
            "onnxruntime-int8": onnx_engine.create_session(int8_path, threads=threads),
        }
        result["results"] = _measure(
            network.to(memory_format=torch.channels_last),
            sessions,
            batch_sizes=batch_sizes,
            image_size=image_size,
            seconds=seconds,
            gflop=gflop,
            peak=peak,
            log=log,
        )
    return result


def table(result: dict) -> str:
    engines = list(dict.fromkeys(r["engine"] for r in result["results"]))
    batches = list(dict.fromkeys(r["batch"] for r in result["results"]))
    cell = {(r["engine"], r["batch"]): r for r in result["results"]}
    lines = [
        f"{result['model']['backbone']} at {result['model']['image_size']} "
        f"({result['model']['gflop_per_image']:.2f} GFLOP/image), "
        f"{result['machine']['threads']} threads, peak {result['peak_gflops']:.1f} GFLOP/s",
        f"{'images/s (fraction of peak)':<28}" + "".join(f"{f'batch {b}':>18}" for b in batches),
    ]
    for engine in engines:
        values = "".join(
            f"{cell[engine, b]['images_per_s']:>10.2f} ({cell[engine, b]['fraction_of_peak']:4.0%})"
            for b in batches
        )
        lines.append(f"{engine:<28}{values}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--threads", type=int, default=None, help="default: all CPUs")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--calibration", type=int, default=16, help="int8 calibration images")
    parser.add_argument("--quick", action="store_true", help="short timings (a smoke test)")
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(
        backbone=args.backbone,
        image_size=args.image_size,
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        threads=args.threads,
        seconds=0.2 if args.quick else args.seconds,
        calibration=4 if args.quick else args.calibration,
    )
    print()
    print(table(result))
    write_json(args.json_path, result)
    if args.json_path:
        print(f"written to {args.json_path}")


if __name__ == "__main__":
    main()
