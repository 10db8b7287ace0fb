"""Pages that show a case with what the model said: the dashboard, a patient's timeline, the
case page (and what it polls) and the heatmap."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET

from diagnosis import selectors as diagnosis_selectors
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction, Case
from ml import disease_information, selectors
from ml.files import serve_case_heatmap
from ml.services.notify import wants_review_emails


@login_required
@require_GET
def dashboard(request):
    context = selectors.dashboard_for_user(request.user)
    context["clinics"] = diagnosis_selectors.clinics_for_user(request.user)
    context["administered"] = diagnosis_selectors.clinics_administered_by(request.user)
    context["review_emails"] = wants_review_emails(request.user)
    return render(request, "ml/dashboard.html", context)


@login_required
@require_GET
def patient_detail(request, pk: int):
    patient = get_object_or_404(diagnosis_selectors.patients_for_user(request.user), pk=pk)
    audit_record(action=AuditAction.VIEW, actor=request.user, target=patient)
    lesions = selectors.patient_timeline(patient)
    return render(request, "ml/patient_detail.html", {"patient": patient, "lesions": lesions})


def _heatmap_pending(prediction) -> bool:
    """The result is shown; its heatmap (a task of its own) is still to come. Only for a recent
    prediction, so that a page never polls forever for a heatmap that failed."""
    if prediction is None or prediction.heatmap or not settings.PREDICTION_HEATMAPS:
        return False
    return timezone.now() - prediction.created_at < timedelta(minutes=5)


def _case_context(case: Case) -> dict:
    prediction = selectors.latest_prediction(case)
    return {
        "case": case,
        "prediction": prediction,
        "top_diagnoses": prediction.top_diagnoses() if prediction else [],
        "poll_interval_ms": settings.CASE_POLL_INTERVAL_MS,
        "heatmap_pending": _heatmap_pending(prediction),
    }


@login_required
@require_GET
def case_detail(request, pk: int):
    """The case page. A withdrawn case is 404 except for its clinic's admins, who see it with
    the withdrawal and can restore it."""
    case = get_object_or_404(selectors.cases_for_user(request.user, include_withdrawn=True), pk=pk)
    audit_record(action=AuditAction.VIEW, actor=request.user, target=case)
    selectors.case_seen(user=request.user, case=case)
    context = _case_context(case)
    prediction = context["prediction"]
    context["review"] = selectors.latest_review(prediction)
    context["more_information"] = disease_information.for_case(prediction, context["review"])
    context["can_review"] = (
        prediction is not None
        and not case.is_withdrawn
        and diagnosis_selectors.user_can_review(user=request.user, clinic=case.clinic)
    )
    earlier = (  # thumbnails and dates only: no predictions needed
        diagnosis_selectors.cases_for_user(request.user)
        .filter(lesion=case.lesion)
        .exclude(pk=case.pk)
        .order_by("captured_at")
    )
    context["other_cases"] = earlier
    context["follows"] = earlier.filter(pk=case.follows_id).first() if case.follows_id else None
    context["followed_by"] = list(earlier.filter(follows=case))
    return render(request, "ml/case_detail.html", context)


@login_required
@require_GET
def case_status(request, pk: int):
    """What the case page polls: the status and the re-rendered result panel."""
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    context = _case_context(case)
    html = render_to_string("ml/_result.html", context, request=request)
    response = JsonResponse(
        {
            "status": case.status,
            "pending": case.is_pending,
            "heatmap_pending": context["heatmap_pending"],
            "html": html,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def case_heatmap(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    return serve_case_heatmap(request, case)
