"""The real stack on loopback for the benchmarks: gunicorn + a Celery worker + PostgreSQL + Redis.

``running_stack`` recreates its own PostgreSQL database, migrates it, collects static files,
activates the DEMO model (ResNet50, random weights), starts gunicorn and a Celery worker with
their own Redis key prefix and a temporary private media folder, waits until the worker has
loaded its model, and yields a ``Stack``; on the way out it stops both processes, deletes the
Redis keys of its prefix and the temporary folder. ``bench/load.py`` and ``bench/latency.py``
use it::

    with running_stack(name="bench", inference_threads=2) as stack:
        stack.manage("shell", code="print(1)")
        requests.get(stack.url + "/api/v1/")

Anything that goes wrong while starting raises ``StackError``: a ``SystemExit`` with the reason
(a script that does not catch it ends with the message, as ``sys.exit`` would).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"


class StackError(SystemExit):
    """The stack could not be started (or a management command failed); ``str`` says why."""

    def __str__(self) -> str:
        return str(self.code)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict, *args: str, code: str | None = None) -> str:
    command = [PYTHON, "manage.py", *args]
    if code is not None:
        command += ["-c", code]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def json_line(output: str, marker: str):
    for line in output.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    raise StackError(f"no {marker} in:\n{output}")


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as db:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')


def wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise StackError(f"{what} did not answer on port {port}")


def wait_for_log(marker: str, process: subprocess.Popen, what: str, log: Path, timeout=120):
    deadline = time.monotonic() + timeout
    while marker not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise StackError(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (queues nobody consumed, kombu bindings); best effort."""
    try:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
        return len(keys)
    except Exception:  # noqa: BLE001 - cleaning up must never hide the benchmark's own result
        return 0


@dataclass
class Stack:
    """A started stack: its environment (for ``manage.py``), port, folders and processes."""

    env: dict
    port: int
    workdir: Path
    database: str
    key_prefix: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def web_log(self) -> Path:
        return self.workdir / "gunicorn.log"

    @property
    def worker_log(self) -> Path:
        return self.workdir / "worker.log"

    def manage(self, *args: str, code: str | None = None) -> str:
        return manage(self.env, *args, code=code)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def stack_env(
    *,
    database: str,
    workdir: Path,
    key_prefix: str,
    inference_threads: int,
    extra: dict | None = None,
) -> dict:
    """The settings of the stack's processes (production-like, on loopback, no TLS)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skinsense_site.settings",
        "DEBUG": "false",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_KEY_PREFIX": key_prefix,
        "PRIVATE_MEDIA_ROOT": str(workdir / "media"),
        "STATIC_ROOT": str(workdir / "static"),
        "MODEL_ROOT": str(workdir / "media" / "models"),
        "INFERENCE_DEVICE": "cpu",
        "INFERENCE_THREADS": str(inference_threads),
        "THROTTLE_UPLOADS": "600/min",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


@contextmanager
def running_stack(
    *,
    name: str = "load",
    web_workers: int = 2,
    web_threads: int = 4,
    worker_concurrency: int = 1,
    inference_threads: int = 1,
    queues: str = "inference,default",
    extra_env: dict | None = None,
    before_start: Callable[[Stack], None] | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[Stack]:
    """Start the stack (database ``skinsense_<name>``, key prefix ``skinsense-<name>-<pid>:``),
    yield it once the worker's model is loaded, tear it down afterwards.

    ``extra_env`` adds or overrides settings (e.g. ``INFERENCE_BACKEND``); ``before_start`` runs
    after the database is ready and before gunicorn and the worker start (e.g. making users).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"skinsense-{name}-"))
    port = free_port()
    database = f"skinsense_{name}"
    key_prefix = f"skinsense-{name}-{os.getpid()}:"
    env = stack_env(
        database=database,
        workdir=workdir,
        key_prefix=key_prefix,
        inference_threads=inference_threads,
        extra=extra_env,
    )
    stack = Stack(env=env, port=port, workdir=workdir, database=database, key_prefix=key_prefix)
    try:
        log(f"== database {database}, media {workdir}, port {port}")
        recreate_database(database)
        stack.manage("migrate", "--noinput")
        stack.manage("collectstatic", "--noinput")
        stack.manage("ensure_demo_model")
        if before_start is not None:
            before_start(stack)

        with stack.web_log.open("w") as web_log:
            stack.processes.append(
                subprocess.Popen(
                    [PYTHON, "-m", "gunicorn", "skinsense_site.wsgi:application"]
                    + ["--bind", f"127.0.0.1:{port}", "--workers", str(web_workers)]
                    + ["--threads", str(web_threads), "--timeout", "60"],
                    cwd=ROOT,
                    env=env,
                    stdout=web_log,
                    stderr=subprocess.STDOUT,
                )
            )
        with stack.worker_log.open("w") as worker_log:
            stack.processes.append(
                subprocess.Popen(
                    [PYTHON, "-m", "celery", "-A", "skinsense_site", "worker", "-Q"]
                    + [queues, "--pool", "prefork"]
                    + ["--concurrency", str(worker_concurrency), "--without-gossip"]
                    + ["--without-mingle", "--loglevel", "INFO"],
                    cwd=ROOT,
                    env=env,
                    stdout=worker_log,
                    stderr=subprocess.STDOUT,
                )
            )
        web, worker = stack.processes
        wait_for_port(port, web, "gunicorn", stack.web_log)
        wait_for_log("ready.", worker, "the Celery worker", stack.worker_log)
        wait_for_log("worker warm-up", worker, "the worker's model warm-up", stack.worker_log)
        yield stack
    finally:
        stack.stop()
        delete_redis_keys(REDIS_URL, key_prefix)
        shutil.rmtree(workdir, ignore_errors=True)
