import csv
import io
import zipfile

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from diagnosis.models import AuditAction, AuditEvent
from ml.models import Review
from ml.services import review_submit
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(clinic, clinician, colleague, active_model):
    agreed = predicted_case(clinic, clinician, active_model, top="NV", seed=1)
    overridden = predicted_case(clinic, clinician, active_model, top="NV", seed=2)
    sent_back = predicted_case(clinic, clinician, active_model, seed=3)
    review_submit(
        reviewer=colleague,
        prediction=agreed.predictions.get(),
        verdict="agree",
        management="no_action",
    )
    review_submit(
        reviewer=colleague,
        prediction=overridden.predictions.get(),
        verdict="override",
        final_diagnosis="MEL",
        management="excision",
    )
    review_submit(
        reviewer=colleague,
        prediction=sent_back.predictions.get(),
        verdict="send_back",
        send_back_reason="blurry",
    )
    return agreed, overridden


def test_export_reviewed_writes_an_isic_style_training_set(tmp_path, reviewed):
    agreed, overridden = reviewed
    call_command("export_reviewed", str(tmp_path / "out"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "ground_truth.csv").read_text())))
    by_image = {r["image"]: r for r in rows}
    assert set(by_image) == {f"SKS_{agreed.pk:07d}", f"SKS_{overridden.pk:07d}"}
    assert by_image[f"SKS_{agreed.pk:07d}"]["NV"] == "1.0"
    assert by_image[f"SKS_{overridden.pk:07d}"]["MEL"] == "1.0"
    assert by_image[f"SKS_{overridden.pk:07d}"]["NV"] == "0.0"
    assert by_image[f"SKS_{agreed.pk:07d}"]["lesion_id"] == f"SKS_L{agreed.lesion_id}"
    with Image.open(tmp_path / "out" / "images" / f"SKS_{agreed.pk:07d}.jpg") as image:
        assert image.size == (64, 48)
    text = (tmp_path / "out" / "metadata.csv").read_text()
    assert agreed.lesion.patient.identifier not in text  # pseudonymous
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT, target_type="training_set").exists()


@pytest.mark.usefixtures("db")
def test_nothing_reviewed_is_a_clear_error(
    tmp_path,
):
    with pytest.raises(CommandError, match="No reviewed cases"):
        call_command("export_reviewed", str(tmp_path / "out"))


@pytest.mark.usefixtures("reviewed")
def test_the_admin_action_downloads_a_zip(
    client,
    admin_user,
):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:ml_review_changelist"),
        {
            "action": "export_for_retraining",
            "_selected_action": list(Review.objects.values_list("pk", flat=True)),
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "ground_truth.csv" in names
    assert sum(n.startswith("images/") for n in names) == 2
