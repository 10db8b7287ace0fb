"""OpenAPI examples of what ``ml`` serves: predictions, cases with them, reviews, models,
the review queue (the helpers and the clinical examples are diagnosis's)."""

from diagnosis.api.examples import BASE, request, response
from ml.models import DISCLAIMER

MODEL_VERSION_SUMMARY = {
    "id": 4,
    "name": "resnet50-isic2019",
    "version": "2026.02",
    "is_demo": False,
}
PREDICTION = {
    "id": 311,
    "model_version": MODEL_VERSION_SUMMARY,
    "malignant_probability": 0.71,
    "malignant_threshold": 0.35,
    "category": "malignant",
    "top_diagnosis": "MEL",
    "top_diagnosis_name": "Melanoma",
    "top_probability": 0.64,
    "diagnosis_probabilities": {
        "MEL": 0.64,
        "NV": 0.21,
        "BCC": 0.05,
        "AK": 0.02,
        "BKL": 0.06,
        "DF": 0.01,
        "VASC": 0.005,
        "SCC": 0.005,
    },
    "uncertain": False,
    "heatmap_url": f"{BASE}/cases/208/heatmap/",
    "inference_ms": 412,
    "created_at": "2026-03-02T09:16:03.918000Z",
    "disclaimer": DISCLAIMER,
}
REVIEW_OVERRIDE = {
    "id": 77,
    "prediction": 311,
    "reviewer": "dr.okafor",
    "verdict": "override",
    "final_diagnosis": "MEL",
    "final_isic_diagnosis": "Malignant:Malignant melanocytic proliferations (Melanoma):"
    "Melanoma in situ",
    "final_diagnosis_name": "Melanoma in situ",
    "send_back_reason": "",
    "management": "excision",
    "follow_up_months": None,
    "follow_up_due": None,
    "refer_to": "",
    "notes": "Atypical network at the border; excise with 5 mm margins.",
    "created_at": "2026-03-03T14:02:11.500000Z",
}

CASE_DONE = {
    "id": 208,
    "clinic": 3,
    "patient": 17,
    "lesion": 52,
    "status": "done",
    "error": "",
    "image_type": "dermoscopic",
    "notes": "Changed colour since last visit.",
    "captured_at": "2026-03-02T09:10:00Z",
    "width": 1024,
    "height": 768,
    "image_sha256": "9f2c1a7be0d44c3e8a51f6b2d7e90c13a4b5c6d7e8f90123456789abcdef0123",
    "image_url": f"{BASE}/cases/208/image/",
    "thumbnail_url": f"{BASE}/cases/208/thumbnail/",
    "submitted_by": "dr.jones",
    "follows": 191,
    "created_at": "2026-03-02T09:16:01.200000Z",
    "updated_at": "2026-03-02T09:16:04.010000Z",
    "prediction": PREDICTION,
    "latest_review": REVIEW_OVERRIDE,
}
CASE_QUEUED = {
    **CASE_DONE,
    "status": "queued",
    "updated_at": "2026-03-02T09:16:01.200000Z",
    "prediction": None,
    "latest_review": None,
}

CASE = [
    response("Case with its prediction", CASE_DONE, status_codes=("200",)),
    response(
        "Case queued",
        CASE_QUEUED,
        status_codes=("202",),
        description="The image was accepted; poll the case until its status is done.",
    ),
]

REVIEW = [
    request(
        "A different final diagnosis, with excision",
        {
            "verdict": "override",
            "final_diagnosis": "Melanoma in situ",
            "management": "excision",
            "notes": "Atypical network at the border; excise with 5 mm margins.",
        },
    ),
    request(
        "Agree, monitor in 6 months",
        {"verdict": "agree", "management": "monitor", "follow_up_months": 6},
    ),
    request(
        "Send back for a new image",
        {"verdict": "send_back", "send_back_reason": "blurry", "notes": "Out of focus; retake."},
    ),
    response("Review", REVIEW_OVERRIDE),
]

MODEL_VERSION = [
    response(
        "Model version",
        {
            "id": 4,
            "name": "resnet50-isic2019",
            "version": "2026.02",
            "backbone": "resnet50",
            "classes": [
                {
                    "code": "MEL",
                    "name": "Melanoma",
                    "category": "malignant",
                    "isic_diagnosis": "MEL",
                },
                {
                    "code": "NV",
                    "name": "Melanocytic nevus",
                    "category": "benign",
                    "isic_diagnosis": "NV",
                },
            ],
            "preprocessing": {
                "image_size": 224,
                "resize_size": 256,
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "interpolation": "bilinear",
            },
            "thresholds": {"malignant": 0.35},
            "temperature": 1.12,
            "metrics": {"balanced_accuracy": 0.71, "malignant_sensitivity": 0.9},
            "weights_sha256": "3b7d0c9e2f1a4b5c6d7e8f90123456789abcdef0123456789abcdef012345678",
            "is_active": True,
            "is_demo": False,
            "created_at": "2026-02-20T16:40:00Z",
        },
    )
]

QUEUE_ITEM = [
    response(
        "Unreviewed, riskiest first",
        {"case": 208, **PREDICTION, "reviewed": False, "last_verdict": None},
    )
]
