"""Serving ml's private files: a case's Grad-CAM heatmap, audited like the case's image."""

from django.http import FileResponse, Http404

from diagnosis.files import audit_view, serve_private_image
from diagnosis.models import Case
from ml import selectors


def serve_case_heatmap(request, case: Case, *, via: str = "web") -> FileResponse:
    """The heatmap of the case's latest prediction; 404 while it has none."""
    prediction = selectors.latest_prediction(case)
    if prediction is None or not prediction.heatmap:
        raise Http404("This case has no heatmap.")
    audit_view(request, case, target_type="heatmap", via=via)
    return serve_private_image(prediction.heatmap, filename=f"case-{case.pk}-heatmap.png")
