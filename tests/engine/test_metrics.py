import io
import json
import warnings

import numpy as np
import pytest

from ml.engine import numeric
from ml.engine.eval import calibration
from ml.engine.eval import metrics as evaluation
from ml.engine.eval.calibration import expected_calibration_error
from ml.engine.eval.metrics import balanced_accuracy, per_class_metrics, sensitivity_at_specificity
from ml.engine.eval.plots import save_plots
from ml.engine.eval.report import report
from ml.engine.eval.temperature import fit_temperature
from ml.engine.model.taxonomy import ISIC2019_CLASSES, make_class

THREE = [
    make_class("MEL", "Melanoma", "Malignant melanocytic proliferations (Melanoma)"),
    make_class("NV", "Nevus", "Nevus"),
    make_class("BKL", "Benign keratosis", "Benign epidermal proliferations"),
]


def one_hot_rows(predicted, num_classes=3, confidence=0.8):
    rest = (1 - confidence) / (num_classes - 1)
    rows = np.full((len(predicted), num_classes), rest)
    rows[np.arange(len(predicted)), predicted] = confidence
    return rows


def informative_predictions(n=400, num_classes=8, seed=1, signal=1.5):
    """Seeded logits that carry some information about random true classes."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, num_classes, n)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), targets] += signal
    return logits, targets


def test_balanced_accuracy_and_per_class_rates_on_a_hand_computed_example():
    targets = [0, 0, 0, 1, 1, 2]
    probabilities = one_hot_rows([0, 0, 1, 1, 2, 2])
    # recalls 2/3, 1/2, 1/1
    assert balanced_accuracy(targets, probabilities) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    per_class = per_class_metrics(targets, probabilities, THREE)
    assert per_class["MEL"]["sensitivity"] == pytest.approx(2 / 3)
    assert per_class["MEL"]["specificity"] == 1.0
    assert per_class["NV"]["sensitivity"] == 0.5
    assert per_class["NV"]["specificity"] == 0.75  # one of four non-NV called NV
    assert per_class["BKL"]["specificity"] == 0.8
    assert per_class["MEL"]["support"] == 3
    assert per_class["BKL"]["predicted"] == 2


def test_balanced_accuracy_averages_over_the_classes_that_are_present_only():
    targets = [0, 0, 1, 1]
    probabilities = one_hot_rows([0, 2, 1, 1])  # class 2 predicted but never true
    assert balanced_accuracy(targets, probabilities) == pytest.approx((0.5 + 1.0) / 2)
    per_class = per_class_metrics(targets, probabilities, THREE)
    assert per_class["BKL"]["sensitivity"] is None
    assert per_class["BKL"]["auc"] is None


def test_sensitivity_at_specificity_on_a_hand_computed_example():
    negatives = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    positives = [0.95, 0.85, 0.55, 0.05]
    y = [0] * len(negatives) + [1] * len(positives)
    result = sensitivity_at_specificity(y, negatives + positives)
    assert result["80"] == {"sensitivity": 0.5, "specificity": 0.9, "threshold": 0.85}
    assert result["90"] == {"sensitivity": 0.5, "specificity": 0.9, "threshold": 0.85}
    assert result["95"] == {"sensitivity": 0.25, "specificity": 1.0, "threshold": 0.95}
    assert sensitivity_at_specificity([0, 0], [0.1, 0.2])["90"]["sensitivity"] is None


def test_partial_auc_above_80_percent_sensitivity_runs_from_chance_to_one():
    y = np.array([0] * 50 + [1] * 50)
    assert evaluation.auc_above_sensitivity(y, y.astype(float)) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    chance = np.mean([evaluation.auc_above_sensitivity(y, rng.random(100)) for _ in range(200)])
    assert chance == pytest.approx(0.18, abs=0.02)


def test_expected_calibration_error_on_hand_computed_bins():
    probabilities = [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]]
    targets = [0, 1, 0, 1]
    # bin of 0.9: accuracy 1/2; bin of 0.6: accuracy 2/2 -> 0.5·0.4 + 0.5·0.4
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.4)
    # binary: bin 0.2 holds outcomes {0, 1} (0.5 vs 0.2), bin 0.8 holds {1, 1} (1 vs 0.8)
    assert expected_calibration_error([0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1]) == pytest.approx(0.25)
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0


def test_temperature_scaling_lowers_nll_and_ece_of_overconfident_logits():
    rng = np.random.default_rng(3)
    n, c = 3000, 8
    honest = rng.normal(scale=1.5, size=(n, c))
    probabilities = numeric.softmax(honest)
    targets = np.array([rng.choice(c, p=p) for p in probabilities])
    honest_malignant = rng.normal(scale=2.0, size=n)
    malignant = (rng.random(n) < numeric.sigmoid(honest_malignant)).astype(float)
    overconfident, overconfident_malignant = 4 * honest, 4 * honest_malignant

    fit, held = slice(0, 1500), slice(1500, None)
    temperature = fit_temperature(
        overconfident[fit], targets[fit], overconfident_malignant[fit], malignant[fit]
    )
    assert temperature == pytest.approx(4.0, rel=0.15)

    raw = numeric.softmax(overconfident[held])
    calibrated = numeric.softmax(overconfident[held], temperature)
    nll = calibration.negative_log_likelihood
    assert nll(calibrated, targets[held]) < nll(raw, targets[held])
    assert expected_calibration_error(calibrated, targets[held]) < 0.5 * (
        expected_calibration_error(raw, targets[held])
    )
    # Underconfident logits get a temperature below one.
    assert fit_temperature(honest[fit] / 3, targets[fit]) < 0.5


@pytest.mark.usefixtures("tmp_path")
def test_the_report_has_the_promised_keys_and_is_json():
    logits, targets = informative_predictions(n=300)
    malignant_logits = np.random.default_rng(2).normal(size=300) + 2 * (
        evaluation.malignant_targets(targets, ISIC2019_CLASSES)
    )
    result = report(logits, malignant_logits, targets, ISIC2019_CLASSES, temperature=1.3)
    for key in (
        "balanced_accuracy",
        "malignant_auc",
        "macro_auc",
        "ece",
        "ece_calibrated",
        "temperature",
        "per_class",
        "confusion_matrix",
        "sensitivity_at_specificity",
    ):
        assert key in result
    assert result["temperature"] == 1.3
    assert set(result["per_class"]) == {c.code for c in ISIC2019_CLASSES}
    assert set(result["sensitivity_at_specificity"]) == {"80", "90", "95"}
    assert np.array(result["confusion_matrix"]).sum() == 300
    assert 0.5 < result["malignant_auc"] <= 1
    assert 0.5 < result["macro_auc"] <= 1
    json.dumps(result, allow_nan=False)


def test_a_report_on_a_tiny_set_with_missing_classes_warns_of_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = report(
            np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), np.array([1.0, -1.0]), [0, 1], THREE
        )
    assert result["per_class"]["BKL"]["auc"] is None
    assert result["malignant_auc"] == 1.0
    json.dumps(result, allow_nan=False)


def test_plots_are_written_as_png(tmp_path):
    logits, targets = informative_predictions(n=200)
    malignant_logits = np.random.default_rng(5).normal(size=200)
    result = report(logits, malignant_logits, targets, ISIC2019_CLASSES, temperature=2.0)
    paths = save_plots(result, None, None, tmp_path / "from-report")
    assert set(paths) == {"confusion_matrix", "roc", "reliability"}
    for path in paths.values():
        assert path.read_bytes().startswith(b"\x89PNG")
        assert path.stat().st_size > 5000
    probabilities = numeric.softmax(logits, 2.0)
    again = save_plots(result, probabilities, targets, tmp_path / "full")
    assert all(p.is_file() for p in again.values())


def isic_score(targets, probabilities, codes):
    """Score with the ISIC challenge's own package, through its CSV entry point."""
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

    truth, prediction = io.StringIO(), io.StringIO()
    truth.write("image," + ",".join(codes) + "\n")
    prediction.write("image," + ",".join(codes) + "\n")
    for i, (target, row) in enumerate(zip(targets, probabilities, strict=True)):
        hot = ["1.0" if k == target else "0.0" for k in range(len(codes))]
        truth.write(f"ISIC_{i:07d}," + ",".join(hot) + "\n")
        prediction.write(f"ISIC_{i:07d}," + ",".join(repr(float(p)) for p in row) + "\n")
    truth.seek(0)
    prediction.seek(0)
    with warnings.catch_warnings():
        # The package (last released for pandas 2) calls pandas APIs that now warn.
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=r"isic_challenge_scoring")
        return ClassificationScore.from_stream(
            truth, prediction, ClassificationMetric.BALANCED_ACCURACY
        )


def test_metrics_agree_with_the_isic_challenge_scoring_package():
    from isic_challenge_scoring import metrics as isic_metrics

    codes = [c.code for c in ISIC2019_CLASSES]
    logits, targets = informative_predictions(n=500, seed=11)
    probabilities = numeric.softmax(logits)
    rng = np.random.default_rng(12)
    y_malignant = evaluation.malignant_targets(targets, ISIC2019_CLASSES)
    malignant = numeric.sigmoid(rng.normal(size=500) + 1.5 * y_malignant)

    ours = evaluation.classification_metrics(probabilities, malignant, targets, ISIC2019_CLASSES)
    theirs = isic_score(targets, probabilities, codes)

    tolerance = 1e-9
    assert ours["balanced_accuracy"] == pytest.approx(
        theirs.aggregate["balanced_accuracy"], abs=tolerance
    )
    assert ours["macro_auc"] == pytest.approx(theirs.macro_average["auc"], abs=tolerance)
    assert ours["macro_auc_sens_80"] == pytest.approx(
        theirs.macro_average["auc_sens_80"], abs=tolerance
    )
    pairs = {
        "auc": "auc",
        "auc_sens_80": "auc_sens_80",
        "ap": "ap",
        "threshold_sensitivity": "sensitivity",
        "threshold_specificity": "specificity",
    }
    for code in codes:
        for ours_key, their_key in pairs.items():
            assert ours["per_class"][code][ours_key] == pytest.approx(
                theirs.per_category.loc[code, their_key], abs=tolerance
            ), (code, ours_key)

    import pandas as pd

    weights = pd.Series(np.ones(500))
    assert ours["malignant_auc"] == pytest.approx(
        isic_metrics.auc(pd.Series(y_malignant), pd.Series(malignant), weights), abs=tolerance
    )
