"""Real service processes for the tests: Celery workers, Celery beat and private Redis servers.

Nothing here stands in for a service: each is its own OS process talking to the suite's
PostgreSQL database and a real Redis. Tests that use them need the ``real_services`` fixture
(conftest), which skips without PostgreSQL/Redis and fails instead when CI=true. The process
plumbing (free ports, Celery command lines, waiting, stopping, Redis key cleanup) is
``bench.processes``, shared with the benchmarks' stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from django.db import connection

from bench.processes import (
    StackError,
    celery_command,
    delete_redis_keys,
    free_port,
    port_open,
    process_env,
    start_logged,
    stop_processes,
    wait_for_log,
    wait_for_port,
    worker_args,
)
from diagnosis.models import Case, CaseStatus
from skinsense_site.celery import app as celery_app

__all__ = [
    "BROKER_URL",
    "KEY_PREFIX",
    "Beat",
    "CeleryProcess",
    "PrivateRedis",
    "Worker",
    "flush_broker",
    "free_port",
    "service_env",
    "submit_cases",
    "use_broker",
    "wait_for",
]

BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# This run's own keys on the shared Redis, so concurrent test runs never take each other's tasks.
KEY_PREFIX = f"skinsense-test-{os.getpid()}:"


def flush_broker(url: str = BROKER_URL) -> None:
    """Delete this run's keys (a private server that is down holds nothing to flush)."""
    delete_redis_keys(url, KEY_PREFIX)


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


def service_env(settings, broker_url: str, extra_env: dict | None = None) -> dict:
    """The environment of a service process on the suite's database and media folders."""
    db = connection.settings_dict
    return process_env(
        database_url=(
            f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        broker_url=broker_url,
        key_prefix=KEY_PREFIX,
        media_root=settings.PRIVATE_MEDIA_ROOT,
        model_root=settings.MODEL_ROOT,
        inference_threads=1,
        extra=extra_env,
    )


class CeleryProcess:
    """``celery -A skinsense_site <args>`` as its own process, logging to a file."""

    name = "celery"
    ready_marker = ""

    def __init__(self, tmp_path, settings, args, *, broker_url=BROKER_URL, extra_env=None):
        self.broker_url = broker_url
        self.log_path = tmp_path / f"{self.name}-{time.monotonic_ns()}.log"
        self.process = start_logged(
            celery_command(*args),
            env=service_env(settings, broker_url, extra_env),
            log=self.log_path,
        )
        try:
            wait_for_log(
                self.ready_marker,
                self.process,
                f"the Celery {self.name}",
                self.log_path,
                timeout=90,
            )
        except StackError as error:
            self.process.kill()
            pytest.fail(str(error))

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_processes([self.process])


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
        name = f"test-{os.getpid()}-{time.monotonic_ns()}@%h"
        args = worker_args(
            queues, pool=pool, concurrency=concurrency, extra=["--without-heartbeat", "-n", name]
        )
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
        try:
            wait_for_port(self.port, self.process, "redis-server", timeout=10, every=0.05)
        except StackError as error:
            pytest.fail(str(error))

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown (nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def is_up(self) -> bool:
        return port_open(self.port)


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
