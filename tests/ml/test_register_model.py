"""Registering weights: the SkinSense format and the original layout with a class list."""

from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image

from ml.engine.files import sha256_file
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import parse_class_spec
from ml.engine.serve.torch_predictor import Predictor
from ml.models import ModelVersion


def _image(color=(150, 80, 60)):
    return Image.new("RGB", (300, 200), color)


def original_layout_state_dict(num_classes=27, backbone="resnet50", seed=1):
    """What the original project saved: ResNet under model.*, Sequential heads."""
    torch.manual_seed(seed)
    net = SkinSenseNet(num_classes=num_classes, backbone=backbone)
    state = {f"model.{k}": v for k, v in net.trunk.state_dict().items()}
    binary = torch.nn.Sequential(
        torch.nn.Linear(2048, 256), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(256, 1)
    )
    multi = torch.nn.Sequential(
        torch.nn.Linear(2048, 512),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(512, num_classes),
    )
    state.update({f"binary_head.{k}": v for k, v in binary.state_dict().items()})
    state.update({f"multi_head.{k}": v for k, v in multi.state_dict().items()})
    return state, binary.eval(), multi.eval(), net.trunk.eval()


TWENTY_SEVEN = [
    "Melanoma, NOS",
    "Melanoma in situ",
    "Melanoma Invasive",
    "Nevus",
    "Blue nevus",
    "Nevus, Spitz",
    "Nevus, Congenital",
    "Basal cell carcinoma",
    "Squamous cell carcinoma, NOS",
    "Squamous cell carcinoma in situ",
    "Solar or actinic keratosis",
    "Seborrheic keratosis",
    "Solar lentigo",
    "Lichen planus like keratosis",
    "Dermatofibroma",
    "Hemangioma",
    "Angiokeratoma",
    "Pyogenic granuloma",
    "Verruca",
    "Clear cell acanthoma",
    "Sebaceous hyperplasia",
    "Fibroepithelial polyp",
    "Merkel cell carcinoma",
    "Scar",
    "Atypical intraepithelial melanocytic proliferation",
    "Porokeratosis",
    "Cysts",
]


@pytest.fixture
def classes_file(tmp_path):
    lines = [f"C{i:02d},{name}" for i, name in enumerate(TWENTY_SEVEN)]
    path = tmp_path / "classes.txt"
    path.write_text("# the original 27 classes\n" + "\n".join(lines) + "\n")
    return path


def test_class_spec_file_maps_each_class_to_its_category(classes_file):
    classes = parse_class_spec(classes_file.read_text().splitlines())
    assert len(classes) == 27
    assert classes[0].category == "malignant"
    assert classes[3].category == "benign"
    assert classes[10].category == "indeterminate"


@pytest.mark.usefixtures("db")
def test_register_model_accepts_the_original_layout(tmp_path, classes_file):
    state, binary, multi, trunk = original_layout_state_dict()
    path = tmp_path / "skinsense_original.pt"
    torch.save({"model_state_dict": state, "epoch": 12}, path)

    call_command(
        "register_model",
        str(path),
        "--classes",
        str(classes_file),
        "--name",
        "original",
        "--activate",
    )
    version = ModelVersion.objects.get(name="original")
    assert version.is_active
    assert version.backbone == "resnet50"
    assert len(version.classes) == 27
    assert version.weights_sha256 == sha256_file(version.weights_path)

    # The converted model computes exactly what the original network computes.
    predictor = Predictor.from_file(version.weights_path, expected_sha256=version.weights_sha256)
    x = predictor.preprocess([_image()])
    with torch.inference_mode():
        features = trunk.to(memory_format=torch.channels_last)(x)
        expected_malignant = torch.sigmoid(binary(features)[:, 0])
        expected_probs = torch.softmax(multi(features), dim=1)
    result = predictor.predict(_image())
    assert result.malignant_probability == pytest.approx(float(expected_malignant), abs=1e-5)
    got = torch.tensor(list(result.diagnosis_probabilities.values()))
    assert torch.allclose(got, expected_probs[0], atol=1e-5)


@pytest.mark.usefixtures("db")
def test_original_layout_without_a_class_list_is_refused_clearly(tmp_path):
    state, *_ = original_layout_state_dict(num_classes=27, backbone="resnet18")
    path = tmp_path / "orig.pt"
    torch.save(state, path)
    with pytest.raises(CommandError, match="class list"):
        call_command("register_model", str(path))
    assert not ModelVersion.objects.exists()


@pytest.mark.usefixtures("db")
def test_class_count_must_match_the_head(tmp_path, classes_file):
    state, *_ = original_layout_state_dict(num_classes=5, backbone="resnet18")
    path = tmp_path / "orig.pt"
    torch.save(state, path)
    with pytest.raises(CommandError, match="5 outputs but the class list has 27"):
        call_command("register_model", str(path), "--classes", str(classes_file))


@pytest.mark.usefixtures("db")
def test_register_model_stores_a_hash_named_copy_and_only_one_model_is_active(
    small_checkpoint_file, settings
):
    call_command("register_model", str(small_checkpoint_file), "--name", "a", "--activate")
    call_command("register_model", str(small_checkpoint_file), "--name", "b", "--activate")
    assert list(ModelVersion.objects.filter(is_active=True).values_list("name", flat=True)) == ["b"]
    version = ModelVersion.objects.get(name="b")
    assert Path(version.weights_path).name == f"{version.weights_sha256}.pt"
    assert Path(version.weights_path).parent == Path(settings.MODEL_ROOT)


@pytest.mark.usefixtures("db")
def test_a_name_and_version_are_registered_once(small_checkpoint_file):
    call_command("register_model", str(small_checkpoint_file), "--name", "a")
    with pytest.raises(CommandError, match="already registered"):
        call_command("register_model", str(small_checkpoint_file), "--name", "a")
