"""Realistic request and response examples for the OpenAPI schema (Swagger UI shows them).

Serializers take theirs with ``@extend_schema_serializer(examples=...)``; list operations show
them inside a page (``count``/``next``/``previous``/``results``). ``tests/test_api_schema.py``
checks every example against the schema it illustrates.
"""

from drf_spectacular.utils import OpenApiExample

BASE = "https://skinsense.example.org/api/v1"
DISCLAIMER = "Decision support, not a diagnosis. The final judgement is the clinician's."


def _response(name, value, *, status_codes=("200", "201"), **kwargs):
    return OpenApiExample(
        name, value=value, response_only=True, status_codes=list(status_codes), **kwargs
    )


def _request(name, value, **kwargs):
    return OpenApiExample(name, value=value, request_only=True, **kwargs)


PATIENT = [
    _request(
        "New patient",
        {
            "identifier": "MRN-004512",
            "sex": "female",
            "year_of_birth": 1968,
            "fitzpatrick_type": "II",
        },
    ),
    _response(
        "Patient",
        {
            "id": 17,
            "clinic": 3,
            "identifier": "MRN-004512",
            "sex": "female",
            "year_of_birth": 1968,
            "fitzpatrick_type": "II",
            "created_at": "2026-03-02T09:14:05.120000Z",
        },
    ),
]

LESION = [
    _request(
        "New lesion",
        {
            "patient": 17,
            "label": "left shoulder, upper",
            "anatomic_site": "Upper extremity:Shoulder",
        },
    ),
    _response(
        "Lesion",
        {
            "id": 52,
            "patient": 17,
            "clinic": 3,
            "anatomic_site": "Upper extremity:Shoulder",
            "label": "left shoulder, upper",
            "created_at": "2026-03-02T09:15:40.004000Z",
        },
    ),
]

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
    "created_at": "2026-03-02T09:16:01.200000Z",
    "updated_at": "2026-03-02T09:16:04.010000Z",
    "prediction": PREDICTION,
}
CASE_QUEUED = {
    **CASE_DONE,
    "status": "queued",
    "updated_at": "2026-03-02T09:16:01.200000Z",
    "prediction": None,
}

CASE = [
    _response("Case with its prediction", CASE_DONE, status_codes=("200",)),
    _response(
        "Case queued",
        CASE_QUEUED,
        status_codes=("202",),
        description="The image was accepted; poll the case until its status is done.",
    ),
]

CASE_CREATE = [
    _request(
        "Upload a dermoscopic image",
        {
            "lesion": 52,
            "image": "(the JPEG or PNG file)",
            "image_type": "dermoscopic",
            "notes": "Changed colour since last visit.",
            "captured_at": "2026-03-02T09:10:00Z",
        },
        media_type="multipart/form-data",
    )
]

REVIEW = [
    _request(
        "Override the prediction",
        {"verdict": "override", "final_diagnosis": "NV", "notes": "Benign pattern on dermoscopy."},
    ),
    _response(
        "Review",
        {
            "id": 77,
            "prediction": 311,
            "reviewer": "dr.okafor",
            "verdict": "override",
            "final_diagnosis": "NV",
            "notes": "Benign pattern on dermoscopy.",
            "created_at": "2026-03-03T14:02:11.500000Z",
        },
    ),
]

MODEL_VERSION = [
    _response(
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
    _response(
        "Unreviewed, riskiest first",
        {"case": 208, **PREDICTION, "reviewed": False, "last_verdict": None},
    )
]

AUDIT_EVENT = [
    _response(
        "A case viewed through the API",
        {
            "id": 9031,
            "at": "2026-03-02T09:20:44.700000Z",
            "actor": 12,
            "actor_username": "dr.jones",
            "clinic": 3,
            "action": "view",
            "target_type": "case",
            "target_id": "208",
            "ip": "10.20.0.14",
            "detail": {"via": "api"},
        },
    )
]

WEBHOOK_BODY = {
    "clinic": 3,
    "url": "https://records.example-clinic.org/hooks/skinsense",
    "events": ["prediction.completed", "review.created"],
    "is_active": True,
}
WEBHOOK = [
    _request("New webhook", WEBHOOK_BODY),
    _response("Webhook", {"id": 5, **WEBHOOK_BODY, "created_at": "2026-03-01T08:00:00Z"}),
]
WEBHOOK_CREATED = [
    _response(
        "Webhook with its secret (shown once)",
        {
            "id": 5,
            **WEBHOOK_BODY,
            "created_at": "2026-03-01T08:00:00Z",
            "secret": "5f0c2e8a9b7d4c1e3a6f8b0d2c4e6a8b0c2e4a6f8b0d2c4e6a8b0c2e4a6f8b0d",
        },
        status_codes=("201",),
    )
]
WEBHOOK_DELIVERY = [
    _response(
        "A delivered event",
        {
            "id": 140,
            "event": "prediction.completed",
            "payload": {"event": "prediction.completed", "case": 208, "prediction": 311},
            "status": "succeeded",
            "attempts": 1,
            "last_status_code": 204,
            "last_error": "",
            "created_at": "2026-03-02T09:16:04.100000Z",
            "delivered_at": "2026-03-02T09:16:04.350000Z",
        },
    )
]

MEMBERSHIP = [
    _request(
        "Add a dermatologist", {"clinic": 3, "username": "dr.okafor", "role": "dermatologist"}
    ),
    _response(
        "Membership",
        {
            "id": 21,
            "clinic": 3,
            "username": "dr.okafor",
            "role": "dermatologist",
            "created_at": "2026-03-01T10:00:00Z",
        },
    ),
]
MEMBERSHIP_ROLE = [
    _request("Make a clinic admin", {"role": "clinic_admin"}),
    _response(
        "Membership",
        {"id": 21, "clinic": 3, "role": "clinic_admin", "created_at": "2026-03-01T10:00:00Z"},
    ),
]

BULK_SUBMIT = [
    _request(
        "A ZIP with its manifest",
        {"archive": "(the ZIP file)", "manifest": "(manifest.csv)", "clinic": 3},
        media_type="multipart/form-data",
    )
]
BULK_RESULT = [
    _response(
        "Two created, one refused",
        {
            "created": 2,
            "duplicates": 0,
            "errors": 1,
            "rows": [
                {"row": 2, "filename": "a.jpg", "status": "created", "case": 209, "errors": []},
                {"row": 3, "filename": "b.jpg", "status": "created", "case": 210, "errors": []},
                {
                    "row": 4,
                    "filename": "c.gif",
                    "status": "error",
                    "case": None,
                    "errors": ["Only JPEG and PNG images are accepted."],
                },
            ],
        },
        status_codes=("200",),
    )
]

TOKEN = [
    _request("Log in", {"username": "dr.jones", "password": "correct horse battery staple"}),
    _response(
        "Token", {"token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"}, status_codes=("200",)
    ),
]

ME = [
    _response(
        "A clinician in one clinic",
        {
            "id": 12,
            "username": "dr.jones",
            "email": "jones@example-clinic.org",
            "clinics": [{"id": 3, "name": "North Clinic", "role": "clinician"}],
        },
        status_codes=("200",),
    )
]
