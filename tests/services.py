"""Real service processes for the tests: Celery workers, Celery beat and private Redis servers.

Nothing here stands in for a service: each is its own OS process talking to the suite's
PostgreSQL database and a real Redis. Tests that use them need the ``real_services`` fixture
(conftest), which skips without PostgreSQL/Redis and fails instead when CI=true.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from diagnosis.models import Case, CaseStatus
from skinsense_site.celery import app as celery_app

BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# This run's own keys on the shared Redis, so concurrent test runs never take each other's tasks.
KEY_PREFIX = f"skinsense-test-{os.getpid()}:"
ROOT = Path(__file__).resolve().parents[1]


def flush_broker(url: str = BROKER_URL) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        for key in client.scan_iter(match=KEY_PREFIX + "*"):
            client.delete(key)
    except redis.ConnectionError:
        pass  # a private server that is down holds nothing to flush
    finally:
        client.close()


def use_broker(url: str, eager: bool) -> None:
    """Point this (test) process's Celery app at ``url``, as the web process would be."""
    options = dict(celery_app.conf.broker_transport_options or {})
    if url.startswith("redis"):
        options["global_keyprefix"] = KEY_PREFIX
    else:
        options.pop("global_keyprefix", None)
    celery_app.conf.update(
        broker_url=url, task_always_eager=eager, broker_transport_options=options
    )
    # Drop any cached connection pool so the new broker URL takes effect.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(settings, broker_url: str, extra_env: dict | None = None) -> dict:
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skinsense_site.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_KEY_PREFIX": KEY_PREFIX,
        "PRIVATE_MEDIA_ROOT": str(settings.PRIVATE_MEDIA_ROOT),
        "MODEL_ROOT": str(settings.MODEL_ROOT),
        "INFERENCE_DEVICE": "cpu",
        "INFERENCE_THREADS": "1",
        **(extra_env or {}),
    }


class CeleryProcess:
    """``celery -A skinsense_site <args>`` as its own process, logging to a file."""

    name = "celery"
    ready_marker = ""

    def __init__(self, tmp_path, settings, args, *, broker_url=BROKER_URL, extra_env=None):
        self.broker_url = broker_url
        self.log_path = tmp_path / f"{self.name}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "skinsense_site", *args],
            cwd=ROOT,
            env=service_env(settings, broker_url, extra_env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while self.ready_marker not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"the Celery {self.name} did not start:\n" + self.log()[-3000:])
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Worker(CeleryProcess):
    """A real Celery worker consuming this run's queues (``pool``: solo or prefork)."""

    name = "worker"
    ready_marker = "ready."

    def __init__(
        self,
        tmp_path,
        settings,
        *,
        pool="solo",
        concurrency=1,
        queues="inference,heatmaps,default",
        broker_url=BROKER_URL,
        extra_env=None,
    ):
        flush_broker(broker_url)
        args = ["worker", "-Q", queues, "--pool", pool, "--concurrency", str(concurrency)]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        args += ["-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h", "--loglevel", "INFO"]
        super().__init__(tmp_path, settings, args, broker_url=broker_url, extra_env=extra_env)
        use_broker(broker_url, eager=False)

    def children(self) -> list[int]:
        """The prefork pool's child processes (where tasks run)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        use_broker("memory://", eager=True)
        super().stop()
        flush_broker(self.broker_url)


class Beat(CeleryProcess):
    """Celery beat: sends the periodic tasks (the stuck-case sweeper) on its schedule."""

    name = "beat"
    ready_marker = "beat: Starting"

    def __init__(self, tmp_path, settings, *, broker_url=BROKER_URL, extra_env=None):
        schedule = tmp_path / f"beat-schedule-{time.monotonic_ns()}"
        args = ["beat", "--schedule", str(schedule), "--loglevel", "INFO"]
        super().__init__(tmp_path, settings, args, broker_url=broker_url, extra_env=extra_env)


class PrivateRedis:
    """A redis-server of the test's own on a free port, so it can be killed and restarted
    without touching the machine's Redis. Nothing is persisted: a restart loses every queue."""

    def __init__(self, tmp_path):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown (nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def is_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True


def wait_for(case_id: int, *, timeout: float = 90) -> Case:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        case = Case.objects.get(pk=case_id)
        if case.status in (CaseStatus.DONE, CaseStatus.FAILED):
            return case
        time.sleep(0.1)
    pytest.fail(f"case {case_id} did not finish within {timeout} s (status {case.status})")


def submit_cases(clinic, user, count, *, offset=0, size=(320, 240)) -> list[int]:
    """``count`` distinct cases on one new lesion of ``clinic`` (enqueued as the app does)."""
    from diagnosis import services
    from tests import images
    from tests.conftest import upload
    from tests.factories import LesionFactory, PatientFactory

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    return [
        services.case_submit(
            user=user,
            lesion=lesion,
            upload=upload(images.jpeg_bytes(size=size, color=(10 + 20 * (i + offset), 90, 60))),
        ).case.pk
        for i in range(count)
    ]
