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
