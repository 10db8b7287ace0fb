"""The Python client example in docs/api.md runs unchanged against a live server."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from tests import images

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def readme_example() -> str:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("A client in Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_logs_in_uploads_waits_and_prints_the_prediction(
    live_server, settings, active_model
):
    if not images.sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
    settings.DEBUG = True  # seed_demo is for development only
    call_command("seed_demo")
    settings.DEBUG = False
    result = subprocess.run(
        [sys.executable, "-c", readme_example()],
        env={
            **os.environ,
            "SKINSENSE_URL": live_server.url,
            "IMAGE": str(images.sample_image_path()),
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "malignant probability" in result.stdout
    assert f"model {active_model.name} {active_model.version}" in result.stdout
    assert "not a diagnosis" in result.stdout
