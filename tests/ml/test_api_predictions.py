import csv
import io

import pytest

from diagnosis.models import AuditAction, AuditEvent
from tests.conftest import api_client_for
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


def test_review_queue_api_is_for_reviewers_of_the_clinic(
    clinician, colleague, clinic, active_model
):
    case = predicted_case(clinic, clinician, active_model, malignant=0.8, top="MEL")
    assert api_client_for(clinician).get("/api/v1/review-queue/").status_code == 403
    queue = api_client_for(colleague).get("/api/v1/review-queue/").json()
    assert [item["case"] for item in queue["results"]] == [case.pk]
    assert queue["results"][0]["reviewed"] is False
    api_client_for(colleague).post(
        f"/api/v1/cases/{case.pk}/reviews/", {"verdict": "agree", "management": "no_action"}
    )
    assert api_client_for(colleague).get("/api/v1/review-queue/").json()["results"] == []
    agreed = api_client_for(colleague).get("/api/v1/review-queue/", {"state": "agree"}).json()
    assert [item["case"] for item in agreed["results"]] == [case.pk]


def test_predictions_export_in_the_isic_submission_layout(
    clinician, colleague, clinic, other_clinic, active_model, outsider
):
    mine = predicted_case(clinic, clinician, active_model, top="MEL", seed=1)
    predicted_case(other_clinic, outsider, active_model, seed=2)
    assert api_client_for(clinician).get("/api/v1/exports/predictions.csv").status_code == 403
    response = api_client_for(colleague).get("/api/v1/exports/predictions.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    assert [r[0] for r in rows[1:]] == [f"case-{mine.pk}"]  # not the other clinic's
    assert float(rows[1][1]) == pytest.approx(0.93)
    assert sum(float(v) for v in rows[1][1:]) == pytest.approx(1.0, abs=1e-5)
    export = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert export.actor == colleague
    assert export.detail["rows"] == 1
    foreign = api_client_for(colleague).get(
        "/api/v1/exports/predictions.csv", {"clinic": other_clinic.pk}
    )
    assert foreign.status_code == 404
