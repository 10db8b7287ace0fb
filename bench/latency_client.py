"""(c)'s client side: what ``bench.latency`` does against the running stack through its API
(uploads, polling, a backlog sent back to back or left waiting while the worker's consumer is
paused) and reads from the worker (its log, its processes' peak RSS).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from bench.stack import Stack, json_line

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


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def worker_memory(stack) -> dict | None:
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


def upload(stack, session, lesion: int, path: Path) -> int:
    response = session.post(
        f"{stack.url}/api/v1/cases/",
        data={"lesion": lesion, "image_type": "dermoscopic"},
        files={"image": (path.name, path.read_bytes(), "image/jpeg")},
        timeout=30,
    )
    if response.status_code not in (201, 202):
        raise RuntimeError(f"upload answered {response.status_code}: {response.text}")
    return response.json()["id"]


def wait_all_done(
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


def passes(stack) -> int:
    return stack.worker_log.read_text().count("predicted in one pass of")


def arrivals(stack, session, setup, paths, timeout, log) -> dict | None:
    """Uploads sent back to back while the worker takes them: the time until the last result
    (uploading included) and how many batched passes the worker made."""
    if not paths:
        return None
    before = passes(stack)
    started = time.perf_counter()
    for path in paths:
        upload(stack, session, setup["backlog"], path)
    uploaded = time.perf_counter() - started
    wait_all_done(stack, session, setup["backlog"], len(paths), timeout, started)
    elapsed = time.perf_counter() - started
    result = {
        "cases": len(paths),
        "uploads_s": uploaded,
        "all_done_s": elapsed,
        "images_per_second": len(paths) / elapsed,
        "batchedpasses": passes(stack) - before,
    }
    log(
        f"(c) arrivals: {len(paths)} uploads sent back to back in {uploaded:.2f} s, all done "
        f"after {elapsed:.2f} s = {result['images_per_second']:.1f} images/s "
        f"({result['batchedpasses']} batched passes)"
    )
    return result


CONSUMER_CODE = """
import time
from skinsense_site.celery import app
stamp = time.time()
replies = app.control.ACTION("inference", reply=True, timeout=5)
print("CONSUMER-JSON " + __import__("json").dumps({"stamp": stamp, "replies": replies}))
"""


def consumer(stack, action: str) -> float:
    """Stop or restart the worker's consumption of the inference queue (Celery remote control);
    returns the time (epoch seconds) the command was sent."""
    out = json_line(
        stack.manage("shell", code=CONSUMER_CODE.replace("ACTION", action)), "CONSUMER-JSON "
    )
    if not out["replies"]:
        raise RuntimeError(f"no worker answered {action}")
    return out["stamp"]


def first_received(lines: list[str]) -> float:
    """Epoch seconds of the first "Task ... received" in Celery's log lines (local time)."""
    for line in lines:
        if " received" in line and line.startswith("["):
            stamp = line[1:].split(": ", 1)[0]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError("the worker log shows no message received after resuming")


def drain(stack, session, setup, paths, timeout, log) -> dict | None:
    """Micro-batching with a backlog: the worker stops consuming, ``paths`` are uploaded (they
    wait in the queue), the worker resumes; the time from resuming until the last prediction
    was stored (the server's own timestamps) gives the images/s of the worker on a backlog,
    the figure that should approach (b)'s batched throughput."""
    if not paths:
        return None
    consumer(stack, "cancelconsumer")
    try:
        for path in paths:
            upload(stack, session, setup["drain"], path)
    finally:
        before = passes(stack)
        log_offset = len(stack.worker_log.read_text())
        resumed = consumer(stack, "addconsumer")
    # Timed by the server's own timestamps: polled seldom, so that rendering the case list
    # takes little from the worker's CPUs.
    cases = wait_all_done(
        stack, session, setup["drain"], len(paths), timeout, time.perf_counter(), every=1.0
    )
    stored = [datetime.fromisoformat(c["prediction"]["created_at"]).timestamp() for c in cases]
    lines = stack.worker_log.read_text()[log_offset:].splitlines()
    # Kombu's Redis transport adds a queue to its blocking pop only when the current one times
    # out (up to a second): the drain starts when the worker received the first waiting message.
    first = first_received(lines)
    elapsed = max(stored) - first
    result = {
        "cases": len(paths),
        "drain_s": elapsed,
        "resume_to_first_message_s": first - resumed,
        "images_per_second": len(paths) / elapsed,
        "batchedpasses": passes(stack) - before,
        "worker_log": lines[-80:],
    }
    log(
        f"(c) drain: {len(paths)} waiting cases done in {elapsed:.2f} s from the first message = "
        f"{result['images_per_second']:.1f} images/s ({result['batchedpasses']} batched passes)"
    )
    return result


def token_session(stack: Stack, username: str, password: str):
    """A ``requests`` session authenticated with the user's API token."""
    import requests

    session = requests.Session()
    token = session.post(
        f"{stack.url}/api/v1/auth/token/",
        json={"username": username, "password": password},
        timeout=30,
    )
    token.raise_for_status()
    session.headers["Authorization"] = f"Token {token.json()['token']}"
    return session


def _poll_until_done(stack, session, case_id: int, started: float, poll: float, timeout: float):
    """The case once done or failed (polled every ``poll`` s), and how many polls it took."""
    polls = 0
    while True:
        time.sleep(poll)
        polls += 1
        answer = session.get(f"{stack.url}/api/v1/cases/{case_id}/", timeout=30)
        case = answer.json() if answer.status_code == 200 else {}
        if case.get("status") in ("done", "failed"):
            return case, polls
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"case {case_id} not done after {timeout} s")


def timed_upload(stack, session, lesion: int, path: Path, *, poll: float, timeout: float) -> dict:
    """One upload to an idle worker, polled until its result: the latency sample."""
    content = path.read_bytes()
    started = time.perf_counter()
    response = session.post(
        f"{stack.url}/api/v1/cases/",
        data={"lesion": lesion, "image_type": "dermoscopic"},
        files={"image": (path.name, content, "image/jpeg")},
        timeout=30,
    )
    if response.status_code not in (201, 202):
        raise RuntimeError(f"upload answered {response.status_code}: {response.text}")
    uploaded = time.perf_counter()
    case_id = response.json()["id"]
    case, polls = _poll_until_done(stack, session, case_id, started, poll, timeout)
    elapsed = time.perf_counter() - started
    if case["status"] != "done":
        raise RuntimeError(f"case {case_id} failed: {case.get('error')}")
    prediction = case.get("prediction") or {}
    return {
        "case": case_id,
        "image": path.name,
        "latency_ms": elapsed * 1000,
        "upload_request_ms": (uploaded - started) * 1000,
        "polls": polls,
        "worker_inference_ms": prediction.get("inference_ms"),
        "server_ms": seconds_between(case["created_at"], prediction["created_at"]) * 1000
        if prediction.get("created_at")
        else None,
    }
