import io

import numpy as np
import pytest
import torch
from django.urls import reverse
from PIL import Image

from diagnosis import services
from ml.engine.model.checkpoint import save_checkpoint
from ml.engine.model.transforms import default_preprocessing
from ml.engine.serve.gradcam import crop_box, render_overlay
from ml.engine.serve.torch_predictor import Predictor
from ml.models import Prediction
from tests import images
from tests.conftest import api_client_for, drain, logged_in_client, small_checkpoint, upload
from tests.factories import LesionFactory, PatientFactory


@pytest.fixture
def predictor(tmp_path):
    save_checkpoint(small_checkpoint(seed=3), tmp_path / "m.pt")
    return Predictor.from_file(tmp_path / "m.pt", expected_sha256=None)


def test_grad_cam_is_the_gradient_weighted_layer4_map_of_the_malignant_head(predictor):
    image = Image.new("RGB", (300, 240), (120, 60, 40))
    image.paste((20, 10, 5), (100, 60, 200, 160))
    cam = predictor.grad_cam(image)
    assert cam.shape == (224, 224)
    assert cam.dtype == np.float32
    assert 0.0 <= cam.min()
    assert cam.max() == pytest.approx(1.0)

    # The same map computed independently with autograd.
    model = predictor.model
    x = predictor.preprocess([image])
    trunk = model.trunk
    stem = torch.nn.Sequential(
        trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool, trunk.layer1, trunk.layer2, trunk.layer3
    )
    with torch.enable_grad():
        features = trunk.layer4(stem(x))
        pooled = torch.flatten(trunk.avgpool(features), 1)
        logit = model.binary_head(pooled)[:, 0].sum()
        (grads,) = torch.autograd.grad(logit, features)
    expected = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * features).sum(1, keepdim=True))
    expected = torch.nn.functional.interpolate(expected, size=(224, 224), mode="bilinear")[0, 0]
    expected = (expected / expected.max()).detach().numpy()
    assert np.allclose(cam, expected, atol=1e-4)
    assert all(p.grad is None for p in model.parameters())  # leaves the model clean


def test_the_overlay_covers_exactly_the_crop_the_model_saw():
    preprocessing = default_preprocessing(224)
    # 450 px → 256 (scale 450/256), centre crop 224 → 393.75 px of the original, centred.
    assert crop_box(600, 450, preprocessing) == (103, 28, 497, 422)
    cam = np.ones((224, 224), dtype=np.float32)
    png = render_overlay(cam, width=600, height=450, preprocessing=preprocessing)
    overlay = Image.open(io.BytesIO(png))
    assert overlay.size == (600, 450)
    assert overlay.mode == "RGBA"
    left, top, right, bottom = crop_box(600, 450, preprocessing)
    assert overlay.getpixel((5, 225))[3] == 0  # outside the crop: transparent
    assert overlay.getpixel(((left + right) // 2, (top + bottom) // 2))[3] > 100


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db
def test_every_prediction_stores_a_private_heatmap(
    client, clinician, clinic, outsider, django_capture_on_commit_callbacks
):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes(size=(320, 240)))
        ).case
    prediction = Prediction.objects.get(case=case)
    with prediction.heatmap.open("rb") as handle:
        stored = Image.open(handle)
        assert stored.size == (320, 240)
        assert stored.mode == "RGBA"
    assert prediction.heatmap.name.startswith(f"heatmaps/{clinic.pk}/")

    logged_in_client(client, clinician)
    page = client.get(case.get_absolute_url())
    assert b"regions that influenced the model" in page.content
    response = client.get(reverse("ml:case-heatmap", args=[case.pk]))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store, private"
    drain(response)
    api_url = (
        api_client_for(clinician)
        .get(f"/api/v1/cases/{case.pk}/")
        .json()["prediction"]["heatmap_url"]
    )
    assert api_url.endswith(f"/api/v1/cases/{case.pk}/heatmap/")

    client.logout()
    logged_in_client(client, outsider)
    assert client.get(reverse("ml:case-heatmap", args=[case.pk])).status_code == 404
    assert api_client_for(outsider).get(f"/api/v1/cases/{case.pk}/heatmap/").status_code == 404


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db
def test_heatmaps_can_be_switched_off(
    clinician, clinic, settings, django_capture_on_commit_callbacks
):
    settings.PREDICTION_HEATMAPS = False
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
        ).case
    assert not Prediction.objects.get(case=case).heatmap


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db
def test_the_result_is_stored_before_its_heatmap_which_follows_as_its_own_task(
    clinician, clinic, django_capture_on_commit_callbacks, monkeypatch
):
    """The prediction (and the case's done status) never waits for Grad-CAM: the heatmap task
    is only sent once the prediction is committed, and it finds the result already there."""
    from diagnosis.models import Case, CaseStatus
    from ml import services as ml_services
    from ml.tasks import heatmap_task

    seen = []
    real_compute = ml_services.prediction_heatmap_compute

    def observe(*, prediction_id):
        prediction = Prediction.objects.select_related("case").get(pk=prediction_id)
        seen.append((prediction.case.status, bool(prediction.heatmap)))
        return real_compute(prediction_id=prediction_id)

    monkeypatch.setattr(ml_services, "prediction_heatmap_compute", observe)
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes(size=(320, 240)))
        ).case
    assert seen == [(CaseStatus.DONE, False)]
    prediction = Prediction.objects.get(case=case)
    assert prediction.heatmap
    assert Case.objects.get(pk=case.pk).status == CaseStatus.DONE
    name = prediction.heatmap.name
    heatmap_task.delay(prediction.pk)  # a second delivery leaves the stored heatmap alone
    prediction.refresh_from_db()
    assert prediction.heatmap.name == name


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db
def test_the_sweeper_sends_a_lost_heatmap_again(
    clinician, clinic, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from ml.services import requeue_stuck_cases

    settings.PREDICTION_HEATMAPS = False  # as if the heatmap message had been lost
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes(size=(320, 240)))
        ).case
    prediction = Prediction.objects.get(case=case)
    assert not prediction.heatmap
    settings.PREDICTION_HEATMAPS = True
    assert requeue_stuck_cases() == 0  # too recent: its task may still be on its way
    old = timezone.now() - timedelta(seconds=settings.CASE_REQUEUE_AFTER_SECONDS + 5)
    Prediction.objects.filter(pk=prediction.pk).update(created_at=old)
    assert requeue_stuck_cases() == 1
    prediction.refresh_from_db()
    assert prediction.heatmap
    assert requeue_stuck_cases() == 0


@pytest.mark.usefixtures("active_model")
@pytest.mark.django_db
def test_the_case_page_keeps_polling_until_the_heatmap_follows_the_result(
    client, clinician, clinic, settings, django_capture_on_commit_callbacks
):
    settings.PREDICTION_HEATMAPS = False  # the heatmap task has not run yet
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_submit(
            user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes(size=(320, 240)))
        ).case
    settings.PREDICTION_HEATMAPS = True
    logged_in_client(client, clinician)
    status_url = reverse("ml:case-status", args=[case.pk])
    body = client.get(status_url).json()
    assert body["status"] == "done"
    assert not body["pending"]
    assert body["heatmap_pending"]
    assert b'data-pending="true"' in client.get(case.get_absolute_url()).content

    from ml.services import prediction_heatmap_compute

    assert prediction_heatmap_compute(prediction_id=Prediction.objects.get(case=case).pk)
    body = client.get(status_url).json()
    assert not body["heatmap_pending"]
    assert 'data-has-heatmap="true"' in body["html"]
    assert b'data-pending="false"' in client.get(case.get_absolute_url()).content
