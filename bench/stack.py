"""The real stack on loopback for the benchmarks: gunicorn + a Celery worker + PostgreSQL + Redis.

``running_stack`` recreates its own PostgreSQL database, migrates it, collects static files,
activates the DEMO model (ResNet50, random weights), starts gunicorn and a Celery worker with
their own Redis key prefix and a temporary private media folder, waits until the worker has
loaded its model, and yields a ``Stack``; on the way out it stops both processes, deletes the
Redis keys of its prefix and the temporary folder. ``bench.load`` and ``bench.latency`` use it::

    with running_stack(name="bench", inference_threads=2) as stack:
        stack.manage("shell", code="print(1)")
        requests.get(stack.url + "/api/v1/")

Anything that goes wrong while starting raises ``StackError``: a ``SystemExit`` with the reason
(a script that does not catch it ends with the message, as ``sys.exit`` would). The process
helpers themselves are ``bench.processes`` (the tests' services use them too).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import (
    PYTHON,
    ROOT,
    StackError,
    celery_command,
    delete_redis_keys,
    free_port,
    process_env,
    start_logged,
    stop_processes,
    wait_for_log,
    wait_for_port,
    worker_args,
)

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"
WEB_THREADS = 4  # threads of each gunicorn process


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
        stop_processes(self.processes)


def stack_env(
    *,
    database: str,
    workdir: Path,
    key_prefix: str,
    inference_threads: int,
    extra: dict | None = None,
) -> dict:
    """The settings of the stack's processes (production-like, on loopback, no TLS)."""
    production_like = {
        "DEBUG": "false",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "CONN_MAX_AGE": "60",
        "STATIC_ROOT": str(workdir / "static"),
        "THROTTLE_UPLOADS": "600/min",
        "PYTHONUNBUFFERED": "1",
    }
    return process_env(
        database_url=f"postgres://postgres@127.0.0.1:5432/{database}",
        broker_url=REDIS_URL,
        key_prefix=key_prefix,
        media_root=workdir / "media",
        model_root=workdir / "media" / "models",
        inference_threads=inference_threads,
        extra={**production_like, **(extra or {})},
    )


def _prepare(stack: Stack, before_start: Callable[[Stack], None] | None) -> None:
    """A fresh database, migrated, static files and the DEMO model; then ``before_start``."""
    recreate_database(stack.database)
    stack.manage("migrate", "--noinput")
    stack.manage("collectstatic", "--noinput")
    stack.manage("ensure_demo_model")
    if before_start is not None:
        before_start(stack)


def _start(stack: Stack, *, web_workers: int, concurrency: int, queues: str):
    """gunicorn and the Celery worker; returns once the worker has warmed its model up."""
    web_command = [PYTHON, "-m", "gunicorn", "skinsense_site.wsgi:application"]
    web_command += ["--bind", f"127.0.0.1:{stack.port}", "--workers", str(web_workers)]
    web_command += ["--threads", str(WEB_THREADS), "--timeout", "60"]
    stack.processes.append(start_logged(web_command, env=stack.env, log=stack.web_log))
    worker_command = celery_command(*worker_args(queues, pool="prefork", concurrency=concurrency))
    stack.processes.append(start_logged(worker_command, env=stack.env, log=stack.worker_log))
    web, worker = stack.processes
    wait_for_port(stack.port, web, "gunicorn", stack.web_log)
    wait_for_log("ready.", worker, "the Celery worker", stack.worker_log)
    wait_for_log("worker warm-up", worker, "the worker's model warm-up", stack.worker_log)


@contextmanager
def running_stack(
    *,
    name: str = "load",
    web_workers: int = 2,
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
        _prepare(stack, before_start)
        _start(
            stack,
            web_workers=web_workers,
            concurrency=worker_concurrency,
            queues=queues,
        )
        yield stack
    finally:
        stack.stop()
        # Best effort: cleaning up must never hide the benchmark's own result.
        with contextlib.suppress(Exception):
            delete_redis_keys(REDIS_URL, key_prefix)
        shutil.rmtree(workdir, ignore_errors=True)
