"""Server-rendered pages. Thin: every read goes through selectors, every write through services."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponseNotModified, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.http import parse_etags
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from diagnosis import selectors, services, thumbnails
from diagnosis.audit import audit_record
from diagnosis.forms import NewCaseForm, PatientSearchForm
from diagnosis.models import AuditAction, Case, CaseStatus


def serve_private_image(file_field, *, filename: str) -> FileResponse:
    """Stream a private image with headers that keep it out of every cache."""
    try:
        handle = file_field.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The image file is missing.")
    content_type = "image/png" if file_field.name.endswith(".png") else "image/jpeg"
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "no-store, private"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# How long a browser keeps a thumbnail before asking again (If-None-Match → 304).
THUMBNAIL_MAX_AGE = getattr(settings, "THUMBNAIL_MAX_AGE", 24 * 3600)


def serve_case_thumbnail(request, case: Case, *, size: int, via: str = "web"):
    """A case's cached JPEG thumbnail. Unlike the original, it may stay in the browser's own
    cache (``private``): the bytes of a case never change, so its ETag never does either."""
    if size not in thumbnails.THUMBNAIL_SIZES:
        raise Http404("No thumbnail of that size.")
    etag = thumbnails.etag_for(sha256=case.image_sha256, size=size)
    headers = {
        "ETag": etag,
        "Cache-Control": f"private, max-age={THUMBNAIL_MAX_AGE}",
        "X-Content-Type-Options": "nosniff",
    }
    if_none_match = request.headers.get("If-None-Match", "")
    if if_none_match and (set(parse_etags(if_none_match)) & {etag, f"W/{etag}", "*"}):
        not_modified = HttpResponseNotModified()
        for name, value in headers.items():
            not_modified[name] = value
        return not_modified  # the browser has these bytes already (audited when sent)
    try:
        path = thumbnails.case_thumbnail(case, size=size)
    except thumbnails.ThumbnailError:
        raise Http404("The image file is missing.")
    audit_record(
        action=AuditAction.VIEW,
        actor=request.user,
        target=case,
        target_type="case_thumbnail",
        detail={"size": size, **({"via": via} if via != "web" else {})},
    )
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    for name, value in headers.items():
        response[name] = value
    response["Content-Disposition"] = f'inline; filename="case-{case.pk}-{size}.jpg"'
    return response


@login_required
@require_GET
def dashboard(request):
    context = selectors.dashboard_for_user(request.user)
    context["clinics"] = selectors.clinics_for_user(request.user)
    context["administered"] = selectors.clinics_for_user(request.user).filter(
        memberships__user=request.user, memberships__role="clinic_admin"
    )
    return render(request, "diagnosis/dashboard.html", context)


@login_required
@require_GET
def patient_list(request):
    form = PatientSearchForm(request.GET)
    search = form.cleaned_data["q"] if form.is_valid() else ""
    patients = selectors.patients_for_user(request.user, search=search).order_by("identifier")
    page = Paginator(patients, 25).get_page(request.GET.get("page"))
    return render(request, "diagnosis/patient_list.html", {"form": form, "page": page})


@login_required
@require_GET
def patient_detail(request, pk: int):
    patient = get_object_or_404(selectors.patients_for_user(request.user), pk=pk)
    audit_record(action=AuditAction.VIEW, actor=request.user, target=patient)
    lesions = selectors.patient_timeline(patient)
    return render(
        request, "diagnosis/patient_detail.html", {"patient": patient, "lesions": lesions}
    )


def _new_case_form(request, data=None, files=None):
    user = request.user
    initial = {}
    for name in ("patient", "lesion"):
        if request.GET.get(name, "").isdigit():
            initial[name] = request.GET[name]
    return NewCaseForm(
        data,
        files,
        initial=initial,
        clinics=selectors.clinics_for_user(user),
        patients=selectors.patients_for_user(user).order_by("identifier"),
        lesions=selectors.lesions_for_user(user).order_by("patient__identifier", "label"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def case_new(request):
    if not selectors.clinics_for_user(request.user).exists():
        raise PermissionDenied("You are not a member of any clinic.")
    if request.method == "GET":
        return render(request, "diagnosis/case_new.html", {"form": _new_case_form(request)})
    form = _new_case_form(request, request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            submission = services.case_submit_with_records(
                user=request.user,
                clinic=data["clinic"],
                upload=data["image"],
                patient=data["patient"],
                new_patient={
                    "identifier": data["new_patient_identifier"],
                    "sex": data["new_patient_sex"] or "unknown",
                    "year_of_birth": data["new_patient_year_of_birth"],
                    "fitzpatrick_type": data["new_patient_fitzpatrick_type"],
                },
                lesion=data["lesion"],
                new_lesion={
                    "label": data["new_lesion_label"],
                    "anatomic_site": data["new_lesion_anatomic_site"],
                },
                image_type=data["image_type"],
                notes=data["notes"],
                captured_at=data["captured_at"],
            )
        except ValidationError as exc:
            _attach_errors(form, exc)
        else:
            if submission.created:
                messages.success(request, "Image received. The prediction is on its way.")
            else:
                messages.info(request, "This image was already submitted for this lesion.")
            return redirect(submission.case)
    return render(request, "diagnosis/case_new.html", {"form": form}, status=400)


def _attach_errors(form, exc: ValidationError) -> None:
    field_map = {
        "identifier": "new_patient_identifier",
        "year_of_birth": "new_patient_year_of_birth",
        "label": "new_lesion_label",
        "anatomic_site": "new_lesion_anatomic_site",
    }
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            target = field_map.get(field, field)
            form.add_error(target if target in form.fields else None, errors)
    else:
        form.add_error("image", exc.messages)


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
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    audit_record(action=AuditAction.VIEW, actor=request.user, target=case)
    context = _case_context(case)
    earlier = (
        selectors.cases_for_user(request.user)
        .filter(lesion=case.lesion)
        .exclude(pk=case.pk)
        .order_by("captured_at")
    )
    context["other_cases"] = earlier
    return render(request, "diagnosis/case_detail.html", context)


@login_required
@require_GET
def case_status(request, pk: int):
    """What the case page polls: the status and the re-rendered result panel."""
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    context = _case_context(case)
    html = render_to_string("diagnosis/_result.html", context, request=request)
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
def case_image(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    audit_record(action=AuditAction.VIEW, actor=request.user, target=case, target_type="case_image")
    extension = "png" if case.image.name.endswith(".png") else "jpg"
    return serve_private_image(case.image, filename=f"case-{case.pk}.{extension}")


@login_required
@require_GET
def case_thumbnail(request, pk: int, size: int):
    # The scoping queryset alone (no prediction prefetch): a list page asks for many of these.
    case = get_object_or_404(Case.objects.for_user(request.user).select_related("clinic"), pk=pk)
    return serve_case_thumbnail(request, case, size=size)


@login_required
@require_GET
def case_heatmap(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    prediction = selectors.latest_prediction(case)
    if prediction is None or not prediction.heatmap:
        raise Http404("This case has no heatmap.")
    audit_record(action=AuditAction.VIEW, actor=request.user, target=case, target_type="heatmap")
    return serve_private_image(prediction.heatmap, filename=f"case-{case.pk}-heatmap.png")


@login_required
@require_POST
def case_retry(request, pk: int):
    from ml.services import case_retry as retry

    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    if case.status == CaseStatus.FAILED:
        retry(case=case)
        messages.info(request, "The case was queued again.")
    return redirect(case)
