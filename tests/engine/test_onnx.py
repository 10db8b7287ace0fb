"""The ONNX Runtime backend: export, parity with the torch Predictor, NumPy preprocessing, a
torch-free worker, int8 quantisation and its gate, and the export_onnx command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.engine.files import sha256_file
from ml.engine.model.checkpoint import load_checkpoint
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.engine.model.transforms import default_preprocessing, eval_transform
from ml.engine.serve import base as interpretation
from ml.engine.serve import onnx as onnx_engine
from ml.engine.serve.onnx import OnnxModelMismatchError, OnnxPredictor
from ml.engine.serve.torch_predictor import Predictor, WeightsMismatchError
from tests import images
from tests.images import needs_sample

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 64


def needs_native_uint8_resize(preprocessing: dict):
    """torchvision resizes uint8 images natively (the integer arithmetic NumPy reproduces) on x86
    with AVX2 and on ARM; elsewhere bilinear goes through float and may differ by one level."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional._geometry import _do_native_uint8_resize_on_cpu

    if not _do_native_uint8_resize_on_cpu(InterpolationMode(preprocessing["interpolation"])):
        pytest.skip("torchvision does not resize uint8 natively on this CPU")


def sample_images(count: int, *, offset: int = 0) -> list[Image.Image]:
    rows = images.sample_rows()[offset : offset + count]
    return [Image.open(images.sample_image_path(r["image_id"])).convert("RGB") for r in rows]


# --- export and cache -----------------------------------------------------------------------


def test_export_writes_the_model_and_a_sidecar_named_by_the_weights_hash(small_model):
    onnx_path = small_model["onnx"]
    assert onnx_path.name == f"{small_model['sha256']}.onnx"
    sidecar = json.loads(onnx_engine.sidecar_path(onnx_path).read_text())
    assert sidecar["weights_sha256"] == small_model["sha256"]
    assert [c["code"] for c in sidecar["classes"]] == [c.code for c in ISIC2019_CLASSES]
    assert sidecar["preprocessing"]["image_size"] == IMAGE_SIZE
    assert sidecar["temperature"] == 1.3
    assert sidecar["thresholds"]["malignant"] == 0.4
    assert sidecar["fp32"]["sha256"] == sha256_file(onnx_path)
    assert sidecar["fp32"]["max_abs_logit_difference"] <= onnx_engine.EXPORT_TOLERANCE
    session = onnx_engine.create_session(onnx_path, threads=1)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["malignant_logit", "class_logits"]
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # the batch axis is dynamic
    assert not list(onnx_path.parent.glob("*.tmp"))


def test_a_second_export_reuses_the_cached_file(small_model, monkeypatch):
    import torch

    before = small_model["onnx"].stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = onnx_engine.export_onnx(
        small_model["weights"], small_model["sha256"], small_model["onnx"].parent
    )
    assert again == small_model["onnx"]
    assert again.stat().st_mtime_ns == before


def test_export_refuses_weights_whose_hash_differs(small_model, tmp_path):
    with pytest.raises(WeightsMismatchError, match="refusing"):
        onnx_engine.export_onnx(small_model["weights"], "0" * 64, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_model_file_that_differs_from_its_sidecar_is_refused(small_model, tmp_path):
    copy = tmp_path / small_model["onnx"].name
    copy.write_bytes(small_model["onnx"].read_bytes() + b"\0")
    onnx_engine.sidecar_path(copy).write_bytes(
        onnx_engine.sidecar_path(small_model["onnx"]).read_bytes()
    )
    with pytest.raises(OnnxModelMismatchError, match="refusing"):
        OnnxPredictor.from_cache(copy)


# --- preprocessing --------------------------------------------------------------------------


PRESETS = [
    default_preprocessing(IMAGE_SIZE),
    default_preprocessing(224),
    {**default_preprocessing(96), "interpolation": "bicubic"},
    {**default_preprocessing(64), "resize_size": 56},  # crop larger than the image: padding
]


@pytest.mark.parametrize("preprocessing", PRESETS, ids=["64", "224", "bicubic", "padded"])
def test_numpy_preprocessing_equals_eval_transform_on_odd_shapes(preprocessing):
    needs_native_uint8_resize(preprocessing)
    rng = np.random.default_rng(3)
    shapes = [(450, 600), (1000, 333), (40, 50), (73, 73), (1500, 2000)]
    transform = eval_transform(preprocessing)
    for height, width in shapes:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = transform(image).numpy()
        got = onnx_engine.preprocess_image(image, preprocessing)
        assert got.dtype == np.float32
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5, (height, width)


@pytest.mark.shared_data
@pytest.mark.parametrize("preprocessing", PRESETS[:3], ids=["64", "224", "bicubic"])
def test_numpy_preprocessing_equals_eval_transform_on_real_images(preprocessing):
    needs_sample()
    needs_native_uint8_resize(preprocessing)
    transform = eval_transform(preprocessing)
    for image in sample_images(12):
        expected = transform(image).numpy()
        got = onnx_engine.preprocess_image(image, preprocessing)
        assert np.abs(got - expected).max() <= 1e-5


# --- parity with the torch Predictor --------------------------------------------------------


def test_both_backends_read_the_heads_with_the_one_torch_free_definition():
    from ml.engine.serve import torch_predictor as inference

    assert inference.interpret is interpretation.interpret
    assert inference.PredictionResult is interpretation.PredictionResult


@pytest.mark.shared_data
def test_onnx_predictions_match_the_torch_predictor_on_real_images(small_model):
    needs_sample()
    batch = sample_images(16)
    torch_results = Predictor(load_checkpoint(small_model["weights"])).predict_batch(batch)
    onnx_predictor = OnnxPredictor.from_cache(small_model["onnx"], threads=2)
    assert onnx_predictor.codes == [c.code for c in ISIC2019_CLASSES]
    assert onnx_predictor.temperature == 1.3
    assert onnx_predictor.thresholds["malignant"] == 0.4
    onnx_results = onnx_predictor.predict_batch(batch)
    difference = 0.0
    for ours, theirs in zip(onnx_results, torch_results, strict=True):
        difference = max(
            difference,
            abs(ours.malignant_probability - theirs.malignant_probability),
            *(
                abs(ours.diagnosis_probabilities[c] - theirs.diagnosis_probabilities[c])
                for c in onnx_predictor.codes
            ),
        )
        assert (ours.top_diagnosis, ours.category, ours.uncertain) == (
            theirs.top_diagnosis,
            theirs.category,
            theirs.uncertain,
        )
    print(f"\nONNX vs torch, 16 real images: max |Δ probability| = {difference:.2e}")
    assert difference <= 1e-4
    single = onnx_predictor.predict(batch[0], thresholds={"malignant": 0.99})  # batch of one
    assert single.malignant_threshold == 0.99
    assert abs(single.malignant_probability - torch_results[0].malignant_probability) <= 1e-4


def test_an_onnx_worker_never_imports_torch(small_model):
    script = f"""
import sys
from PIL import Image
from ml.engine.serve.onnx.predict import get_onnx_predictor
predictor = get_onnx_predictor({str(small_model["onnx"])!r}, threads=1)
result = predictor.predict(Image.new("RGB", (120, 90), (180, 90, 60)))
assert 0 <= result.malignant_probability <= 1, result
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
print("ok", result.top_diagnosis)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("ok ")


# --- int8 -----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_int8_quantisation_on_real_images_gives_a_working_model(small_model):
    needs_sample()
    int8_path = small_model["onnx"].with_name(f"{small_model['sha256']}.int8.onnx")
    calibration = [images.sample_image_path(r["image_id"]) for r in images.sample_rows()[40:56]]
    onnx_engine.quantize_int8(small_model["onnx"], calibration, int8_path)

    import onnx

    graph = onnx.load(str(int8_path)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    assert int8_path.stat().st_size < small_model["onnx"].stat().st_size / 2
    sidecar = onnx_engine.read_sidecar(small_model["onnx"])
    fp32 = OnnxPredictor(small_model["onnx"], sidecar, threads=2)
    int8 = OnnxPredictor(int8_path, sidecar, threads=2)
    assert int8.variant == "int8"
    batch = fp32.preprocess(sample_images(24, offset=100))
    fp32_malignant, fp32_classes = fp32.probabilities(batch)
    int8_malignant, int8_classes = int8.probabilities(batch)
    assert np.isfinite(int8_classes).all()
    assert np.allclose(int8_classes.sum(axis=1), 1)
    agreement = float((fp32_classes.argmax(1) == int8_classes.argmax(1)).mean())
    difference = float(np.abs(fp32_classes - int8_classes).max())
    print(
        f"\nint8 vs fp32 (random weights), 24 real images: top-class agreement {agreement:.3f},"
        f" max |Δ class probability| {difference:.4f}, "
        f"max |Δ malignant| {np.abs(fp32_malignant - int8_malignant).max():.4f}"
    )
    results = int8.predict_batch(sample_images(2))
    assert {r.top_diagnosis for r in results} <= set(int8.codes)


def _probabilities(labels_predicted, num_classes=2):
    classes = np.full((len(labels_predicted), num_classes), 0.1)
    classes[np.arange(len(labels_predicted)), labels_predicted] = 0.9
    return np.zeros(len(labels_predicted)), classes


@pytest.mark.parametrize(
    ("int8_misses", "offered"),
    [(0, True), (2, True), (3, False), (20, False)],
    ids=["same", "exactly-one-point", "1.5-points", "much-worse"],
)
def test_int8_is_offered_only_when_it_loses_at_most_one_point(int8_misses, offered):
    targets = np.array([0] * 100 + [1] * 100)
    fp32 = _probabilities(targets)  # every image right: balanced accuracy 1.0
    predicted = targets.copy()
    predicted[:int8_misses] = 1  # class 0 recall falls by misses / 100, half that on average
    gate = onnx_engine.gate_from_outputs(targets, fp32, _probabilities(predicted))
    assert gate["fp32_balanced_accuracy"] == 1.0
    assert gate["int8_balanced_accuracy"] == pytest.approx(1 - int8_misses / 200)
    assert gate["offered"] is offered
    assert gate["images"] == 200
    assert gate["top_class_agreement"] == pytest.approx(1 - int8_misses / 200)
    assert gate["max_abs_probability_difference"] == pytest.approx(0.8 if int8_misses else 0)


def test_an_int8_model_better_than_fp32_is_offered():
    targets = np.array([0, 0, 1, 1])
    fp32 = _probabilities(np.array([0, 1, 1, 1]))  # balanced accuracy 0.75
    gate = onnx_engine.gate_from_outputs(targets, fp32, _probabilities(targets))
    assert gate["balanced_accuracy_drop"] == pytest.approx(-0.25)
    assert gate["offered"]
