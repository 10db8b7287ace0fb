"""One category rule everywhere: the heads' disagreement is "indeterminate", never "malignant"
over a benign top diagnosis; predictions stored before the rule are brought in line."""

import importlib

import pytest
from django.apps import apps

from ml.models import Prediction
from tests.conftest import logged_in_client
from tests.factories import predicted_case

pytestmark = pytest.mark.django_db


def test_stored_malignant_over_a_benign_top_diagnosis_becomes_indeterminate(
    clinic, clinician, active_model
):
    over_benign = predicted_case(clinic, clinician, active_model, malignant=0.9, top="BKL")
    agreeing = predicted_case(clinic, clinician, active_model, malignant=0.9, top="MEL", seed=1)
    benign = predicted_case(clinic, clinician, active_model, malignant=0.1, top="NV", seed=2)
    # As the rule before this one stored it:
    Prediction.objects.filter(case=over_benign).update(category="malignant", uncertain=False)

    migration = importlib.import_module("ml.migrations.0006_category_one_rule")
    migration.forwards(apps, None)

    fixed = Prediction.objects.get(case=over_benign)
    assert fixed.category == "indeterminate"
    assert fixed.uncertain
    assert Prediction.objects.get(case=agreeing).category == "malignant"
    assert Prediction.objects.get(case=benign).category == "benign"


def test_the_case_page_says_the_heads_disagree_and_shows_every_class(
    client, clinic, clinician, active_model
):
    case = predicted_case(clinic, clinician, active_model, malignant=0.9, top="BKL")
    page = logged_in_client(client, clinician).get(case.get_absolute_url()).content.decode()
    assert "Indeterminate — refer." in page
    assert "answers disagree" in page
    assert ">Malignant<" not in page  # no headline contradicting the top diagnosis
    for c in active_model.classes:
        assert f"{c['code']} · {c['category']}" in page


def test_agree_is_refused_where_the_heads_disagree_and_offered_elsewhere(
    clinic, clinician, colleague, active_model
):
    from django.core.exceptions import ValidationError

    from ml.forms import ReviewForm
    from ml.services import review_submit

    disagreeing = Prediction.objects.get(
        case=predicted_case(clinic, clinician, active_model, malignant=0.9, top="BKL")
    )
    with pytest.raises(ValidationError, match="two answers disagree"):
        review_submit(
            reviewer=colleague, prediction=disagreeing, verdict="agree", management="no_action"
        )
    assert "agree" not in dict(ReviewForm(prediction=disagreeing).fields["verdict"].choices)

    coherent = Prediction.objects.get(
        case=predicted_case(clinic, clinician, active_model, malignant=0.9, top="MEL", seed=1)
    )
    assert "agree" in dict(ReviewForm(prediction=coherent).fields["verdict"].choices)
    review = review_submit(
        reviewer=colleague, prediction=coherent, verdict="agree", management="no_action"
    )
    assert review.final_diagnosis == "MEL"  # agree records the model's top diagnosis


def test_agree_with_another_final_diagnosis_is_refused_not_dropped(
    clinic, clinician, colleague, active_model
):
    from django.core.exceptions import ValidationError

    from ml.models import Review
    from ml.services import review_submit

    prediction = Prediction.objects.get(case=predicted_case(clinic, clinician, active_model))
    with pytest.raises(ValidationError, match="choose “Different final diagnosis”"):
        review_submit(
            reviewer=colleague,
            prediction=prediction,
            verdict="agree",
            final_diagnosis="MEL",
            management="no_action",
        )
    assert not Review.objects.exists()
