import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from ml.models import ModelVersion, TrainingRun
from tests import images

pytestmark = pytest.mark.django_db


@pytest.fixture
def sample_dir():
    if not images.sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
    return images.SAMPLE_DIR


def quick_train(sample_dir, **extra):
    options = {"init": "random", **extra}
    call_command(
        "train",
        data=str(sample_dir),
        format="ham10000",
        folds=2,
        epochs=1,
        image_size=32,
        backbone="resnet18",
        batch_size=8,
        num_workers=0,
        max_per_class=10,
        no_progress=True,
        name="smoke",
        **options,
    )


def test_train_registers_a_model_with_its_report_and_a_finished_run(client, admin_user, sample_dir):
    quick_train(sample_dir)
    run = TrainingRun.objects.get()
    assert run.status == "succeeded"
    assert len(run.history) == 2
    assert {"fold", "epoch", "val_balanced_accuracy"} <= set(run.history[0])
    version = run.model_version
    assert version.name == "smoke"
    assert not version.is_active
    test = version.metrics["test"]
    assert {"balanced_accuracy", "malignant_auc", "macro_auc", "ece", "per_class"} <= set(test)
    assert version.metrics["validation_roc"]
    assert version.metrics["config"]["folds"] == 2

    client.force_login(admin_user)
    page = client.get(reverse("admin:ml_modelversion_change", args=[version.pk]))
    for name in ("confusion_matrix", "roc", "reliability"):
        url = reverse("admin:ml_modelversion_plot", args=[version.pk, name])
        assert url.encode() in page.content
        png = client.get(url)
        assert png["Content-Type"] == "image/png"
        assert b"".join(png.streaming_content).startswith(b"\x89PNG")
    assert client.get(reverse("admin:ml_trainingrun_changelist")).status_code == 200


def test_evaluate_writes_the_json_report(tmp_path, sample_dir):
    quick_train(sample_dir)
    version = ModelVersion.objects.get()
    out = tmp_path / "report.json"
    call_command(
        "evaluate",
        str(version.pk),
        data=str(sample_dir),
        format="ham10000",
        max_per_class=3,
        json_path=str(out),
    )
    report = json.loads(out.read_text())
    assert {"balanced_accuracy", "malignant_auc", "macro_auc", "ece", "per_class"} <= set(report)
    assert report["model_version"]["id"] == version.pk
    assert report["data"]["unreadable"] == 0


def test_imagenet_init_without_cached_weights_is_a_clear_error(sample_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(CommandError, match="(?i)weights"):
        quick_train(sample_dir, init="imagenet")
    assert TrainingRun.objects.get().status == "failed"
    assert not ModelVersion.objects.exists()
