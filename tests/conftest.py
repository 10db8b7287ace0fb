import os
import shutil
import socket
from pathlib import Path

import django.test
import pytest
import torch
from django.http import HttpRequest
from rest_framework.test import APIClient

from diagnosis.models import Role
from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from tests import images
from tests.factories import PASSWORD, ClinicFactory, MembershipFactory, UserFactory
from tests.images import upload  # noqa: F401 - the tests import it from here too

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip when a real service is missing, except in CI, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def real_services():
    """PostgreSQL (the suite's database) and Redis, or a skip (a failure in CI)."""
    from django.db import connection

    require(
        connection.vendor == "postgresql",
        "needs PostgreSQL: run through `make test`, or set DATABASE_URL=postgres://…",
    )
    require(port_open("127.0.0.1", 6379), "needs Redis on 127.0.0.1:6379")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # noqa: ARG001 - a fixture asked for its effect
    """After the run, end sessions that live-server threads or worker processes left open on
    the test database, so that it can be dropped (and say which they were)."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid), application_name, left(query, 80)"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
            for _, application, query in cursor.fetchall():
                print(f"\nended a leftover test-database session: {application!r} {query!r}")
        connection.close()


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttling counts live in the cache: every test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path):
    """Each test stores images and models in its own folder."""
    media = tmp_path / "private"
    settings.PRIVATE_MEDIA_ROOT = media
    settings.MODEL_ROOT = media / "models"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media), "base_url": None},
        },
    }
    return media


def drain(response) -> bytes:
    """Read a streamed file response and close its file (without closing the response, which
    would end the request and close the test's database connection)."""
    content = b"".join(response.streaming_content)
    for close in response._resource_closers:
        close()
    return content


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "models" not in p.parts]


# --- people ------------------------------------------------------------------------------


@pytest.fixture
def clinic(db):  # noqa: ARG001 - a fixture asked for its effect
    return ClinicFactory(name="North Clinic")


@pytest.fixture
def other_clinic(db):  # noqa: ARG001 - a fixture asked for its effect
    return ClinicFactory(name="South Clinic")


@pytest.fixture
def clinician(clinic):
    return MembershipFactory(clinic=clinic, role=Role.CLINICIAN, user__username="clin").user


@pytest.fixture
def colleague(clinic):
    return MembershipFactory(clinic=clinic, role=Role.DERMATOLOGIST, user__username="derm").user


@pytest.fixture
def outsider(other_clinic):
    return MembershipFactory(clinic=other_clinic, role=Role.CLINICIAN, user__username="out").user


class Client(django.test.Client):
    """The test client, whose ``login()`` hands authenticate() a request as django-axes requires
    (the lockout is checked per request; Django's test client passes none)."""

    def login(self, **credentials):
        credentials.setdefault("request", HttpRequest())
        return super().login(**credentials)


@pytest.fixture
def client():
    return Client()


def logged_in_client(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def api_client_for(user) -> APIClient:
    api = APIClient()
    response = api.post(
        "/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    api.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return api


@pytest.fixture
def unique_user(db):  # noqa: ARG001 - a fixture asked for its effect
    return UserFactory()


# --- models ------------------------------------------------------------------------------


def small_checkpoint(*, seed: int = 0, backbone: str = "resnet18", **kwargs) -> Checkpoint:
    """A real SkinSenseNet with random weights (built here; nothing is downloaded)."""
    torch.manual_seed(seed)
    network = SkinSenseNet(num_classes=len(ISIC2019_CLASSES), backbone=backbone)
    return Checkpoint(
        backbone=backbone, classes=ISIC2019_CLASSES, state_dict=network.state_dict(), **kwargs
    )


@pytest.fixture(scope="session")
def small_checkpoint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoints") / "small.pt"
    save_checkpoint(small_checkpoint(), path)
    return path


@pytest.fixture
def active_model(db, small_checkpoint_file, tmp_path):  # noqa: ARG001 - a fixture asked for its effect
    from ml.services import model_version_register

    copy = tmp_path / "upload.pt"
    shutil.copy(small_checkpoint_file, copy)
    return model_version_register(path=copy, name="test-resnet18", version="1", activate=True)


# --- images ------------------------------------------------------------------------------


@pytest.fixture
def sample_jpeg_bytes():
    if not images.sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
    return images.sample_image_path().read_bytes()


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A resnet18 SkinSenseNet (random weights, 64 px preset) saved and exported to ONNX once."""
    from ml.engine.model.checkpoint import save_checkpoint
    from ml.engine.model.transforms import default_preprocessing
    from ml.engine.serve import onnx as onnx_engine

    root = tmp_path_factory.mktemp("onnx")
    checkpoint = small_checkpoint(
        seed=7,
        preprocessing=default_preprocessing(64),
        temperature=1.3,
        thresholds={"malignant": 0.4, "confidence": 0.5},
    )
    weights = root / "small.pt"
    sha256 = save_checkpoint(checkpoint, weights)
    onnx_path = onnx_engine.export_onnx(weights, sha256, root / "cache")
    return {"weights": weights, "sha256": sha256, "onnx": onnx_path, "root": root}
