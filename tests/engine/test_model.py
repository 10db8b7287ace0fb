import pytest
import torch
from PIL import Image

from ml.engine.files import sha256_file
from ml.engine.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES, category_of
from ml.engine.serve import torch_predictor as inference
from ml.engine.serve.torch_predictor import Predictor, WeightsMismatchError, interpret
from tests.conftest import small_checkpoint


def test_skinsense_net_has_two_heads_over_the_class_list():
    net = SkinSenseNet(num_classes=8, backbone="resnet18").eval()
    with torch.inference_mode():
        malignant, classes = net(torch.randn(2, 3, 64, 64))
    assert malignant.shape == (2,)
    assert classes.shape == (2, 8)


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
    with pytest.raises(ValueError, match="not a diagnosis of the ISIC hierarchy"):
        category_of("Not a diagnosis")


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    checkpoint = small_checkpoint(temperature=1.7, thresholds={"malignant": 0.3, "confidence": 0.4})
    digest = save_checkpoint(checkpoint, tmp_path / "m.pt")
    assert digest == sha256_file(tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.backbone == "resnet18"
    assert [c.code for c in loaded.classes] == [c.code for c in ISIC2019_CLASSES]
    assert loaded.classes[0].category == "malignant"
    assert loaded.temperature == 1.7
    assert loaded.thresholds["malignant"] == 0.3
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
    ("malignant", "top", "p", "expected"),
    [
        (0.9, "MEL", 0.8, ("malignant", False)),
        (0.1, "NV", 0.8, ("benign", False)),
        (0.1, "AK", 0.8, ("indeterminate", False)),
        (0.1, "NV", 0.3, ("benign", True)),  # not confident: uncertain — refer
        (0.1, "MEL", 0.8, ("indeterminate", True)),  # heads disagree
        (0.9, "NV", 0.8, ("indeterminate", True)),  # heads disagree: never "malignant"
        (0.9, "BKL", 0.3, ("indeterminate", True)),  # the reported case: malignant over BKL
        (0.9, "AK", 0.8, ("malignant", False)),  # AK is indeterminate, not benign: no conflict
        (0.5, "MEL", 0.8, ("malignant", False)),  # the threshold itself counts as reached
    ],
)
def test_interpretation_of_the_two_heads(malignant, top, p, expected):
    code, category, top_probability, uncertain = interpret(
        malignant_probability=malignant,
        diagnosis_probabilities=_probs(top, p),
        classes=CLASSES,
        thresholds=THRESHOLDS,
    )
    assert code == top
    assert top_probability == p
    assert (category, uncertain) == expected


# --- the original SkinSense checkpoint layout ---------------------------------------------
