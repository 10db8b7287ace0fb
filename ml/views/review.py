"""The dermatologist's review queue and review screen."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from diagnosis import selectors as diagnosis_selectors
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction
from ml import disease_information, selectors
from ml.engine.model.thresholds import with_defaults
from ml.forms import QueueFilterForm, ReviewForm, diagnosis_options
from ml.services.operating_point import operating_point_choose
from ml.services.registry import active_model_version
from ml.services.review import review_submit


def _require_reviewer(user) -> None:
    if not diagnosis_selectors.reviewer_clinic_ids(user):
        raise PermissionDenied("The review queue is for dermatologists and clinic admins.")


@login_required
@require_GET
def review_queue(request):
    _require_reviewer(request.user)
    form = QueueFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    queue = selectors.review_queue(
        request.user,
        state=filters.get("state") or "unreviewed",
        model_version=filters["model_version"].pk if filters.get("model_version") else None,
        diagnosis=filters.get("diagnosis", ""),
        since=filters.get("since"),
        until=filters.get("until"),
    )
    page = Paginator(queue, 25).get_page(request.GET.get("page"))
    return render(request, "ml/review_queue.html", {"form": form, "page": page})


@login_required
@require_http_methods(["GET", "POST"])
def review_case(request, pk: int):
    """Review the newest prediction of a case."""
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    _require_reviewer(request.user)
    prediction = selectors.latest_prediction(case)
    if prediction is None or case.clinic_id not in diagnosis_selectors.reviewer_clinic_ids(
        request.user
    ):
        raise PermissionDenied("There is nothing for you to review on this case.")
    form = ReviewForm(request.POST or None, prediction=prediction)
    if request.method == "POST" and form.is_valid():
        try:
            review_submit(reviewer=request.user, prediction=prediction, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Review of case {case.pk} saved.")
            following = selectors.next_in_queue(request.user, after=prediction)
            if following is not None:
                return redirect("ml:review-case", pk=following.case_id)
            return redirect("ml:review-queue")
    audit_record(action=AuditAction.VIEW, actor=request.user, target=case)
    earlier = (
        selectors.cases_for_user(request.user)
        .filter(lesion=case.lesion, captured_at__lt=case.captured_at)
        .order_by("captured_at")
    )
    patient = case.lesion.patient
    context = {
        "case": case,
        "patient": patient,
        "age": case.captured_at.year - patient.year_of_birth if patient.year_of_birth else None,
        "diagnosis_options": diagnosis_options(prediction),
        "prediction": prediction,
        "top_diagnoses": prediction.top_diagnoses(),
        "more_information": disease_information.for_case(prediction),
        "reviews": prediction.reviews.select_related("reviewer"),
        "earlier_cases": earlier,
        "form": form,
        "queue_url": reverse("ml:review-queue"),
    }
    return render(request, "ml/review_case.html", context, status=400 if form.errors else 200)


SENSITIVITY_TARGETS = (0.80, 0.85, 0.90, 0.95, 0.975)


@login_required
@require_http_methods(["GET", "POST"])
def operating_point(request, pk: int):
    """A clinic admin chooses the malignant threshold of the active model for their clinic."""
    from ml.models import ClinicOperatingPoint

    clinic = get_object_or_404(diagnosis_selectors.clinics_for_user(request.user), pk=pk)
    if not diagnosis_selectors.user_is_clinic_admin(user=request.user, clinic=clinic):
        raise PermissionDenied("Only clinic admins choose the operating point.")
    model_version = active_model_version()
    error = ""
    if request.method == "POST" and model_version is not None:
        try:
            target = float(request.POST.get("sensitivity", ""))
            operating_point_choose(
                admin=request.user, clinic=clinic, model_version=model_version, sensitivity=target
            )
        except ValueError:
            error = "Choose one of the offered sensitivities."
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, "The operating point was saved; new predictions use it.")
            return redirect("ml:operating-point", pk=pk)
    current = (
        ClinicOperatingPoint.objects.filter(clinic=clinic, model_version=model_version).first()
        if model_version
        else None
    )
    options = []
    if model_version is not None:
        for target in SENSITIVITY_TARGETS:
            point = model_version.operating_point_for(target)
            if point:
                options.append({"target": target, "percent": f"{target * 100:g}", **point})
    context = {
        "clinic": clinic,
        "model_version": model_version,
        "current": current,
        "default_threshold": with_defaults(model_version.thresholds)["malignant"]
        if model_version
        else None,
        "options": options,
        "error": error,
    }
    return render(request, "ml/operating_point.html", context, status=400 if error else 200)
