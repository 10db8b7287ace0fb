"""Load: concurrent clinicians uploading and polling, a dermatologist reading pages and API
clients reading lists, against the real stack on loopback: gunicorn + a Celery worker +
PostgreSQL + Redis. Prints uploads/s, upload→result p50/p95, page and API read p95, errors and
lost cases, and writes them as JSON. ``make load`` runs it (not part of ``make test``).

Usage::

    .venv/bin/python -m bench.load [--duration 60] [--clinicians 4] [--api-readers 2]

It uses its own PostgreSQL database (``skinsense_load``, dropped and made again), its own Redis
key prefix, a temporary private media folder and the DEMO model (ResNet50, random weights: the
figures are about the machinery, not the diagnoses). Images come from
``../shared/data/isic-sample`` when present, else are generated.
"""

from locust import HttpUser, between, events, task  # noqa: I001 - gevent patches first
from locust.env import Environment

import argparse
import io
import itertools
import json
import os
import platform
import random
import re
import sys
import time
import uuid
from pathlib import Path

import gevent

from bench.common import ROOT, SAMPLE, median, percentile
from bench.stack import WEB_THREADS, json_line, running_stack

PASSWORD = "load-test-" + uuid.uuid4().hex[:12]
UPLOAD_TO_RESULT = "upload→result"

SETUP_CODE = """
import json
from django.contrib.auth import get_user_model
from diagnosis.models import Clinic, Membership, Patient, Lesion
User = get_user_model()
clinic = Clinic.objects.create(name="Load clinic")
out = {"clinic": clinic.pk, "clinicians": [], "readers": []}
def member(name, role):
    user = User.objects.create_user(username=name, password=PASSWORD)
    Membership.objects.create(user=user, clinic=clinic, role=role)
    return name
for i in range(CLINICIANS):
    name = member(f"load-clinician-{i}", "clinician")
    lesions = []
    for j in range(3):
        patient = Patient.objects.create(clinic=clinic, identifier=f"LOAD-{i}-{j}")
        lesions.append(Lesion.objects.create(
            clinic=clinic, patient=patient, label=f"lesion {j}"
        ).pk)
    out["clinicians"].append({"username": name, "lesions": lesions})
for i in range(READERS):
    out["readers"].append(member(f"load-reader-{i}", "clinician"))
out["dermatologist"] = member("load-derm", "dermatologist")
print("SETUP-JSON " + json.dumps(out))
"""

CHECK_CODE = """
import json
from django.db.models import Count, Q
from diagnosis.models import Case
rows = Case.objects.filter(clinic_id=CLINIC).annotate(
    n=Count("predictions", filter=Q(predictions__shadow=False))
).values("pk", "status", "n")
print("CHECK-JSON " + json.dumps(list(rows)))
"""


def image_source():
    """Endless distinct JPEGs: the ISIC sample's, else generated ones."""
    paths = sorted((SAMPLE / "images").glob("*.jpg")) if (SAMPLE / "images").is_dir() else []
    if paths:
        random.Random(0).shuffle(paths)
        for path in itertools.cycle(paths):
            yield path.name, path.read_bytes()
    from PIL import Image

    rng = random.Random(0)
    for index in itertools.count():
        image = Image.new("RGB", (600, 450), tuple(rng.randrange(256) for _ in range(3)))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        yield f"generated-{index}.jpg", buffer.getvalue()


IMAGES = image_source()
SETUP: dict = {}
UPLOADED: list[int] = []
LATENCIES: list[float] = []


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if not match:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


class BrowserUser(HttpUser):
    abstract = True
    username = ""

    def login(self):
        page = self.client.get("/accounts/login/", name="page: login")
        response = self.client.post(
            "/accounts/login/",
            {
                "username": self.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": csrf_from(page.text),
            },
            name="login",
            allow_redirects=False,
        )
        if response.status_code != 302:
            raise RuntimeError(f"login of {self.username} failed: {response.status_code}")


class Clinician(BrowserUser):
    """Uploads an image on the new-case page, polls the case until its result, reads pages."""

    wait_time = between(1, 3)
    accounts = iter(())

    def on_start(self):
        account = next(Clinician.accounts)
        self.username, self.lesions = account["username"], account["lesions"]
        self.login()

    @task
    def upload_and_wait(self):
        page = self.client.get("/cases/new/", name="page: new case")
        name, content = next(IMAGES)
        started = time.monotonic()
        with self.client.post(
            "/cases/new/",
            data={
                "csrfmiddlewaretoken": csrf_from(page.text),
                "clinic": SETUP["clinic"],
                "lesion": random.choice(self.lesions),
                "image_type": "dermoscopic",
            },
            files={"image": (name, content, "image/jpeg")},
            name="upload (page)",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            match = re.search(r"/cases/(\d+)/", response.headers.get("Location", ""))
            if response.status_code != 302 or not match:
                response.failure(f"upload answered {response.status_code}")
                return
        case_id = int(match.group(1))
        UPLOADED.append(case_id)
        while True:
            gevent.sleep(0.25)
            status = self.client.get(f"/cases/{case_id}/status/", name="poll: case status")
            if status.status_code != 200:
                continue
            state = status.json()["status"]
            if state in ("done", "failed"):
                break
        elapsed = time.monotonic() - started
        LATENCIES.append(elapsed)
        events.request.fire(
            request_type="FLOW",
            name=UPLOAD_TO_RESULT,
            response_time=elapsed * 1000,
            response_length=0,
            exception=None if state == "done" else RuntimeError("prediction failed"),
            context={},
        )
        self.client.get(f"/cases/{case_id}/", name="page: case")


class Dermatologist(BrowserUser):
    """Reads the pages a dermatologist lives on."""

    wait_time = between(0.5, 1.5)

    def on_start(self):
        self.username = SETUP["dermatologist"]
        self.login()

    @task(3)
    def dashboard(self):
        self.client.get("/", name="page: dashboard")

    @task(2)
    def review_queue(self):
        self.client.get("/review/", name="page: review queue")

    @task(1)
    def patients(self):
        self.client.get("/patients/", name="page: patients")


class ApiReader(HttpUser):
    """A clinic system reading over the API with a token."""

    wait_time = between(0.3, 1.0)
    accounts = iter(())

    def on_start(self):
        username = next(ApiReader.accounts)
        response = self.client.post(
            "/api/v1/auth/token/",
            json={"username": username, "password": PASSWORD},
            name="api: token",
        )
        self.client.headers["Authorization"] = f"Token {response.json()['token']}"

    @task(3)
    def cases(self):
        self.client.get("/api/v1/cases/?page_size=50", name="api: cases list")

    @task(1)
    def patients(self):
        self.client.get("/api/v1/patients/?page_size=50", name="api: patients list")

    @task(2)
    def one_case(self):
        if UPLOADED:
            case_id = random.choice(UPLOADED)
            self.client.get(f"/api/v1/cases/{case_id}/", name="api: case detail")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--clinicians", type=int, default=4)
    parser.add_argument("--api-readers", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--worker-concurrency", type=int, default=1, help="Celery processes")
    parser.add_argument("--inference-threads", type=int, default=1, help="torch threads each")
    parser.add_argument("--drain", type=int, default=240, help="seconds to wait for the last")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    return parser.parse_args(argv)


def _user_maker(args):
    """Before the stack starts: the clinic's users and lesions (into ``SETUP``)."""

    def make_users(stack) -> None:
        setup_code = SETUP_CODE.replace("PASSWORD", repr(PASSWORD))
        setup_code = setup_code.replace("CLINICIANS", str(args.clinicians))
        setup_code = setup_code.replace("READERS", str(args.api_readers))
        SETUP.update(json_line(stack.manage("shell", code=setup_code), "SETUP-JSON "))

    return make_users


def _load(stack, args, users: dict) -> tuple[Environment, int, float]:
    """Locust's users against the stack for ``--duration`` seconds: the environment (its
    stats), the uploads sent within the window and the window's length."""
    Clinician.accounts = iter(SETUP["clinicians"])
    ApiReader.accounts = iter(SETUP["readers"])
    Clinician.fixed_count = args.clinicians
    Dermatologist.fixed_count = 1
    ApiReader.fixed_count = args.api_readers
    environment = Environment(
        user_classes=[Clinician, Dermatologist, ApiReader],
        host=f"http://127.0.0.1:{stack.port}",
        events=events,
    )
    runner = environment.create_local_runner()
    total_users = sum(users.values())
    print(f"== load: {users} for {args.duration} s against gunicorn + worker")
    started = time.monotonic()
    runner.start(total_users, spawn_rate=total_users)
    gevent.sleep(args.duration)
    uploads_in_window = len(UPLOADED)
    runner.quit()
    return environment, uploads_in_window, time.monotonic() - started


def _final_cases(stack, drain: float) -> list[dict]:
    """The clinic's cases once none is queued or processing (or ``drain`` seconds passed)."""
    deadline = time.monotonic() + drain
    check = CHECK_CODE.replace("CLINIC", str(SETUP["clinic"]))
    while True:
        rows = json_line(stack.manage("shell", code=check), "CHECK-JSON ")
        pending = [r for r in rows if r["status"] in ("queued", "processing")]
        if not pending or time.monotonic() > deadline:
            return rows
        time.sleep(2)


PAGE_NAMES = ["page: dashboard", "page: review queue", "page: patients", "page: case"]
API_NAMES = ["api: cases list", "api: patients list", "api: case detail"]


def _response_times(stats, names: list[str]) -> list[float]:
    """Every response time of the requests named ``names`` (Locust keeps them as counts)."""
    return [
        t for n in names for t, c in stats.get(n, "GET").response_times.items() for _ in range(c)
    ]


def _p95(stats, name: str, method: str = "GET"):
    entry = stats.get(name, method)
    return entry.get_response_time_percentile(0.95) if entry.num_requests else None


def _result(args, users: dict, stats, window: float, uploads_in_window: int, rows) -> dict:
    """The run's figures: throughput, latencies, read times, errors and lost cases."""
    by_id = {r["pk"]: r for r in rows}
    lost = [pk for pk in UPLOADED if by_id.get(pk, {}).get("status") != "done"]
    duplicated = [r["pk"] for r in rows if r["n"] > 1]
    unknown = [r["pk"] for r in rows if r["pk"] not in set(UPLOADED)]
    p50 = median(LATENCIES)
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "stack": f"gunicorn {args.web_workers}×{WEB_THREADS} threads, Celery prefork "
        f"{args.worker_concurrency}× torch threads {args.inference_threads}, PostgreSQL, "
        "Redis, DEMO ResNet50 with Grad-CAM",
        "users": users,
        "duration_s": round(window, 1),
        "uploads": len(UPLOADED),
        "uploads_per_s": round(uploads_in_window / window, 2),
        "upload_to_result_p50_s": round(p50, 2) if LATENCIES else None,
        "upload_to_result_p95_s": round(percentile(LATENCIES, 0.95), 2) if LATENCIES else None,
        "page_read_p95_ms": percentile(_response_times(stats, PAGE_NAMES), 0.95),
        "api_read_p95_ms": percentile(_response_times(stats, API_NAMES), 0.95),
        "per_request_p95_ms": {n: _p95(stats, n) for n in PAGE_NAMES + API_NAMES},
        "requests": stats.total.num_requests,
        "errors": stats.total.num_failures,
        "error_examples": [str(e.to_dict())[:200] for e in stats.errors.values()][:5],
        "lost_cases": len(lost),
        "duplicated_predictions": len(duplicated),
        "cases_nobody_uploaded": len(unknown),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    users = {"Clinician": args.clinicians, "Dermatologist": 1, "ApiReader": args.api_readers}
    with running_stack(
        name="load",
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
        inference_threads=args.inference_threads,
        queues="inference,heatmaps,default",  # the whole product: Grad-CAM after each result
        before_start=_user_maker(args),
    ) as stack:
        environment, uploads_in_window, window = _load(stack, args, users)
        # Every uploaded case must end done, with exactly one prediction.
        rows = _final_cases(stack, args.drain)
        result = _result(args, users, environment.stats, window, uploads_in_window, rows)
        print(json.dumps(result, indent=1, ensure_ascii=False))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        print(f"== written to {path}")
        ok = (
            not result["errors"]
            and not result["lost_cases"]
            and not result["duplicated_predictions"]
        )
        print("== PASS: 0 errors, 0 lost cases" if ok else "== FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
