"""(c) Upload→result latency through the real stack (``bench.stack``), one idle worker; then
micro-batching.

A client uploads distinct real images one after another and polls each case until it is done:
p50/p95 of that latency, the worker's ``inference_ms`` and the server-side time. Then two
backlogs of ``--backlog`` uploads: sent back to back while the worker runs (*arrivals*), and
waiting in the queue while the worker's consumer is paused (*drain*: images/s on a backlog, to
compare with (b)'s batched throughput). Heatmaps are enqueued but not consumed here::

    .venv/bin/python -m bench.latency [--uploads 20] [--backend torch|onnx|onnx-int8]
        [--processes 2 --inference-threads 1] [--backlog 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench import latency_client as client
from bench.common import (
    SAMPLE,
    UPLOAD_SIZE,
    add_json_argument,
    images_are_real,
    median,
    percentile,
    upload_images,
    write_json,
)
from bench.stack import json_line, running_stack
from bench.targets import target

P50 = target("c.p50_ms")  # p50 at most the single-image inference time + 150 ms
P95 = target("c.p95_ms")  # p95 at most 2× p50
DRAIN = target("c.drain_images_per_s")  # a backlog drains at ≥ 80 % of (b)'s batched figure


@dataclass(frozen=True)
class Uploads:
    """How (c) uploads: ``count`` timed uploads after ``warmup`` untimed ones, each polled every
    ``poll`` s for at most ``timeout`` s; then two backlogs of ``backlog`` uploads each."""

    count: int = 20
    warmup: int = 2
    poll: float = 0.01
    timeout: float = 120.0
    backlog: int = 16


def _preparation(backend: str | None, password: str, setup: dict, log: Callable[[str], None]):
    """What runs before gunicorn and the worker start: the users and lesions (into ``setup``),
    and for ONNX Runtime backends the exported model (int8: calibrated and gated)."""

    def prepare(stack) -> None:
        code = client.SETUP_CODE.replace("PASSWORD", repr(password))
        setup.update(json_line(stack.manage("shell", code=code), "SETUP-JSON "))
        if backend in ("onnx", "onnx-int8"):
            args = ["export_onnx"]
            if backend == "onnx-int8":
                args += ["--int8", "--calibration-data", str(SAMPLE)]
                args += ["--calibration-images", "64", "--eval-images", "200"]
            log("(c) " + stack.manage(*args).strip().replace("\n", "\n(c) "))

    return prepare


def _log_sample(sample: dict, index: int, warmup: int, log: Callable[[str], None]) -> None:
    number = f"warm-up {index + 1}" if sample["warmup"] else index + 1 - warmup
    log(
        f"(c) upload {number}: "
        f"{sample['latency_ms']:.0f} ms (upload request {sample['upload_request_ms']:.0f}"
        f" ms, worker inference {sample['worker_inference_ms'] or 0:.0f} ms, "
        f"{sample['polls']} polls)"
    )


def _timed_uploads(stack, session, lesion: int, paths, uploads: Uploads, log) -> list[dict]:
    """One upload after the other to the idle worker (the first ``warmup`` not timed)."""
    samples = []
    for index, path in enumerate(paths):
        sample = client.timed_upload(
            stack, session, lesion, path, poll=uploads.poll, timeout=uploads.timeout
        )
        sample["warmup"] = index < uploads.warmup
        samples.append(sample)
        _log_sample(sample, index, uploads.warmup, log)
    return samples


def run(
    *,
    uploads: Uploads | None = None,
    backend: str | None = None,
    inference_threads: int | None = None,
    processes: int = 1,
    inference_ms: dict[str, float] | None = None,
    batched_images_per_s: float | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """``inference_ms``: the warm single-image inference time (decode + preprocess + forward)
    per engine, ``{"torch": ms, "onnx": ms}`` (from (a)): the p50 target adds 150 ms to the
    engine the worker serves with (ONNX Runtime for onnx and onnx-int8). Without it, the
    worker's own median ``inference_ms`` is used. ``batched_images_per_s``: (b)'s batched
    figure of that engine, the drain's reference."""
    uploads = uploads or Uploads()
    warmup, backlog, timeout = uploads.warmup, uploads.backlog, uploads.timeout
    threads = inference_threads or os.cpu_count() or 1
    password = "latency-" + uuid.uuid4().hex[:12]
    setup: dict = {}
    extra_env = {"INFERENCE_BACKEND": backend} if backend else {}
    images = tempfile.TemporaryDirectory(prefix="bench-latency-")
    every = upload_images(warmup + uploads.count + 2 * backlog, images.name)
    paths, backlog_paths = every[: warmup + uploads.count], every[warmup + uploads.count :]
    with (
        images,
        running_stack(
            name="bench",
            inference_threads=threads,
            worker_concurrency=processes,
            extra_env=extra_env,
            before_start=_preparation(backend, password, setup, log),
            log=lambda line: log(f"(c) {line}"),
        ) as stack,
    ):
        session = client.token_session(stack, setup["username"], password)
        samples = _timed_uploads(stack, session, setup["lesion"], paths, uploads, log)
        arrivals = client.arrivals(stack, session, setup, backlog_paths[:backlog], timeout, log)
        drain = client.drain(stack, session, setup, backlog_paths[backlog:], timeout, log)
        memory = client.worker_memory(stack)

    result = {
        "backend": setup.get("backend") or "torch",
        "backend_option": backend,
        "inference_threads": threads,
        "worker_processes": processes,
        **_latency_figures(samples, warmup, uploads.poll, setup.get("backend"), inference_ms),
        "worker_memory": memory,
        **_drain_figures(drain, batched_images_per_s),
        "arrivals": arrivals,
        "drain": drain,
        "samples": samples,
    }
    log(
        f"(c) upload→result p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms over "
        f"{result['uploads']} uploads (worker inference p50 "
        f"{result['worker_inference_p50_ms'] or 0:.0f} ms, server-side "
        f"p50 {result['server_p50_ms'] or 0:.0f} ms)"
    )
    return result


def _latency_figures(
    samples: list[dict],
    warmup: int,
    poll: float,
    served: str | None,
    inference_ms: dict[str, float] | None,
) -> dict:
    """p50/p95 of the timed (not warm-up) samples and their targets: p50 against the warm
    single-image inference of the served engine (else the worker's own), p95 against p50."""
    timed = [s for s in samples if not s["warmup"]]
    latencies = [s["latency_ms"] for s in timed]
    worker_ms = [s["worker_inference_ms"] for s in timed if s["worker_inference_ms"] is not None]
    server_ms = [s["server_ms"] for s in timed if s["server_ms"] is not None]
    p50, p95 = median(latencies), percentile(latencies, 0.95)
    engine = "onnx" if (served or "torch").startswith("onnx") else "torch"
    reference = (inference_ms or {}).get(engine)
    reference_source = f"(a) warm {engine}"
    if reference is None:
        reference, reference_source = median(worker_ms), "worker inference_ms"
    p50_target = P50.bound(reference) if reference is not None else None
    return {
        "uploads": len(timed),
        "warmup_uploads": warmup,
        "real_images": images_are_real(),
        "image_size_px": list(UPLOAD_SIZE),
        "poll_interval_s": poll,
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": max(latencies) if latencies else None,
        "upload_request_p50_ms": median([s["upload_request_ms"] for s in timed]),
        "worker_inference_p50_ms": median(worker_ms),
        "server_p50_ms": median(server_ms),
        "reference_inference_ms": reference,
        "reference_source": reference_source,
        "p50_target_ms": p50_target,
        "p50_met": p50_target is not None and p50 is not None and P50.met(p50, reference),
        "p95_target_ms": P95.bound(p50) if p50 is not None else None,
        "p95_met": p50 is not None and P95.met(p95, p50),
    }


def _drain_figures(drain: dict | None, batched: float | None) -> dict:
    """The drain's target: (b)'s batched images/s of the served engine × the threshold."""
    return {
        "drain_reference_images_per_s": batched,
        "drain_target_images_per_s": DRAIN.bound(batched) if batched else None,
        "drain_met": bool(drain and DRAIN.met(drain["images_per_second"], batched))
        if batched
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between polls")
    parser.add_argument("--inference-threads", type=int, default=None, help="default: all CPUs")
    parser.add_argument("--processes", type=int, default=1, help="worker pool processes")
    parser.add_argument("--backlog", type=int, default=16, help="cases per backlog run")
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(
        uploads=Uploads(
            count=args.uploads, warmup=args.warmup, poll=args.poll, backlog=args.backlog
        ),
        backend=args.backend,
        inference_threads=args.inference_threads,
        processes=args.processes,
    )
    write_json(args.json_path, result)


if __name__ == "__main__":
    main()
