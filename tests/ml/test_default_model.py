"""`ensure_default_model`: `make run` activates the model shipped in the repository (checked by
SHA-256 against its manifest); the DEMO model only when the file is missing."""

import json
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml.engine.files import sha256_file
from ml.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def shipped(tmp_path, settings, small_checkpoint_file):
    path = tmp_path / "weights" / "shipped.pt"
    path.parent.mkdir()
    shutil.copy(small_checkpoint_file, path)
    manifest = {"name": "ham10000-test", "version": "1", "sha256": sha256_file(path)}
    path.with_suffix(".json").write_text(json.dumps(manifest))
    settings.DEFAULT_MODEL_PATH = str(path)
    return path


@pytest.mark.usefixtures("shipped")
def test_the_shipped_model_is_registered_and_activated_once(capsys):
    call_command("ensure_default_model")
    active = ModelVersion.objects.get(is_active=True)
    assert (active.name, active.version, active.is_demo) == ("ham10000-test", "1", False)
    assert "trained on HAM10000 only" in capsys.readouterr().out
    call_command("ensure_default_model")
    assert ModelVersion.objects.count() == 1
    assert "nothing to do" in capsys.readouterr().out


def test_a_changed_shipped_file_is_refused(shipped):
    with open(shipped, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CommandError, match="SHA-256"):
        call_command("ensure_default_model")
    assert not ModelVersion.objects.exists()


def test_without_the_file_the_demo_model_is_activated(settings, tmp_path):
    settings.DEFAULT_MODEL_PATH = str(tmp_path / "absent.pt")
    call_command("ensure_default_model")
    assert ModelVersion.objects.get(is_active=True).is_demo


def test_ship_model_writes_half_precision_weights_a_manifest_and_the_held_out_ids(
    tmp_path, settings
):
    import torch

    from ml.engine.model.checkpoint import load_checkpoint, save_checkpoint
    from tests.conftest import small_checkpoint

    trained = tmp_path / "model.pt"
    save_checkpoint(small_checkpoint(metadata={"test_image_ids": ["ISIC_1", "ISIC_2"]}), trained)
    out = tmp_path / "weights" / "default.pt"
    call_command("ship_model", str(trained), str(out), "--name", "n", "--model-version", "v")
    shipped = load_checkpoint(out)
    floats = [t for t in shipped.state_dict.values() if t.is_floating_point()]
    assert floats
    assert all(t.dtype == torch.float16 for t in floats)
    assert shipped.metadata["test_image_ids"] == ["ISIC_1", "ISIC_2"]
    assert out.stat().st_size < trained.stat().st_size * 0.6
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256_file(out)
    original = load_checkpoint(trained).build_model().eval()
    halved = shipped.build_model().eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = original(image), halved(image)
    assert torch.allclose(a[1].softmax(-1), b[1].softmax(-1), atol=2e-2)
    # serving takes the tensors as they are (take_weights): they run in float32
    served = load_checkpoint(out).build_model(take_weights=True)
    assert all(p.dtype == torch.float32 for p in served.parameters())
    with torch.no_grad():
        c = served(image)
    assert torch.allclose(b[1], c[1], atol=1e-5)
    settings.DEFAULT_MODEL_PATH = str(out)
    call_command("ensure_default_model")
    assert ModelVersion.objects.get(is_active=True).metrics["test_image_ids"] == [
        "ISIC_1",
        "ISIC_2",
    ]
