"""What object each route's ``pk`` names, for the batteries that try every route."""

OBJECT_OF_ROUTE = {
    "patient": "patient",
    "lesion": "lesion",
    "case": "case",
    "review-case": "case",
    "auditevent": "auditevent",
    "webhook": "webhook",
    "membership": "membership",
    "operating-point": "clinic",
}

# Correcting records (diagnosis.corrections): pages, and the case routes of
# diagnosis.api.corrections (router basename "case-correction").
OBJECT_OF_ROUTE.update(
    {
        "patient-edit": "patient",
        "patient-merge": "patient",
        "lesion-edit": "lesion",
        "case-move": "case",
        "case-withdraw": "case",
        "case-restore": "case",
        "withdrawn-cases": "clinic",
        "case-correction": "case",
    }
)
