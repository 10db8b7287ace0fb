"""The production stack files: docker-compose.yml must be accepted by Debian's docker-compose
(1.29.2) and keep its shape (GPU worker on the inference queue, no database/broker ports on the
host); the Dockerfile must run gunicorn by default.

No Django here: these tests only read files and run `docker-compose config`, which needs the
docker-compose client but no Docker engine.
"""

import functools
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

EXPECTED_SERVICES = {"postgres", "redis", "web", "worker", "beat"}
INTERNAL_PORTS = {5432, 6379}


def _require_docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is not None:
        return exe
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(
            "docker-compose is not on PATH, and CI=true requires this check to run: install "
            "Debian's docker-compose package (apt-get install -y docker-compose)."
        )
    pytest.skip(
        "docker-compose is not on PATH, so docker-compose.yml cannot be validated here "
        "(install Debian's docker-compose package: apt-get install -y docker-compose)."
    )


@functools.cache
def _run_compose_config(exe: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        SECRET_KEY="test-only-compose-config-secret",
        POSTGRES_PASSWORD="test-only-compose-config-password",
    )
    # An inherited COMPOSE_FILE/project setting must not change what is validated.
    for name in ("COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR", "COMPOSE_PROJECT_NAME"):
        env.pop(name, None)
    result = subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), "config"],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result


def compose_config() -> dict:
    """The resolved compose file. Called from the test bodies rather than used as a fixture, so
    that with CI=true a missing docker-compose is reported as FAILED tests, not setup errors."""
    exe = _require_docker_compose()
    result = _run_compose_config(exe)
    assert result.returncode == 0, (
        f"`docker-compose -f docker-compose.yml config` exited {result.returncode}:\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict), result.stdout
    assert isinstance(config.get("services"), dict), result.stdout
    return config


def _as_argv(command) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def _queues(argv: list[str]) -> list[str]:
    queues: list[str] = []
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-Q", "--queues") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:]
        if value:
            queues.extend(q.strip() for q in value.split(",") if q.strip())
    return queues


def _published_ports(service: dict) -> list[tuple[int | None, int | None]]:
    """(published, target) for each port entry, short or long syntax."""
    pairs = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            target = entry.get("target")
            pairs.append((int(published) if published else None, int(target) if target else None))
            continue
        spec = str(entry).split("/", 1)[0]  # drop /tcp, /udp
        parts = spec.rsplit(":", 2)
        target_part = parts[-1]
        published_part = parts[-2] if len(parts) >= 2 else ""

        def first(port_range: str) -> int | None:
            port_range = port_range.split("-", 1)[0]
            return int(port_range) if port_range.isdigit() else None

        pairs.append((first(published_part), first(target_part)))
    return pairs


def test_compose_config_has_all_services():
    services = set(compose_config()["services"])
    missing = EXPECTED_SERVICES - services
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"


def test_worker_consumes_inference_queue():
    worker = compose_config()["services"]["worker"]
    argv = _as_argv(worker.get("command"))
    assert "celery" in argv, f"worker does not run a Celery worker: {argv}"
    assert "worker" in argv, f"worker does not run a Celery worker: {argv}"
    assert "inference" in _queues(argv), f"worker does not consume the inference queue: {argv}"


def test_worker_reserves_a_gpu():
    worker = compose_config()["services"]["worker"]
    devices = (((worker.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    gpu_devices = [d for d in devices if "gpu" in (d.get("capabilities") or [])]
    assert gpu_devices, (
        "worker has no GPU device reservation (deploy.resources.reservations.devices with "
        f"capabilities [gpu]): {json.dumps(worker.get('deploy'), default=str)}"
    )


def test_postgres_and_redis_are_not_published():
    services = compose_config()["services"]
    for name in ("postgres", "redis"):
        service = services[name]
        assert not service.get("ports"), f"{name} publishes ports to the host: {service['ports']}"
        assert service.get("network_mode") != "host", f"{name} uses the host network"
    for name, service in services.items():
        for published, target in _published_ports(service):
            where = f"service {name} publishes a PostgreSQL/Redis port: {service.get('ports')}"
            assert target not in INTERNAL_PORTS, where
            assert published not in INTERNAL_PORTS, where


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    if current:
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def test_dockerfile_cmd_runs_gunicorn():
    assert DOCKERFILE.is_file(), "Dockerfile is missing from the repository root"
    cmds = [args for keyword, args in _dockerfile_instructions() if keyword == "CMD"]
    assert cmds, "Dockerfile has no CMD"
    cmd = cmds[-1]  # the last CMD is the one that counts
    try:
        argv = json.loads(cmd)
    except json.JSONDecodeError:
        argv = shlex.split(cmd)
    assert isinstance(argv, list), f"cannot parse CMD: {cmd}"
    assert argv, f"cannot parse CMD: {cmd}"
    assert Path(argv[0]).name == "gunicorn", f"Dockerfile CMD does not run gunicorn: {argv}"
    assert "skinsense_site.wsgi:application" in argv, f"CMD does not serve the WSGI app: {argv}"


def test_dockerfile_runs_as_non_root():
    assert DOCKERFILE.is_file(), "Dockerfile is missing from the repository root"
    users = [args for keyword, args in _dockerfile_instructions() if keyword == "USER"]
    assert users, "Dockerfile never switches to a non-root USER"
    assert users[-1].split(":", 1)[0] not in ("root", "0"), f"final USER is root: {users[-1]}"


def test_cpu_profile_serves_with_onnx_runtime_and_covers_every_queue():
    """A host without a GPU runs the `cpu` profile: ONNX Runtime single-threaded processes on
    `inference` (exported first, no GPU reserved) and a PyTorch worker for `heatmaps`; with
    `web` and `beat`, every queue the app routes to is consumed."""
    services = compose_config()["services"]
    cpu_worker, cpu_heatmaps = services["cpu-worker"], services["cpu-heatmaps"]
    for service in (cpu_worker, cpu_heatmaps):
        assert service.get("profiles") == ["cpu"], "CPU workers must not start with a GPU stack"
        assert not (service.get("deploy") or {}).get("resources"), "no GPU reservation on CPU"
        assert service["environment"]["INFERENCE_DEVICE"] == "cpu"
    env = cpu_worker["environment"]
    assert env["INFERENCE_BACKEND"] == "onnx"
    assert str(env["INFERENCE_THREADS"]) == "1"
    script = " ".join(_as_argv(cpu_worker["command"]))
    assert script.index("manage.py export_onnx") < script.index("exec celery")
    worker_argv = shlex.split(script.split("exec ", 1)[1])
    assert _queues(worker_argv) == ["inference"]
    heatmap_queues = _queues(_as_argv(cpu_heatmaps["command"]))
    assert "heatmaps" in heatmap_queues
    assert "default" in heatmap_queues
    assert "profiles" not in services["worker"], "the GPU worker stays the default stack"
