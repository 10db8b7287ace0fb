"""Worker layout: N single-threaded worker processes vs one N-threaded process (N = the CPUs).

Each layout runs the model alone at batch 1 (a fixed preprocessed input, as a worker serving
one case at a time) in fresh processes: each loads the model, does two untimed passes and says
it is ready; then, in alternating rounds (N×1, 1×N, N×1, ...), a layout's processes start
together and run for ``seconds``; a round's figure is the sum of its processes' images/s, and
each layout's best round counts. Engines: ONNX Runtime fp32 (an exported file) and torch
fp32 (a SkinSense checkpoint, channels_last, inference mode)::

    .venv/bin/python -m bench.worker_layout [--seconds 5] [--json out.json]

This module imports no torch itself (it is also the children's program: ``--child``).
"""

from __future__ import annotations

import argparse
import json
import os
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
    write_json,
)

ENGINES = ("onnxruntime-fp32", "torch-fp32")


def _step(engine: str, model_path: str, threads: int, image_size: int) -> Callable[[], object]:
    import numpy as np

    array = np.random.default_rng(0).standard_normal((1, 3, image_size, image_size))
    array = array.astype(np.float32)
    if engine == "onnxruntime-fp32":
        from ml.engine.serve.onnx.predict import INPUT_NAME, create_session

        session = create_session(model_path, threads=threads)
        return lambda: session.run(None, {INPUT_NAME: array})
    import torch

    from ml.engine.model.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    model = load_checkpoint(model_path).build_model().to(memory_format=torch.channels_last)
    tensor = torch.from_numpy(array).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            return model(tensor)

    return forward


def child(engine: str, model_path: str, threads: int, image_size: int, seconds: float) -> None:
    """Load, warm up, say "ready"; then for each "go" on stdin run ``seconds`` and report."""
    step = _step(engine, model_path, threads, image_size)
    for _ in range(2):
        step()
    print("ready", flush=True)
    while sys.stdin.readline().strip() == "go":  # anything else (or EOF): done
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            count += 1
        elapsed = time.perf_counter() - started
        print(json.dumps({"images": count, "seconds": elapsed}), flush=True)


class Layout:
    """``processes`` child processes with ``threads`` threads each, loaded and waiting."""

    def __init__(
        self,
        engine: str,
        model_path: Path,
        *,
        processes: int,
        threads: int,
        image_size: int,
        seconds: float,
        workdir: Path,
    ) -> None:
        self.engine = engine
        command = [sys.executable, "-m", "bench.worker_layout", "--child", engine]
        command += [str(model_path), str(threads), str(image_size), str(seconds)]
        self.logs = [workdir / f"{engine}-{processes}x{threads}-{i}.log" for i in range(processes)]
        self.children = []
        for log in self.logs:
            with log.open("w") as stderr:
                self.children.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        text=True,
                    )
                )

    def _fail(self, index: int) -> RuntimeError:
        self.children[index].kill()
        self.children[index].wait()
        return RuntimeError(f"{self.engine} child failed:\n{self.logs[index].read_text()[-3000:]}")

    def wait_ready(self) -> None:
        for index, process in enumerate(self.children):
            if process.stdout.readline().strip() != "ready":
                raise self._fail(index)

    def measure(self) -> dict:
        """One round: all children start together; their summed images/s."""
        for process in self.children:
            process.stdin.write("go\n")
            process.stdin.flush()
        rates = []
        for index, process in enumerate(self.children):
            line = process.stdout.readline()
            if not line.strip():
                raise self._fail(index)
            row = json.loads(line)
            rates.append(row["images"] / row["seconds"])
        return {"images_per_s": sum(rates), "per_process_images_per_s": rates}

    def close(self) -> None:
        for process in self.children:
            try:
                process.stdin.close()  # EOF: the child ends
                process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
            process.stdout.close()


def compare_layouts(
    engine: str, model_path: Path, *, cores: int, image_size: int, seconds: float, rounds: int
) -> dict:
    """``cores`` single-threaded processes vs one ``cores``-threaded process, measured in
    alternating rounds (so a change in the machine's other load hits both); each layout's best
    round counts (the least disturbed one, as ``inference_speed`` takes its best call)."""
    shapes = {f"{cores}x1": (cores, 1), f"1x{cores}": (1, cores)}
    with tempfile.TemporaryDirectory(prefix="bench-layout-logs-") as logs:
        layouts = {
            name: Layout(
                engine,
                model_path,
                processes=processes,
                threads=threads,
                image_size=image_size,
                seconds=seconds,
                workdir=Path(logs),
            )
            for name, (processes, threads) in shapes.items()
        }
        try:
            for layout in layouts.values():
                layout.wait_ready()
            measured: dict[str, list[dict]] = {name: [] for name in layouts}
            for _ in range(rounds):
                for name, layout in layouts.items():
                    measured[name].append(layout.measure())
        finally:
            for layout in layouts.values():
                layout.close()
    result = {}
    for name, (processes, threads) in shapes.items():
        best = max(measured[name], key=lambda m: m["images_per_s"])
        result[name] = {
            "processes": processes,
            "threads": threads,
            "images_per_s": best["images_per_s"],
            "per_process_images_per_s": best["per_process_images_per_s"],
            "rounds_images_per_s": [m["images_per_s"] for m in measured[name]],
        }
    return result


def run(
    *,
    model: DemoModel | None = None,
    cores: int | None = None,
    seconds: float = 5.0,
    rounds: int = 2,
    engines: tuple[str, ...] = ENGINES,
    backbone: str = "resnet50",
    image_size: int = 224,
    log: Callable[[str], None] = print,
) -> dict:
    cores = cores or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-layout-") as work:
        if model is None:
            model = make_demo_model(work, backbone=backbone, image_size=image_size)
        result: dict = {"cores": cores, "seconds": seconds, "rounds": rounds, "engines": {}}
        for engine in engines:
            path = model.onnx if engine.startswith("onnxruntime") else model.weights
            if path is None:
                continue
            layouts = compare_layouts(
                engine,
                path,
                cores=cores,
                image_size=model.image_size,
                seconds=seconds,
                rounds=rounds,
            )
            many, one = layouts[f"{cores}x1"], layouts[f"1x{cores}"]
            faster = f"{cores}x1" if many["images_per_s"] > one["images_per_s"] else f"1x{cores}"
            result["engines"][engine] = {
                "layouts": layouts,
                "faster": faster,
                "ratio": many["images_per_s"] / one["images_per_s"],
            }
            log(
                f"(b) layout {engine:<16}: {cores} processes × 1 thread "
                f"{many['images_per_s']:.1f} images/s, 1 process × {cores} threads "
                f"{one['images_per_s']:.1f} images/s at batch 1 → {faster} is faster "
                f"({many['images_per_s'] / one['images_per_s']:.2f}×; best of {rounds} "
                "alternating rounds)"
            )
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        engine, model_path, threads, image_size, seconds = sys.argv[2:]
        child(engine, model_path, int(threads), int(image_size), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    add_model_arguments(parser)
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(
        seconds=args.seconds,
        rounds=args.rounds,
        backbone=args.backbone,
        image_size=args.image_size,
    )
    write_json(args.json_path, result)


if __name__ == "__main__":
    main()
