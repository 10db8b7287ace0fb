"""The bodies of the webhook events about what the model and the reviewers said."""

from django.utils import timezone


def prediction_payload(prediction) -> dict:
    return {
        "clinic": prediction.case.clinic_id,
        "case": prediction.case_id,
        "status": "done",
        "prediction": {
            "id": prediction.pk,
            "model_version": prediction.model_version_id,
            "category": prediction.category,
            "malignant_probability": prediction.malignant_probability,
            "top_diagnosis": prediction.top_diagnosis,
            "uncertain": prediction.uncertain,
        },
        "at": timezone.now().isoformat(),
    }


def review_payload(review) -> dict:
    return {
        "clinic": review.prediction.case.clinic_id,
        "case": review.prediction.case_id,
        "review": {
            "id": review.pk,
            "prediction": review.prediction_id,
            "verdict": review.verdict,
            "final_diagnosis": review.final_diagnosis,
            "final_isic_diagnosis": review.final_isic_diagnosis,
            "send_back_reason": review.send_back_reason,
            "management": review.management,
            "follow_up_months": review.follow_up_months,
            "follow_up_due": review.follow_up_due.isoformat() if review.follow_up_due else None,
        },
        "at": timezone.now().isoformat(),
    }
