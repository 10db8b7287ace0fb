from diagnosis.selectors import reviewer_clinic_ids


def roles(request):
    """What the navigation needs to know about the user's roles (computed only when used)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"is_reviewer": False}
    return {"is_reviewer": lambda: bool(reviewer_clinic_ids(user))}
