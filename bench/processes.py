"""Real service processes on loopback, shared by the benchmarks' stack (``bench.stack``) and the
test suite's services (``tests/services.py``): a free port, the environment a process of this
project reads its settings from, Celery and other processes logging to a file, waiting for a
port or a log line, stopping processes, deleting a Redis key prefix.

Plain ``subprocess`` code: no Django, no pytest. Anything that does not start raises
``StackError``, a ``SystemExit`` with the reason (a script that does not catch it ends with the
message, as ``sys.exit`` would; the tests turn it into a failure).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LOG_TAIL = 3000  # characters of a process's log quoted when it did not start


class StackError(SystemExit):
    """A process could not be started (or a management command failed); ``str`` says why."""

    def __str__(self) -> str:
        return str(self.code)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def process_env(
    *,
    database_url: str,
    broker_url: str,
    key_prefix: str,
    media_root: str | Path,
    model_root: str | Path,
    inference_threads: int = 1,
    extra: dict | None = None,
) -> dict:
    """This environment plus the settings of a web, worker or beat process of the project:
    its database, its broker and key prefix, its media folders, CPU inference; ``extra`` last
    (it overrides any of them)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skinsense_site.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_KEY_PREFIX": key_prefix,
        "PRIVATE_MEDIA_ROOT": str(media_root),
        "MODEL_ROOT": str(model_root),
        "INFERENCE_DEVICE": "cpu",
        "INFERENCE_THREADS": str(inference_threads),
        **(extra or {}),
    }


def celery_command(*args: str) -> list[str]:
    """``celery -A skinsense_site <args>`` with this interpreter."""
    return [PYTHON, "-m", "celery", "-A", "skinsense_site", *args]


def worker_args(
    queues: str, *, pool: str, concurrency: int, extra: Sequence[str] = ()
) -> list[str]:
    """A Celery worker's arguments: ``queues``, the pool, no gossip or mingle (one worker),
    ``extra`` (e.g. ``--without-heartbeat``, ``-n NAME``), INFO logging (its ready line)."""
    args = ["worker", "-Q", queues, "--pool", pool, "--concurrency", str(concurrency)]
    return args + ["--without-gossip", "--without-mingle", *extra, "--loglevel", "INFO"]


def start_logged(command: Sequence[str], *, env: dict | None, log: Path) -> subprocess.Popen:
    """``command`` in the repository root, stdout and stderr written to ``log``."""
    with Path(log).open("w") as out:
        return subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _tail(log: Path | None) -> str:
    return "" if log is None else ":\n" + Path(log).read_text()[-LOG_TAIL:]


def wait_for_port(
    port: int,
    process: subprocess.Popen | None,
    what: str,
    log: Path | None = None,
    *,
    timeout: float = 120,
    every: float = 0.2,
) -> None:
    """Until something answers on ``port``; ``StackError`` when ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what} exited{_tail(log)}")
        if port_open(port):
            return
        time.sleep(every)
    raise StackError(f"{what} did not answer on port {port}")


def wait_for_log(
    marker: str, process: subprocess.Popen, what: str, log: Path, *, timeout: float = 120
) -> None:
    """Until ``marker`` is in ``log``; ``StackError`` when ``process`` exits or time is up."""
    deadline = time.monotonic() + timeout
    while marker not in Path(log).read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise StackError(f"{what} did not start{_tail(log)}")
        time.sleep(0.2)


def stop_processes(processes: Iterable[subprocess.Popen], *, timeout: float = 30) -> None:
    """SIGTERM each one still running (the last started first), wait for each, SIGKILL the
    ones that did not end within ``timeout`` seconds."""
    processes = list(processes)
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def delete_redis_keys(url: str, prefix: str, *, connect_timeout: float = 2) -> int:
    """Delete every key under ``prefix`` (queues nobody consumed, kombu bindings); returns how
    many. A server that is down holds nothing to delete: 0."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    except redis.ConnectionError:
        return 0
    finally:
        client.close()
