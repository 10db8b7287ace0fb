"""(c) Upload→result latency through the real stack, one idle worker; then micro-batching.

``bench/stack.py`` starts gunicorn, one Celery worker (queues ``inference,default``; ``--processes``
pool processes of ``--inference-threads`` threads each), PostgreSQL (its own database) and Redis
(its own key prefix) with the DEMO model. A client with an API token then uploads distinct real
images (the ISIC sample's, scaled to 600×450 JPEGs) one after another (``POST /api/v1/cases/``)
and polls ``GET /api/v1/cases/<id>/`` every ``--poll`` seconds until the case is done; the time
from sending the upload to reading the result is one latency. The worker is idle when each
upload arrives (the next one is sent only after the last result was read). Reported: p50/p95 of
the latency, the worker's own ``inference_ms`` from the prediction, the server-side time (the
prediction's ``created_at`` minus the case's), and the worker processes' peak RSS.

Then two backlogs of ``--backlog`` uploads each:

- *arrivals*: sent back to back while the worker runs (uploading shares the CPUs with it);
- *drain*: the worker stops consuming (Celery's ``cancel_consumer``), the uploads wait in the
  queue, the worker resumes (``add_consumer``); from the first message it takes to the last
  prediction stored. This is the micro-batching figure: images/s on a backlog, to compare with
  (b)'s batched throughput of the same engine.

::

    .venv/bin/python bench/latency.py [--uploads 20] [--backend torch|onnx|onnx-int8]
        [--processes 2 --inference-threads 1] [--backlog 16]

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
DRAIN_FRACTION = 0.8  # a backlog drains at least at 80 % of the engine's batched figure from (b)

SETUP_CODE = """
import json
from django.contrib.auth import get_user_model
from diagnosis.models import Clinic, Membership, Patient, Lesion
clinic = Clinic.objects.create(name="Latency clinic")
user = get_user_model().objects.create_user(username="latency-clinician", password=PASSWORD)
Membership.objects.create(user=user, clinic=clinic, role="clinician")
patient = Patient.objects.create(clinic=clinic, identifier="LATENCY-1")
lesion = Lesion.objects.create(clinic=clinic, patient=patient, label="lesion 1")
backlog = Lesion.objects.create(clinic=clinic, patient=patient, label="backlog lesion")
drain = Lesion.objects.create(clinic=clinic, patient=patient, label="drain lesion")
from django.conf import settings
out = {"username": user.username, "lesion": lesion.pk, "backlog": backlog.pk, "drain": drain.pk}
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


def _upload(stack, session, lesion: int, path: Path) -> int:
    response = session.post(
        f"{stack.url}/api/v1/cases/",
        data={"lesion": lesion, "image_type": "dermoscopic"},
        files={"image": (path.name, path.read_bytes(), "image/jpeg")},
        timeout=30,
    )
    if response.status_code not in (201, 202):
        raise RuntimeError(f"upload answered {response.status_code}: {response.text}")
    return response.json()["id"]


def _wait_all_done(
    stack, session, lesion: int, count: int, timeout: float, started: float, every: float = 0.1
):
    """Poll the lesion's case list every ``every`` seconds (one request a round, so the polling
    itself takes little of the CPUs the worker needs) until ``count`` cases are done."""
    while True:
        answer = session.get(
            f"{stack.url}/api/v1/cases/",
            params={"lesion": lesion, "page_size": 200},
            timeout=30,
        )
        answer.raise_for_status()
        cases = answer.json()["results"]
        failed = [c for c in cases if c["status"] == "failed"]
        if failed:
            raise RuntimeError(f"case {failed[0]['id']} failed: {failed[0].get('error')}")
        if sum(c["status"] == "done" for c in cases) >= count:
            return cases
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"backlog cases not done after {timeout} s")
        time.sleep(every)


def _passes(stack) -> int:
    return stack.worker_log.read_text().count("predicted in one pass of")


def _arrivals(stack, session, setup, paths, timeout, log) -> dict | None:
    """Uploads sent back to back while the worker takes them: the time until the last result
    (uploading included) and how many batched passes the worker made."""
    if not paths:
        return None
    before = _passes(stack)
    started = time.perf_counter()
    for path in paths:
        _upload(stack, session, setup["backlog"], path)
    uploaded = time.perf_counter() - started
    _wait_all_done(stack, session, setup["backlog"], len(paths), timeout, started)
    elapsed = time.perf_counter() - started
    result = {
        "cases": len(paths),
        "uploads_s": uploaded,
        "all_done_s": elapsed,
        "images_per_second": len(paths) / elapsed,
        "batched_passes": _passes(stack) - before,
    }
    log(
        f"(c) arrivals: {len(paths)} uploads sent back to back in {uploaded:.2f} s, all done "
        f"after {elapsed:.2f} s = {result['images_per_second']:.1f} images/s "
        f"({result['batched_passes']} batched passes)"
    )
    return result


CONSUMER_CODE = """
import time
from skinsense_site.celery import app
stamp = time.time()
replies = app.control.ACTION("inference", reply=True, timeout=5)
print("CONSUMER-JSON " + __import__("json").dumps({"stamp": stamp, "replies": replies}))
"""


def _consumer(stack, action: str) -> float:
    """Stop or restart the worker's consumption of the inference queue (Celery remote control);
    returns the time (epoch seconds) the command was sent."""
    out = json_line(
        stack.manage("shell", code=CONSUMER_CODE.replace("ACTION", action)), "CONSUMER-JSON "
    )
    if not out["replies"]:
        raise RuntimeError(f"no worker answered {action}")
    return out["stamp"]


def _first_received(lines: list[str]) -> float:
    """Epoch seconds of the first "Task ... received" in Celery's log lines (local time)."""
    for line in lines:
        if " received" in line and line.startswith("["):
            stamp = line[1:].split(": ", 1)[0]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError("the worker log shows no message received after resuming")


def _drain(stack, session, setup, paths, timeout, log) -> dict | None:
    """Micro-batching with a backlog: the worker stops consuming, ``paths`` are uploaded (they
    wait in the queue), the worker resumes; the time from resuming until the last prediction
    was stored (the server's own timestamps) gives the images/s of the worker on a backlog,
    the figure that should approach (b)'s batched throughput."""
    if not paths:
        return None
    _consumer(stack, "cancel_consumer")
    try:
        for path in paths:
            _upload(stack, session, setup["drain"], path)
    finally:
        before = _passes(stack)
        log_offset = len(stack.worker_log.read_text())
        resumed = _consumer(stack, "add_consumer")
    # Timed by the server's own timestamps: polled seldom, so that rendering the case list
    # takes little from the worker's CPUs.
    cases = _wait_all_done(
        stack, session, setup["drain"], len(paths), timeout, time.perf_counter(), every=1.0
    )
    stored = [datetime.fromisoformat(c["prediction"]["created_at"]).timestamp() for c in cases]
    lines = stack.worker_log.read_text()[log_offset:].splitlines()
    # Kombu's Redis transport adds a queue to its blocking pop only when the current one times
    # out (up to a second): the drain starts when the worker received the first waiting message.
    first = _first_received(lines)
    elapsed = max(stored) - first
    result = {
        "cases": len(paths),
        "drain_s": elapsed,
        "resume_to_first_message_s": first - resumed,
        "images_per_second": len(paths) / elapsed,
        "batched_passes": _passes(stack) - before,
        "worker_log": lines[-80:],
    }
    log(
        f"(c) drain: {len(paths)} waiting cases done in {elapsed:.2f} s from the first message = "
        f"{result['images_per_second']:.1f} images/s ({result['batched_passes']} batched passes)"
    )
    return result


def run(
    *,
    uploads: int = 20,
    warmup: int = 2,
    backend: str | None = None,
    poll: float = 0.01,
    inference_threads: int | None = None,
    processes: int = 1,
    timeout: float = 120.0,
    backlog: int = 16,
    inference_ms: dict[str, float] | None = None,
    batched_images_per_s: float | None = None,
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
    every = upload_images(warmup + uploads + 2 * backlog, images.name)
    paths, backlog_paths = every[: warmup + uploads], every[warmup + uploads :]
    with (
        images,
        running_stack(
            name="bench",
            inference_threads=threads,
            worker_concurrency=processes,
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
        arrivals = _arrivals(stack, session, setup, backlog_paths[:backlog], timeout, log)
        drain = _drain(stack, session, setup, backlog_paths[backlog:], timeout, log)
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
        "worker_processes": processes,
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
        "drain_reference_images_per_s": batched_images_per_s,
        "drain_target_images_per_s": DRAIN_FRACTION * batched_images_per_s
        if batched_images_per_s
        else None,
        "drain_met": bool(
            drain
            and batched_images_per_s
            and drain["images_per_second"] >= DRAIN_FRACTION * batched_images_per_s
        )
        if batched_images_per_s
        else None,
        "arrivals": arrivals,
        "drain": drain,
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
    parser.add_argument("--processes", type=int, default=1, help="worker pool processes")
    parser.add_argument("--backlog", type=int, default=16, help="cases per backlog run")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    result = run(
        uploads=args.uploads,
        warmup=args.warmup,
        backend=args.backend,
        poll=args.poll,
        inference_threads=args.inference_threads,
        processes=args.processes,
        backlog=args.backlog,
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
