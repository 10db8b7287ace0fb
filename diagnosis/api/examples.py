"""Realistic request and response examples for the OpenAPI schema (Swagger UI shows them).

Serializers take theirs with ``@extend_schema_serializer(examples=...)``; list operations show
them inside a page (``count``/``next``/``previous``/``results``).
``tests/diagnosis/test_api_schema.py`` checks every example against the schema it illustrates.
"""

from drf_spectacular.utils import OpenApiExample

BASE = "https://skinsense.example.org/api/v1"


def response(name, value, *, status_codes=("200", "201"), **kwargs):
    return OpenApiExample(
        name, value=value, response_only=True, status_codes=list(status_codes), **kwargs
    )


def request(name, value, **kwargs):
    return OpenApiExample(name, value=value, request_only=True, **kwargs)


PATIENT = [
    request(
        "New patient",
        {
            "identifier": "MRN-004512",
            "sex": "female",
            "year_of_birth": 1968,
            "fitzpatrick_type": "II",
        },
    ),
    response(
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
    request(
        "New lesion",
        {
            "patient": 17,
            "label": "left shoulder, upper",
            "anatomic_site": "Upper extremity:Shoulder",
        },
    ),
    response(
        "Lesion",
        {
            "id": 52,
            "patient": 17,
            "clinic": 3,
            "anatomic_site": "Upper extremity:Shoulder",
            "anatomic_site_label": "Upper extremity › Shoulder",
            "label": "left shoulder, upper",
            "created_at": "2026-03-02T09:15:40.004000Z",
        },
    ),
]

PATIENT_UPDATE = [
    # Every field, so that it fits PUT too; a PATCH sends only what changes (and the reason).
    request(
        "Correct the Fitzpatrick type",
        {
            "identifier": "MRN-004512",
            "sex": "female",
            "year_of_birth": 1968,
            "fitzpatrick_type": "III",
            "reason": "Typed II at intake; assessed III at this visit.",
        },
    ),
    response(
        "Patient",
        {
            "id": 17,
            "clinic": 3,
            "identifier": "MRN-004512",
            "sex": "female",
            "year_of_birth": 1968,
            "fitzpatrick_type": "III",
            "created_at": "2026-03-02T09:14:05.120000Z",
        },
        status_codes=("200",),
    ),
]

LESION_UPDATE = [
    request(
        "Correct the site",
        {"anatomic_site": "Upper extremity:Upper arm", "reason": "Site chosen wrongly at intake."},
    ),
    response(
        "Lesion",
        {
            "id": 52,
            "patient": 17,
            "clinic": 3,
            "anatomic_site": "Upper extremity:Upper arm",
            "anatomic_site_label": "Upper extremity › Upper arm",
            "label": "left shoulder, upper",
            "created_at": "2026-03-02T09:15:40.004000Z",
        },
        status_codes=("200",),
    ),
]

PATIENT_MERGE = [
    request(
        "Merge a duplicate record",
        {"duplicate": 23, "reason": "Registered twice at the front desk (same person)."},
    )
]

CASE_MOVE = [
    request(
        "File under the right lesion", {"lesion": 57, "reason": "Filed under the wrong patient."}
    )
]

CASE_REASON = [request("Why", {"reason": "Image of the wrong body site; taken again."})]

CASE_RECORD_FILED = {
    "id": 208,
    "clinic": 3,
    "patient": 17,
    "lesion": 57,
    "status": "done",
    "captured_at": "2026-03-02T09:10:00Z",
    "created_at": "2026-03-02T09:15:58.300000Z",
}
CASE_RECORD = [
    response(
        "A case",
        {**CASE_RECORD_FILED, "withdrawn_at": None, "withdrawn_by": None, "withdrawal_reason": ""},
        status_codes=("200",),
    ),
    response(
        "A withdrawn case",
        {
            **CASE_RECORD_FILED,
            "withdrawn_at": "2026-03-03T11:02:10.500000Z",
            "withdrawn_by": "dr.jones",
            "withdrawal_reason": "Image of the wrong body site; taken again.",
        },
        status_codes=("200",),
    ),
]

CASE_CREATE = [
    request(
        "Upload a dermoscopic image",
        {
            "lesion": 52,
            "image": "(the JPEG or PNG file)",
            "image_type": "dermoscopic",
            "notes": "Changed colour since last visit.",
            "captured_at": "2026-03-02T09:10:00Z",
        },
        media_type="multipart/form-data",
    ),
    request(
        "A new image answering a send-back",
        {
            "lesion": 52,
            "image": "(the JPEG or PNG file)",
            "image_type": "dermoscopic",
            "follows": 191,
        },
        media_type="multipart/form-data",
    ),
]

AUDIT_EVENT = [
    response(
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
    request("New webhook", WEBHOOK_BODY),
    response("Webhook", {"id": 5, **WEBHOOK_BODY, "created_at": "2026-03-01T08:00:00Z"}),
]
WEBHOOK_CREATED = [
    response(
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
    response(
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
    request("Add a dermatologist", {"clinic": 3, "username": "dr.okafor", "role": "dermatologist"}),
    response(
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
    request("Make a clinic admin", {"role": "clinic_admin"}),
    response(
        "Membership",
        {"id": 21, "clinic": 3, "role": "clinic_admin", "created_at": "2026-03-01T10:00:00Z"},
    ),
]

BULK_SUBMIT = [
    request(
        "A ZIP with its manifest",
        {"archive": "(the ZIP file)", "manifest": "(manifest.csv)", "clinic": 3},
        media_type="multipart/form-data",
    )
]
BULK_RESULT = [
    response(
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
    request("Log in", {"username": "dr.jones", "password": "correct horse battery staple"}),
    response("Token", {"token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"}, status_codes=("200",)),
]

ME = [
    response(
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
