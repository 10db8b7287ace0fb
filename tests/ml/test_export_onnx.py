"""manage.py export_onnx: the active model's ONNX export, and int8 calibrated on its data."""

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml.engine.files import sha256_file
from ml.engine.serve import onnx as onnx_engine
from ml.engine.serve.onnx import OnnxPredictor
from tests import images
from tests.images import needs_sample

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 64


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def registered(db, small_model):  # noqa: ARG001 - a fixture asked for its effect
    from ml.services import model_version_register

    return model_version_register(
        path=small_model["weights"], name="onnx-small", version="1", activate=True
    )


def test_the_command_exports_the_active_model_into_model_root(registered, settings, capsys):
    call_command("export_onnx")
    onnx_path = Path(settings.MODEL_ROOT) / "onnx" / f"{registered.weights_sha256}.onnx"
    assert onnx_path.is_file()
    assert "exported" in capsys.readouterr().out
    call_command("export_onnx", "--model-version", str(registered.pk))
    assert "cached" in capsys.readouterr().out
    assert OnnxPredictor.from_cache(onnx_path).codes == [c["code"] for c in registered.classes]


def test_the_command_refuses_weights_that_differ_from_the_registry(registered, settings):
    with open(registered.weights_path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CommandError, match="do not match the registry"):
        call_command("export_onnx", "--model-version", "onnx-small:1")
    assert not (Path(settings.MODEL_ROOT) / "onnx").exists()


@pytest.mark.usefixtures("registered")
def test_int8_without_calibration_data_is_refused():
    with pytest.raises(CommandError, match="--calibration-data"):
        call_command("export_onnx", "--int8")


@pytest.mark.shared_data
def test_the_command_calibrates_on_training_images_and_gates_on_held_out_ones(
    registered, settings, capsys
):
    needs_sample()
    call_command(
        "export_onnx",
        "--int8",
        "--calibration-data",
        str(images.SAMPLE_DIR),
        "--format",
        "ham10000",
        "--calibration-images",
        "8",
        "--eval-images",
        "24",
    )
    out = capsys.readouterr().out
    root = Path(settings.MODEL_ROOT) / "onnx"
    int8_path = root / f"{registered.weights_sha256}.int8.onnx"
    sidecar = onnx_engine.read_sidecar(int8_path)
    gate = sidecar["int8"]
    assert gate["file"] == int8_path.name
    assert gate["sha256"] == sha256_file(int8_path)
    assert gate["images"] == 24
    assert gate["calibration_images"] == 8
    assert gate["offered"] is (
        gate["fp32_balanced_accuracy"] - gate["int8_balanced_accuracy"] <= 0.01 + 1e-12
    )
    assert f"fp32 {gate['fp32_balanced_accuracy']:.4f}" in out
    assert f"int8 {gate['int8_balanced_accuracy']:.4f}" in out
    assert OnnxPredictor.from_cache(int8_path).variant == "int8"
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"{registered.weights_sha256}{suffix}" for suffix in (".onnx", ".int8.onnx", ".json")]
    )  # no temporary files left behind


def test_calibration_images_are_spread_over_the_classes():
    from ml.engine.data.readers import Sample
    from ml.management.commands.export_onnx import _spread_over_classes

    labels = [i % 4 for i in range(90)] + [4] * 10  # class 4 is rare
    samples = [Sample(Path(f"{i}.jpg"), label, f"l{i}", None, "") for i, label in enumerate(labels)]
    chosen = _spread_over_classes(samples, 10, seed=1)
    assert len(chosen) == len(set(chosen)) == 10
    assert {s.label for s in chosen} == {0, 1, 2, 3, 4}  # the rare class too
    assert chosen == _spread_over_classes(samples, 10, seed=1)
    assert len(_spread_over_classes(samples, 500, seed=1)) == 100


def test_the_gate_scores_exactly_the_held_out_images_the_checkpoint_names():
    from ml.engine.data.readers import Sample
    from ml.management.commands.export_onnx import _split_by_ids

    samples = [Sample(Path(f"ISIC_{i:07d}.jpg"), i % 3, f"l{i}", None, "") for i in range(30)]
    test_ids = {"ISIC_0000004", "ISIC_0000011", "ISIC_0000027"}
    training, held_out = _split_by_ids(samples, test_ids)
    assert {samples[i].path.stem for i in held_out} == test_ids
    assert not set(training) & set(held_out)
    assert len(training) + len(held_out) == 30
    with pytest.raises(ValueError, match="1 of the model's 4 held-out images are not in the data"):
        _split_by_ids(samples, test_ids | {"ISIC_9999999"})


def test_the_registry_keeps_the_checkpoints_held_out_image_ids():
    from ml.services.registry import metrics_from_metadata

    metadata = {"test_image_ids": ["ISIC_1", "ISIC_2"], "config": {"seed": 0}}
    assert metrics_from_metadata(metadata)["test_image_ids"] == ["ISIC_1", "ISIC_2"]
