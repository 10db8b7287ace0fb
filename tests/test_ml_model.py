from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image

from ml.engine.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES, category_of, parse_class_spec
from ml.engine.serve import torch_predictor as inference
from ml.engine.serve.torch_predictor import Predictor, WeightsMismatchError, interpret
from ml.models import ModelVersion
from tests.conftest import small_checkpoint


def test_skinsense_net_has_two_heads_over_the_class_list():
    net = SkinSenseNet(num_classes=8, backbone="resnet18").eval()
    with torch.inference_mode():
        malignant, classes = net(torch.randn(2, 3, 64, 64))
    assert malignant.shape == (2,) and classes.shape == (2, 8)


def test_resnet50_is_the_default_trunk():
    net = SkinSenseNet(num_classes=3)
    assert net.backbone_name == "resnet50"
    assert net.multi_head.in_features == 2048


def test_categories_come_from_the_isic_hierarchy():
    by_code = {c.code: c.category for c in ISIC2019_CLASSES}
    assert by_code == {
        "MEL": "malignant",
        "NV": "benign",
        "BCC": "malignant",
        "AK": "indeterminate",
        "BKL": "benign",
        "DF": "benign",
        "VASC": "benign",
        "SCC": "malignant",
    }
    assert category_of("Seborrheic keratosis") == "benign"
    with pytest.raises(ValueError):
        category_of("Not a diagnosis")


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    checkpoint = small_checkpoint(temperature=1.7, thresholds={"malignant": 0.3, "confidence": 0.4})
    digest = save_checkpoint(checkpoint, tmp_path / "m.pt")
    assert digest == sha256_file(tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.backbone == "resnet18"
    assert [c.code for c in loaded.classes] == [c.code for c in ISIC2019_CLASSES]
    assert loaded.classes[0].category == "malignant"
    assert loaded.temperature == 1.7 and loaded.thresholds["malignant"] == 0.3
    assert loaded.preprocessing["image_size"] == 224


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "x.pt")


def _image(color=(150, 80, 60)):
    return Image.new("RGB", (300, 200), color)


def test_predictor_outputs_probabilities_for_every_class(tmp_path):
    save_checkpoint(small_checkpoint(), tmp_path / "m.pt")
    predictor = Predictor.from_file(
        tmp_path / "m.pt", expected_sha256=sha256_file(tmp_path / "m.pt")
    )
    result = predictor.predict(_image())
    assert set(result.diagnosis_probabilities) == {c.code for c in ISIC2019_CLASSES}
    assert sum(result.diagnosis_probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= result.malignant_probability <= 1.0
    assert result.top_diagnosis == max(
        result.diagnosis_probabilities, key=result.diagnosis_probabilities.get
    )
    assert result.category in {"benign", "indeterminate", "malignant"}


def test_a_served_model_takes_the_checkpoint_weights_without_a_copy(tmp_path):
    """take_weights builds on the meta device and assigns the loaded tensors: same outputs as
    the usual build, the model's tensors are the checkpoint's own, nothing left unset."""
    save_checkpoint(small_checkpoint(), tmp_path / "m.pt")
    usual = load_checkpoint(tmp_path / "m.pt").build_model()
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    taken = checkpoint.build_model(take_weights=True)
    first = checkpoint.state_dict["trunk.conv1.weight"]
    assert taken.trunk.conv1.weight.data_ptr() == first.data_ptr()
    assert not any(t.is_meta for t in [*taken.parameters(), *taken.buffers()])
    batch = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        for a, b in zip(usual(batch), taken(batch), strict=True):
            assert torch.equal(a, b)
    incomplete = load_checkpoint(tmp_path / "m.pt")
    del incomplete.state_dict["trunk.conv1.weight"]
    with pytest.raises(CheckpointError, match="do not fit"):
        incomplete.build_model(take_weights=True)


def test_a_cpu_micro_batch_runs_in_chunks_with_the_same_results(tmp_path, monkeypatch):
    """On the CPU a batch goes through the model a few images at a time (bounded memory):
    each image's result is the one it gets alone."""
    save_checkpoint(small_checkpoint(), tmp_path / "m.pt")
    predictor = Predictor.from_file(tmp_path / "m.pt", expected_sha256=None)
    images = [_image((40 * i, 90, 200 - 30 * i)) for i in range(5)]
    alone = [predictor.predict(image) for image in images]
    calls = []
    logits = predictor.logits
    monkeypatch.setattr(predictor, "cpu_chunk", 2)
    monkeypatch.setattr(
        predictor, "logits", lambda batch: calls.append(len(batch)) or logits(batch)
    )
    together = predictor.predict_batch(images)
    assert calls == [2, 2, 1]
    for one, other in zip(alone, together, strict=True):
        assert other.malignant_probability == pytest.approx(one.malignant_probability, abs=1e-5)
        for code, p in one.diagnosis_probabilities.items():
            assert other.diagnosis_probabilities[code] == pytest.approx(p, abs=1e-5)


def test_temperature_softens_the_probabilities(tmp_path):
    save_checkpoint(small_checkpoint(), tmp_path / "a.pt")
    save_checkpoint(small_checkpoint(temperature=50.0), tmp_path / "b.pt")
    sharp = Predictor.from_file(tmp_path / "a.pt", expected_sha256=None).predict(_image())
    soft = Predictor.from_file(tmp_path / "b.pt", expected_sha256=None).predict(_image())
    assert soft.top_probability < sharp.top_probability
    assert abs(soft.malignant_probability - 0.5) <= abs(sharp.malignant_probability - 0.5)


def test_a_weights_file_whose_hash_differs_from_the_registry_is_refused(tmp_path):
    save_checkpoint(small_checkpoint(), tmp_path / "m.pt")
    with pytest.raises(WeightsMismatchError, match="refusing"):
        Predictor.from_file(tmp_path / "m.pt", expected_sha256="0" * 64)


def test_the_predictor_is_loaded_once_per_process(tmp_path):
    path = tmp_path / "m.pt"
    digest = save_checkpoint(small_checkpoint(), path)
    inference.clear_cache()
    before = inference.load_count
    first = inference.get_predictor(path, sha256=digest, device="cpu")
    for _ in range(3):
        assert inference.get_predictor(path, sha256=digest, device="cpu") is first
    assert inference.load_count == before + 1


CLASSES = ISIC2019_CLASSES
THRESHOLDS = {"malignant": 0.5, "confidence": 0.5}


def _probs(top: str, p: float) -> dict:
    rest = (1 - p) / (len(CLASSES) - 1)
    return {c.code: (p if c.code == top else rest) for c in CLASSES}


@pytest.mark.parametrize(
    "malignant,top,p,expected",
    [
        (0.9, "MEL", 0.8, ("malignant", False)),
        (0.1, "NV", 0.8, ("benign", False)),
        (0.1, "AK", 0.8, ("indeterminate", False)),
        (0.1, "NV", 0.3, ("benign", True)),  # not confident: uncertain — refer
        (0.1, "MEL", 0.8, ("indeterminate", True)),  # heads disagree
        (0.9, "NV", 0.8, ("malignant", True)),  # heads disagree
    ],
)
def test_interpretation_of_the_two_heads(malignant, top, p, expected):
    code, category, top_probability, uncertain = interpret(
        malignant_probability=malignant,
        diagnosis_probabilities=_probs(top, p),
        classes=CLASSES,
        thresholds=THRESHOLDS,
    )
    assert code == top and top_probability == p
    assert (category, uncertain) == expected


# --- the original SkinSense checkpoint layout ---------------------------------------------


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
    assert classes[0].category == "malignant" and classes[3].category == "benign"
    assert classes[10].category == "indeterminate"


def test_register_model_accepts_the_original_layout(db, tmp_path, classes_file):
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
    assert version.is_active and version.backbone == "resnet50"
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


def test_original_layout_without_a_class_list_is_refused_clearly(db, tmp_path):
    state, *_ = original_layout_state_dict(num_classes=27, backbone="resnet18")
    path = tmp_path / "orig.pt"
    torch.save(state, path)
    with pytest.raises(CommandError, match="class list"):
        call_command("register_model", str(path))
    assert not ModelVersion.objects.exists()


def test_class_count_must_match_the_head(db, tmp_path, classes_file):
    state, *_ = original_layout_state_dict(num_classes=5, backbone="resnet18")
    path = tmp_path / "orig.pt"
    torch.save(state, path)
    with pytest.raises(CommandError, match="5 outputs but the class list has 27"):
        call_command("register_model", str(path), "--classes", str(classes_file))


def test_register_model_stores_a_hash_named_copy_and_only_one_model_is_active(
    db, small_checkpoint_file, settings
):
    call_command("register_model", str(small_checkpoint_file), "--name", "a", "--activate")
    call_command("register_model", str(small_checkpoint_file), "--name", "b", "--activate")
    assert list(ModelVersion.objects.filter(is_active=True).values_list("name", flat=True)) == ["b"]
    version = ModelVersion.objects.get(name="b")
    assert Path(version.weights_path).name == f"{version.weights_sha256}.pt"
    assert Path(version.weights_path).parent == Path(settings.MODEL_ROOT)


def test_a_name_and_version_are_registered_once(db, small_checkpoint_file):
    call_command("register_model", str(small_checkpoint_file), "--name", "a")
    with pytest.raises(CommandError, match="already registered"):
        call_command("register_model", str(small_checkpoint_file), "--name", "a")
