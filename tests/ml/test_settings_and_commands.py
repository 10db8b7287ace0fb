import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from diagnosis.models import Membership, Role

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, **env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_debug_off_and_real_secrets():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="k" * 20 + "-a-real-secret-of-fifty-plus-characters-9f8e7d",
        ALLOWED_HOSTS="skinsense.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DEBUG": "false"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_openapi_schema_validates_without_warnings():
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_creates_the_fixed_users(settings):
    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")
    users = get_user_model().objects.filter(username__in=["demo", "derm", "outsider"])
    assert users.count() == 3
    roles = {
        (m.user.username, m.clinic.name, m.role)
        for m in Membership.objects.select_related("user", "clinic")
    }
    assert roles == {
        ("demo", "Demo Clinic", Role.CLINICIAN),
        ("derm", "Demo Clinic", Role.DERMATOLOGIST),
        ("clinicadmin", "Demo Clinic", Role.CLINIC_ADMIN),
        ("outsider", "Other Clinic", Role.CLINICIAN),
    }
    assert users.get(username="demo").check_password(settings.DEMO_PASSWORD)


@pytest.mark.django_db
def test_seed_demo_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not get_user_model().objects.filter(username="demo").exists()


@pytest.mark.usefixtures("settings")
@pytest.mark.django_db
def test_the_demo_model_is_registered_once_and_flagged():
    from ml.models import ModelVersion

    call_command("ensure_demo_model")
    call_command("ensure_demo_model")
    version = ModelVersion.objects.get()
    assert version.is_demo
    assert version.is_active
    assert version.backbone == "resnet50"
    assert len(version.classes) == 8


@pytest.mark.django_db
def test_without_an_active_model_the_demo_model_is_activated_again(small_checkpoint_file):
    from ml.models import ModelVersion
    from ml.services import model_version_register

    call_command("ensure_demo_model")
    trained = model_version_register(path=small_checkpoint_file, name="trained", version="1")
    call_command("ensure_demo_model")  # the trained one is not active: the demo stays active
    assert ModelVersion.objects.get(is_active=True).is_demo
    ModelVersion.objects.update(is_active=False)
    call_command("ensure_demo_model")
    assert ModelVersion.objects.get(is_active=True).is_demo
    assert ModelVersion.objects.filter(is_demo=True).count() == 1
    assert not ModelVersion.objects.get(pk=trained.pk).is_active
