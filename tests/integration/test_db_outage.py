"""PostgreSQL stopped under a running app: 503 + Retry-After meanwhile, never a 500 or a hang, and
the app recovers by itself when the database is back.

The last test starts a PostgreSQL cluster of its own (initdb into a temporary folder, a free port)
so it can stop and start it without touching the suite's database, and a real gunicorn pointed at
it. It skips with a reason where the PostgreSQL server binaries are missing, and fails under
CI=true. The first tests raise the driver's errors in-process, so they run on any database.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore
from django.db import InterfaceError, OperationalError

from tests.conftest import api_client_for, logged_in_client, require
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "outage-test-password-1"
DB_PASSWORD = "db-url-secret-77"  # in DATABASE_URL; must never be logged
SETUP = f"""
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.contrib.auth import get_user_model
from diagnosis.models import Clinic, Membership, Role
user = get_user_model().objects.create_user("outage", password={PASSWORD!r})
clinic = Clinic.objects.create(name="Outage")
Membership.objects.create(user=user, clinic=clinic, role=Role.CLINICIAN)
"""


# --- in-process: the database's errors raised where the outage would raise them ---------------


def refuse(*args, **kwargs):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: refused')


@pytest.mark.django_db
def test_a_page_answers_a_503_page_while_the_database_is_down(client, clinician, monkeypatch):
    logged_in_client(client, clinician)
    monkeypatch.setattr("diagnosis.selectors.patients_for_user", refuse)
    response = client.get("/patients/")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Cache-Control"] == "no-store"
    assert b"Temporarily unavailable" in response.content
    assert "sessionid" not in response.cookies  # the login survives the outage


@pytest.mark.django_db
def test_the_api_answers_503_json_while_the_database_is_down(clinician, monkeypatch):
    api = api_client_for(clinician)
    monkeypatch.setattr(
        "diagnosis.api.views.PatientViewSet.get_queryset",
        lambda _self: (_ for _ in ()).throw(InterfaceError("connection already closed")),
    )
    response = api.get("/api/v1/patients/")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "unavailable" in response.json()["detail"]


@pytest.mark.django_db
def test_a_session_that_cannot_be_read_is_a_503_not_a_500(client, clinician, monkeypatch):
    logged_in_client(client, clinician)
    monkeypatch.setattr(SessionStore, "load", refuse)
    assert client.get("/").status_code == 503  # the view asks for the user
    # A page that never looks at the session: SessionMiddleware itself reads it (every request
    # renews the session) and fails, still a 503.
    response = client.get("/api/docs/?script=")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"


@pytest.mark.django_db
def test_the_outage_is_logged_without_the_driver_message(client, clinician, monkeypatch, caplog):
    logged_in_client(client, clinician)
    monkeypatch.setattr("diagnosis.selectors.patients_for_user", refuse)
    with caplog.at_level("ERROR", logger="diagnosis.middleware"):
        client.get("/patients/?q=MRN-SECRET-1")
    (record,) = [r for r in caplog.records if r.name == "diagnosis.middleware"]
    assert record.getMessage() == (
        "database unavailable (OperationalError, SQLSTATE -) on GET /patients/: answered 503"
    )


# --- a real PostgreSQL stopped and started under a real gunicorn ---------------------------


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trust auth, no fsync."""

    def __init__(self):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        require(bool(binaries), "needs the PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        as_root = os.geteuid() == 0
        if as_root:
            require(shutil.which("runuser") is not None, "needs runuser to run PostgreSQL")
        self.bin = Path(binaries[-1]).parent
        self.run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
        self.dir = Path(tempfile.mkdtemp(prefix="skinsense-pg-"))
        if as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool, *args, timeout=60):
        command = [*self.run_as, str(self.bin / tool), *map(str, args)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{tool}: {result.stdout}\n{result.stderr}"

    def start(self):
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.dir / "log", "-w", "start")

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def destroy(self):
        subprocess.run(
            [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate"]
            + ["-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name):
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture
def postgres():
    cluster = PrivatePostgres()
    yield cluster
    cluster.destroy()


@pytest.fixture
def app(postgres, tmp_path):
    """gunicorn serving SkinSense against the private cluster (migrated, one user)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    require(gunicorn.exists(), "needs gunicorn in the virtualenv")
    postgres.create_database("skinsense")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TEST_DATABASE_NAME", "CACHE_URL", "CELERY_BROKER_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="skinsense_site.settings",
        DATABASE_URL=f"postgres://postgres:{DB_PASSWORD}@127.0.0.1:{postgres.port}/skinsense",
        CONN_MAX_AGE="600",  # a persistent connection that the outage kills
        DATABASE_CONNECT_TIMEOUT="2",
        SKINSENSE_VAR_DIR=str(tmp_path / "var"),
        PRIVATE_MEDIA_ROOT=str(tmp_path / "private"),
        LOG_LEVEL="INFO",
    )
    setup = subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(gunicorn), "skinsense_site.wsgi:application", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "1", "--timeout", "30", "--graceful-timeout", "5"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/accounts/login/", timeout=2)
            break
        except requests.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("gunicorn did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)
    yield url, log_path
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def web_login(url) -> requests.Session:
    session = requests.Session()
    page = session.get(url + "/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        url + "/accounts/login/",
        data={"username": "outage", "password": PASSWORD, "csrfmiddlewaretoken": token},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:500]
    return session


@pytest.mark.services
def test_a_stopped_database_gives_503_and_the_app_recovers_on_its_own(postgres, app):
    url, log_path = app
    token = requests.post(
        url + "/api/v1/auth/token/", json={"username": "outage", "password": PASSWORD}, timeout=10
    ).json()["token"]
    api = {"Authorization": f"Token {token}"}
    browser = web_login(url)
    assert requests.get(url + "/api/v1/me/", headers=api, timeout=10).status_code == 200
    assert browser.get(url + "/", timeout=10).status_code == 200

    postgres.stop()
    timings = []
    for _ in range(3):
        started = time.monotonic()
        answer = requests.get(url + "/api/v1/me/", headers=api, timeout=15)
        timings.append(time.monotonic() - started)
        assert answer.status_code == 503, answer.text[:500]
        assert answer.headers["Retry-After"] == "30"
        assert "unavailable" in answer.json()["detail"]

        started = time.monotonic()
        page = browser.get(url + "/patients/", timeout=15)
        timings.append(time.monotonic() - started)
        assert page.status_code == 503, page.text[:500]
        assert page.headers["Retry-After"] == "30"
        assert "Temporarily unavailable" in page.text
        assert page.headers["Content-Security-Policy"]  # still the app's headers

        login = requests.post(
            url + "/api/v1/auth/token/",
            json={"username": "outage", "password": PASSWORD},
            timeout=15,
        )
        assert login.status_code == 503
        write = requests.post(
            url + "/api/v1/patients/", json={"identifier": "X"}, headers=api, timeout=15
        )
        assert write.status_code == 503
    assert max(timings) < 5, timings  # refused at once, no hang

    postgres.start()
    # The very first requests after the restart succeed: no app restart, no stale connection.
    assert requests.get(url + "/api/v1/me/", headers=api, timeout=10).status_code == 200
    assert browser.get(url + "/patients/", timeout=10).status_code == 200
    created = requests.post(
        url + "/api/v1/patients/", json={"identifier": "AFTER-OUTAGE"}, headers=api, timeout=10
    )
    assert created.status_code == 201, created.text[:500]

    log = log_path.read_text()
    assert "database unavailable (OperationalError" in log
    assert "Internal Server Error" not in log
    assert "Traceback" not in log
    assert DB_PASSWORD not in log
    assert token not in log
    assert PASSWORD not in log
    print(f"\n503 answered in {min(timings):.3f}-{max(timings):.3f} s while PostgreSQL was down")
