"""(c) Upload→result latency through the real stack, one idle worker.

``bench/stack.py`` starts gunicorn, one Celery worker process (queues ``inference,default``),
PostgreSQL (its own database) and Redis (its own key prefix) with the DEMO model. A client with
an API token then uploads distinct real images (the ISIC sample's, scaled to 600×450 JPEGs)
one after another (``POST /api/v1/cases/``) and
polls ``GET /api/v1/cases/<id>/`` every ``--poll`` seconds until the case is done; the time from
sending the upload to reading the result is one latency. The worker is idle when each upload
arrives (the next one is sent only after the last result was read). Reported: p50/p95 of the
latency, the worker's own ``inference_ms`` from the prediction, the server-side time (the
prediction's ``created_at`` minus the case's), and the worker process's peak RSS::

    .venv/bin/python bench/latency.py [--uploads 20] [--backend torch|onnx|onnx-int8]

``--backend`` is passed to the stack as the INFERENCE_BACKEND setting (unset: the setting's
default). For onnx and onnx-int8 the model is exported first (``manage.py export_onnx``; int8
calibrated and gated on ``../shared/data/isic-sample``), so the worker only loads it.
Heatmaps (Grad-CAM) are enqueued by the worker as usual but not consumed here: they are not
part of the result's latency, and a heatmap worker is a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from common import SAMPLE, UPLOAD_SIZE, images_are_real, median, percentile, upload_images
from stack import json_line, running_stack

EXTRA_MS = 150.0  # p50 at most the single-image inference time + 150 ms
P95_FACTOR = 2.0  # p95 at most 2× p50

SETUP_CODE = """
import json
from django.contrib.auth import get_user_model
from diagnosis.models import Clinic, Membership, Patient, Lesion
clinic = Clinic.objects.create(name="Latency clinic")
user = get_user_model().objects.create_user(username="latency-clinician", password=PASSWORD)
Membership.objects.create(user=user, clinic=clinic, role="clinician")
patient = Patient.objects.create(clinic=clinic, identifier="LATENCY-1")
lesion = Lesion.objects.create(clinic=clinic, patient=patient, label="lesion 1")
from django.conf import settings
out = {"username": user.username, "lesion": lesion.pk}
out["backend"] = getattr(settings, "INFERENCE_BACKEND", "torch")
print("SETUP-JSON " + json.dumps(out))
"""


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _worker_memory(stack) -> dict | None:
    """RSS and peak RSS (VmHWM) of the Celery worker's pool processes."""
    try:
        import psutil

        worker = psutil.Process(stack.processes[1].pid)
        children = worker.children(recursive=True)
        rows = []
        for process in children or [worker]:
            peak = None
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
            rows.append({"pid": process.pid, "rss_bytes": process.memory_info().rss, "peak": peak})
        return {
            "processes": rows,
            "peak_rss_bytes": max((r["peak"] or r["rss_bytes"]) for r in rows),
            "rss_bytes": max(r["rss_bytes"] for r in rows),
        }
    except Exception:  # noqa: BLE001 - a figure we cannot read is left out, not fatal
        return None


def _backlog(stack, session, setup, paths, timeout, log) -> dict | None:
    """Micro-batching under load: ``paths`` uploaded back to back while the worker is busy, then
    the time until the last result; images/s over the whole backlog, and how many forward
    passes the worker needed (its log says when it ran several cases in one)."""
    if not paths:
        return None
    before = stack.worker_log.read_text().count("predicted in one pass of")
    started = time.perf_counter()
    case_ids = []
    for path in paths:
        response = session.post(
            f"{stack.url}/api/v1/cases/",
            data={"lesion": setup["lesion"], "image_type": "dermoscopic"},
            files={"image": (path.name, path.read_bytes(), "image/jpeg")},
            timeout=30,
        )
        if response.status_code not in (201, 202):
            raise RuntimeError(f"upload answered {response.status_code}: {response.text}")
        case_ids.append(response.json()["id"])
    uploaded = time.perf_counter() - started
    pending = set(case_ids)
    while pending:
        for case_id in list(pending):
            case = session.get(f"{stack.url}/api/v1/cases/{case_id}/", timeout=30).json()
            if case.get("status") == "failed":
                raise RuntimeError(f"case {case_id} failed: {case.get('error')}")
            if case.get("status") == "done":
                pending.discard(case_id)
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{len(pending)} backlog cases not done after {timeout} s")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    batched = stack.worker_log.read_text().count("predicted in one pass of") - before
    result = {
        "cases": len(case_ids),
        "uploads_s": uploaded,
        "all_done_s": elapsed,
        "images_per_second": len(case_ids) / elapsed,
        "batched_passes": batched,
    }
    log(
        f"(c) backlog: {len(case_ids)} uploads in {uploaded:.2f} s, all done after "
        f"{elapsed:.2f} s = {result['images_per_second']:.1f} images/s "
        f"({batched} batched passes)"
    )
    return result


def run(
    *,
    uploads: int = 20,
    warmup: int = 2,
    backend: str | None = None,
    poll: float = 0.01,
    inference_threads: int | None = None,
    timeout: float = 120.0,
    backlog: int = 16,
    inference_ms: dict[str, float] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """``inference_ms``: the warm single-image inference time (decode + preprocess + forward)
    per engine, ``{"torch": ms, "onnx": ms}`` (from (a)): the p50 target adds 150 ms to the
    engine the worker serves with (ONNX Runtime for onnx and onnx-int8). Without it, the
    worker's own median ``inference_ms`` is used."""
    import requests

    threads = inference_threads or os.cpu_count() or 1
    password = "latency-" + uuid.uuid4().hex[:12]
    setup: dict = {}
    extra_env = {"INFERENCE_BACKEND": backend} if backend else {}

    def prepare(stack) -> None:
        code = SETUP_CODE.replace("PASSWORD", repr(password))
        setup.update(json_line(stack.manage("shell", code=code), "SETUP-JSON "))
        if backend in ("onnx", "onnx-int8"):
            args = ["export_onnx"]
            if backend == "onnx-int8":
                args += ["--int8", "--calibration-data", str(SAMPLE)]
                args += ["--calibration-images", "64", "--eval-images", "200"]
            log("(c) " + stack.manage(*args).strip().replace("\n", "\n(c) "))

    images = tempfile.TemporaryDirectory(prefix="bench-latency-")
    every = upload_images(warmup + uploads + backlog, images.name)
    paths, backlog_paths = every[: warmup + uploads], every[warmup + uploads :]
    with (
        images,
        running_stack(
            name="bench",
            inference_threads=threads,
            extra_env=extra_env,
            before_start=prepare,
            log=lambda line: log(f"(c) {line}"),
        ) as stack,
    ):
        session = requests.Session()
        token = session.post(
            f"{stack.url}/api/v1/auth/token/",
            json={"username": setup["username"], "password": password},
            timeout=30,
        )
        token.raise_for_status()
        session.headers["Authorization"] = f"Token {token.json()['token']}"
        samples = []
        for index, path in enumerate(paths):
            content = path.read_bytes()
            started = time.perf_counter()
            response = session.post(
                f"{stack.url}/api/v1/cases/",
                data={"lesion": setup["lesion"], "image_type": "dermoscopic"},
                files={"image": (path.name, content, "image/jpeg")},
                timeout=30,
            )
            if response.status_code not in (201, 202):
                raise RuntimeError(f"upload answered {response.status_code}: {response.text}")
            uploaded = time.perf_counter()
            case_id = response.json()["id"]
            polls = 0
            while True:
                time.sleep(poll)
                polls += 1
                answer = session.get(f"{stack.url}/api/v1/cases/{case_id}/", timeout=30)
                case = answer.json() if answer.status_code == 200 else {}
                if case.get("status") in ("done", "failed"):
                    break
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"case {case_id} not done after {timeout} s")
            elapsed = time.perf_counter() - started
            if case["status"] != "done":
                raise RuntimeError(f"case {case_id} failed: {case.get('error')}")
            prediction = case.get("prediction") or {}
            sample = {
                "case": case_id,
                "image": path.name,
                "latency_ms": elapsed * 1000,
                "upload_request_ms": (uploaded - started) * 1000,
                "polls": polls,
                "worker_inference_ms": prediction.get("inference_ms"),
                "server_ms": _seconds_between(case["created_at"], prediction["created_at"]) * 1000
                if prediction.get("created_at")
                else None,
                "warmup": index < warmup,
            }
            samples.append(sample)
            number = f"warm-up {index + 1}" if sample["warmup"] else index + 1 - warmup
            log(
                f"(c) upload {number}: "
                f"{sample['latency_ms']:.0f} ms (upload request {sample['upload_request_ms']:.0f}"
                f" ms, worker inference {sample['worker_inference_ms'] or 0:.0f} ms, "
                f"{polls} polls)"
            )
        backlog_result = _backlog(stack, session, setup, backlog_paths, timeout, log)
        memory = _worker_memory(stack)

    timed = [s for s in samples if not s["warmup"]]
    latencies = [s["latency_ms"] for s in timed]
    worker_ms = [s["worker_inference_ms"] for s in timed if s["worker_inference_ms"] is not None]
    server_ms = [s["server_ms"] for s in timed if s["server_ms"] is not None]
    p50, p95 = median(latencies), percentile(latencies, 0.95)
    effective = setup.get("backend") or "torch"
    engine = "onnx" if effective.startswith("onnx") else "torch"
    reference = (inference_ms or {}).get(engine)
    reference_source = f"(a) warm {engine}"
    if reference is None:
        reference, reference_source = median(worker_ms), "worker inference_ms"
    p50_target = reference + EXTRA_MS if reference is not None else None
    result = {
        "backend": effective,
        "backend_option": backend,
        "inference_threads": threads,
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
        "p50_met": p50_target is not None and p50 is not None and p50 <= p50_target,
        "p95_target_ms": P95_FACTOR * p50 if p50 is not None else None,
        "p95_met": p50 is not None and p95 <= P95_FACTOR * p50,
        "worker_memory": memory,
        "backlog": backlog_result,
        "samples": samples,
    }
    log(
        f"(c) upload→result p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(timed)} uploads "
        f"(worker inference p50 {result['worker_inference_p50_ms'] or 0:.0f} ms, server-side "
        f"p50 {result['server_p50_ms'] or 0:.0f} ms)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between polls")
    parser.add_argument("--inference-threads", type=int, default=None, help="default: all CPUs")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    result = run(
        uploads=args.uploads,
        warmup=args.warmup,
        backend=args.backend,
        poll=args.poll,
        inference_threads=args.inference_threads,
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
