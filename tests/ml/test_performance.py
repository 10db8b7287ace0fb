import re

import pytest
from django.urls import reverse

from ml.engine.eval.reviewed import performance
from ml.selectors import reviewed_predictions
from ml.services import review_submit
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(clinic, clinician, colleague, active_model, other_clinic):
    """Five reviewed predictions with known answers, plus two that must not count."""
    from tests.factories import MembershipFactory

    def review(case, verdict, final=""):
        return review_submit(
            reviewer=colleague,
            prediction=case.predictions.get(),
            verdict=verdict,
            final_diagnosis=final,
            management="" if verdict == "send_back" else "no_action",
            send_back_reason="blurry" if verdict == "send_back" else "",
        )

    cases = [
        predicted_case(clinic, clinician, active_model, malignant=0.10, top="NV", seed=1),
        predicted_case(clinic, clinician, active_model, malignant=0.85, top="MEL", seed=2),
        predicted_case(clinic, clinician, active_model, malignant=0.30, top="NV", seed=3),
        predicted_case(clinic, clinician, active_model, malignant=0.70, top="BCC", seed=4),
        predicted_case(clinic, clinician, active_model, malignant=0.95, top="MEL", seed=5),
    ]
    for case, fitzpatrick in zip(cases, ["II", "II", "IV", "", "IV"], strict=True):
        patient = case.lesion.patient
        patient.fitzpatrick_type = fitzpatrick
        patient.save()
    review(cases[0], "agree")  # NV = NV: benign, true negative
    review(cases[1], "agree")  # MEL = MEL: true positive
    review(cases[2], "override", "MEL")  # said NV (benign), truly MEL: false negative
    review(cases[3], "override", "BKL")  # said BCC (malignant), truly BKL: false positive
    review(cases[4], "override", "NV")  # first opinion...
    review(cases[4], "agree")  # ...replaced by the latest: MEL, true positive
    sent_back = predicted_case(clinic, clinician, active_model, malignant=0.5, seed=6)
    review(sent_back, "send_back")  # says nothing about the diagnosis: not counted
    derm2 = MembershipFactory(clinic=other_clinic, role="dermatologist").user
    foreign = predicted_case(other_clinic, derm2, active_model, malignant=0.2, seed=7)
    review_submit(
        reviewer=derm2,
        prediction=foreign.predictions.get(),
        verdict="agree",
        management="no_action",
    )
    return active_model


def test_performance_numbers_match_the_hand_computed_fixture(reviewed):
    records = reviewed_predictions(reviewed, clinic_ids=None)
    codes = [c["code"] for c in reviewed.classes]
    report = performance(records, codes)
    assert report["reviewed"] == 6  # five here + one in the other clinic (agree, NV)
    own = performance([r for r in records if r.clinic == "North Clinic"], codes)
    assert own["reviewed"] == 5
    assert own["agreement_rate"] == pytest.approx(3 / 5)
    assert own["malignant"] == {
        "tp": 2,
        "fn": 1,
        "fp": 1,
        "tn": 1,
        "sensitivity": pytest.approx(2 / 3),
        "specificity": pytest.approx(1 / 2),
    }
    matrix = dict(zip(own["labels"], own["confusion_matrix"], strict=True))
    col = {code: i for i, code in enumerate(own["labels"])}
    assert matrix["NV"][col["NV"]] == 1
    assert matrix["MEL"][col["MEL"]] == 2
    assert matrix["MEL"][col["NV"]] == 1
    assert matrix["BKL"][col["BCC"]] == 1
    assert sum(map(sum, own["confusion_matrix"])) == 5
    calibration = {
        round(b["low"], 1): (b["count"], b["observed_malignant"]) for b in own["calibration"]
    }
    assert calibration == {
        0.1: (1, 0.0),
        0.3: (1, 1.0),
        0.7: (1, 0.0),
        0.8: (1, 1.0),
        0.9: (1, 1.0),
    }
    assert own["per_fitzpatrick_type"] == {
        "II": {"count": 2, "agreement": 1.0},
        "IV": {"count": 2, "agreement": 0.5},
        "unknown": {"count": 1, "agreement": 0.0},
    }


def test_the_admin_performance_page_shows_the_numbers(client, admin_user, reviewed):
    client.force_login(admin_user)
    page = client.get(reverse("admin:ml_modelversion_performance", args=[reviewed.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    # both clinics: 6 reviewed, agreement 4/6, sensitivity 2/3, specificity 2/3
    assert re.search(r'id="agreement">0\.667<', html)
    assert re.search(r'id="sensitivity">0\.667 \(2 of 3\)', html)
    assert re.search(r'id="specificity">0\.667 \(2 of 3\)', html)
    assert "data:image/png;base64," in html
    # the send-back is counted apart, not in the figures
    assert re.search(r'id="sent-back">[^<]*<strong>1</strong> prediction ', html)


def test_only_staff_reach_the_performance_page(client, colleague, reviewed):
    client.force_login(colleague)
    page = client.get(reverse("admin:ml_modelversion_performance", args=[reviewed.pk]))
    assert page.status_code == 302
    assert "/admin/login/" in page["Location"]


def test_the_performance_page_counts_the_reviews_of_a_window(client, admin_user, reviewed):
    """An auditor's "how did this version do last month": reviews outside the window drop out."""
    from datetime import timedelta

    from django.utils import timezone

    from ml.models import Review

    last_month = timezone.now() - timedelta(days=40)
    # The two clear answers (NV=NV agree, MEL=MEL agree) were given last month.
    early = Review.objects.filter(verdict="agree", management="no_action").order_by("created_at")[
        :2
    ]
    Review.objects.filter(pk__in=[r.pk for r in early]).update(created_at=last_month)
    client.force_login(admin_user)
    url = reverse("admin:ml_modelversion_performance", args=[reviewed.pk])
    start = (last_month - timedelta(days=1)).date().isoformat()
    end = (last_month + timedelta(days=1)).date().isoformat()
    html = client.get(url, {"reviewed_from": start, "reviewed_to": end}).content.decode()
    assert "Computed from 2 reviewed predictions" in html
    assert re.search(r'id="agreement">1\.000<', html)
    html = client.get(url, {"reviewed_from": end}).content.decode()
    assert "Computed from 4 reviewed predictions" in html
    html = client.get(url, {"reviewed_from": end, "reviewed_to": start}).content.decode()
    assert "ends before it starts" in html
    assert "Computed from 6 reviewed predictions" in html


def test_the_review_list_counts_overrides_per_model_version_and_month(client, admin_user, reviewed):
    client.force_login(admin_user)
    url = reverse("admin:ml_review_changelist")
    page = client.get(
        url, {"verdict__exact": "override", "prediction__model_version__id__exact": reviewed.pk}
    )
    assert page.status_code == 200
    assert page.context["cl"].result_count == 3


def test_a_final_diagnosis_outside_the_model_classes_is_its_own_row_and_category(
    clinic, clinician, colleague, active_model
):
    """Lentigo simplex is benign in the ISIC hierarchy but none of the 8 classes covers it:
    the model's MEL answer is a false positive and the matrix has a "Lentigo simplex" row;
    solar lentigo falls under BKL and is scored as BKL."""
    first = predicted_case(clinic, clinician, active_model, malignant=0.9, top="MEL", seed=11)
    second = predicted_case(clinic, clinician, active_model, malignant=0.1, top="NV", seed=12)
    for case, term in ((first, "Lentigo simplex"), (second, "solar lentigo")):
        review_submit(
            reviewer=colleague,
            prediction=case.predictions.get(),
            verdict="override",
            final_diagnosis=term,
            management="no_action",
        )
    records = reviewed_predictions(active_model)
    by_final = {r.final_diagnosis: r for r in records}
    assert set(by_final) == {"Lentigo simplex", "BKL"}
    assert by_final["Lentigo simplex"].final_category == "benign"
    report = performance(records, [c["code"] for c in active_model.classes])
    assert report["malignant"]["fp"] == 1
    assert report["malignant"]["tn"] == 1
    assert report["labels"][-1] == "Lentigo simplex"
