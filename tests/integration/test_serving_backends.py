"""The serving backend setting (INFERENCE_BACKEND): PyTorch, ONNX Runtime fp32 and int8 through
the real prediction flow, and an ONNX Runtime worker process that never loads PyTorch."""

import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diagnosis import services
from diagnosis.models import CaseStatus
from ml.engine.files import sha256_file
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.engine.serve import onnx as onnx_engine
from ml.engine.serve.torch_predictor import Predictor
from ml.models import Prediction
from tests import images
from tests.conftest import upload
from tests.factories import LesionFactory, PatientFactory
from tests.services import Worker, wait_for

CODES = [c.code for c in ISIC2019_CLASSES]


def submit(clinician, clinic, *, color=(150, 80, 60), capture=None):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    content = images.jpeg_bytes(size=(320, 240), color=color)
    with capture(execute=True):
        case = services.case_submit(user=clinician, lesion=lesion, upload=upload(content)).case
    return case, content


def torch_probabilities(model_version, content: bytes) -> np.ndarray:
    predictor = Predictor.from_file(
        model_version.weights_path, expected_sha256=model_version.weights_sha256
    )
    result = predictor.predict(Image.open(io.BytesIO(content)).convert("RGB"))
    probabilities = result.diagnosis_probabilities
    return np.array([result.malignant_probability, *(probabilities[c] for c in CODES)])


def stored_probabilities(prediction: Prediction) -> np.ndarray:
    probabilities = prediction.diagnosis_probabilities  # jsonb: keys in its own order
    return np.array([prediction.malignant_probability, *(probabilities[c] for c in CODES)])


@pytest.mark.django_db
def test_the_onnx_backend_serves_the_same_probabilities_as_pytorch(
    clinician, clinic, active_model, settings, django_capture_on_commit_callbacks
):
    settings.INFERENCE_BACKEND = "onnx"
    settings.PREDICTION_HEATMAPS = False
    case, content = submit(clinician, clinic, capture=django_capture_on_commit_callbacks)
    case.refresh_from_db()
    assert case.status == CaseStatus.DONE, case.error
    exported = onnx_engine.onnx_path_for(settings.MODEL_ROOT / "onnx", active_model.weights_sha256)
    assert exported.is_file()  # exported once, on first use, keyed by the weights' hash
    served = stored_probabilities(Prediction.objects.get(case=case))
    assert np.abs(served - torch_probabilities(active_model, content)).max() <= 1e-4


@pytest.mark.django_db
def test_int8_is_served_only_when_its_export_offered_it(
    clinician, clinic, active_model, settings, django_capture_on_commit_callbacks, caplog
):
    settings.INFERENCE_BACKEND = "onnx-int8"
    settings.PREDICTION_HEATMAPS = False
    cache = settings.MODEL_ROOT / "onnx"
    sha = active_model.weights_sha256
    with caplog.at_level(logging.WARNING, logger="ml.services"):
        case, content = submit(clinician, clinic, capture=django_capture_on_commit_callbacks)
    assert "no int8 model offered" in caplog.text  # none exported yet: fp32 serves
    fp32 = stored_probabilities(Prediction.objects.get(case=case))
    assert np.abs(fp32 - torch_probabilities(active_model, content)).max() <= 1e-4

    # A real int8 export, calibrated on real or generated images; then the gate decides.
    fp32_path = onnx_engine.onnx_path_for(cache, sha)
    int8_path = onnx_engine.onnx_path_for(cache, sha, variant="int8")
    calibration = [Image.new("RGB", (320, 240), (40 + 25 * i, 90, 60 + 10 * i)) for i in range(8)]
    onnx_engine.quantize_int8(fp32_path, calibration, int8_path)
    sidecar = onnx_engine.read_sidecar(fp32_path)
    for offered in (False, True):
        sidecar["int8"] = {"sha256": sha256_file(int8_path), "offered": offered}
        onnx_engine.write_sidecar(fp32_path, sidecar)
        onnx_engine.clear_onnx_cache()
        case, _ = submit(
            clinician,
            clinic,
            color=(100, 60 + 40 * offered, 50),
            capture=django_capture_on_commit_callbacks,
        )
        assert Prediction.objects.get(case=case).case.status == CaseStatus.DONE
        # The one model the process loaded to serve it (the cache keeps the active one only).
        [(served_path, _threads)] = onnx_engine.cached_onnx_models()
        assert Path(served_path).name == (int8_path if offered else fp32_path).name


@pytest.mark.usefixtures("real_services")
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_an_onnx_runtime_worker_process_never_loads_pytorch(
    tmp_path, settings, clinician, clinic, active_model
):
    """A real prefork worker on INFERENCE_BACKEND=onnx (the export made beforehand, as
    `manage.py export_onnx` does at deployment): its pool process predicts without torch."""
    onnx_engine.export_onnx(
        active_model.weights_path, active_model.weights_sha256, settings.MODEL_ROOT / "onnx"
    )
    worker = Worker(
        tmp_path,
        settings,
        pool="prefork",
        queues="inference,default",
        extra_env={"INFERENCE_BACKEND": "onnx", "PREDICTION_HEATMAPS": "false"},
    )
    try:
        lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes(size=(320, 240)))
        ).case
        case = wait_for(case.pk, timeout=120)
        assert case.status == CaseStatus.DONE, case.error
        time.sleep(0.5)
        children = worker.children()
        assert children
        for pid in [worker.process.pid, *children]:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "libtorch" not in maps, f"process {pid} loaded PyTorch"
            assert "onnxruntime" in maps or pid == worker.process.pid
    finally:
        worker.stop()
