"""Server-rendered pages of the clinical records: the patient list, a new case, a case's image and
thumbnails, retrying a failed case. Pages that show what the model said are ``ml.views``."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from diagnosis import selectors, services
from diagnosis.files import serve_case_image, serve_case_thumbnail
from diagnosis.forms import NewCaseForm, PatientSearchForm
from diagnosis.models import Case, CaseStatus, IdempotencyKey


@login_required
@require_GET
def patient_list(request):
    form = PatientSearchForm(request.GET)
    search = form.cleaned_data["q"] if form.is_valid() else ""
    patients = selectors.patients_for_user(request.user, search=search).order_by("identifier")
    page = Paginator(patients, 25).get_page(request.GET.get("page"))
    return render(request, "diagnosis/patient_list.html", {"form": form, "page": page})


NEW_CASE_PAGE_KEY = "web-new-case:{}"  # the IdempotencyKey of a new-case page's form_token


def _case_of_token(user, token) -> Case | None:
    """The case a new-case page with this token already made (a repeated submit)."""
    if not token:
        return None
    stored = (
        IdempotencyKey.objects.filter(user=user, key=NEW_CASE_PAGE_KEY.format(token))
        .select_related("case")
        .first()
    )
    return stored.case if stored else None


def _remember_token(user, token, case: Case) -> None:
    if token:
        IdempotencyKey.objects.get_or_create(
            user=user,
            key=NEW_CASE_PAGE_KEY.format(token),
            defaults={"request_sha256": "", "case": case, "response_status": 302},
        )


def _new_case_form(request, data=None, files=None):
    user = request.user
    initial = {"form_token": uuid.uuid4()}
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
    token = request.POST.get("form_token", "")
    repeated = _case_of_token(request.user, token) if _is_uuid(token) else None
    if repeated is not None:
        messages.info(request, "This form was already sent: here is the case it made.")
        return redirect(repeated)
    if form.is_valid():
        data = form.cleaned_data
        try:
            submission = services.case_submit_with_records(
                user=request.user,
                clinic=data["clinic"],
                upload=data["image"],
                patient=data["patient"]
                or {
                    "identifier": data["new_patient_identifier"],
                    "sex": data["new_patient_sex"] or "unknown",
                    "year_of_birth": data["new_patient_year_of_birth"],
                    "fitzpatrick_type": data["new_patient_fitzpatrick_type"],
                },
                lesion=data["lesion"]
                or {
                    "label": data["new_lesion_label"],
                    "anatomic_site": data["new_lesion_anatomic_site"],
                },
                image_type=data["image_type"],
                notes=data["notes"],
                captured_at=data["captured_at"],
            )
        except ValidationError as exc:
            twin = _case_of_token(request.user, data.get("form_token"))
            if twin is not None:  # the first of two submits finished meanwhile
                return redirect(twin)
            _attach_errors(form, exc)
        else:
            _remember_token(request.user, data.get("form_token"), submission.case)
            messages.success(request, _received_message(submission))
            return redirect(submission.case)
    return render(request, "diagnosis/case_new.html", {"form": form}, status=400)


def _received_message(submission) -> str:
    if not submission.created:
        return "This image was already submitted for this lesion: here is its case."
    case = Case.objects.get(pk=submission.case.pk)  # its status now (eager tasks ran already)
    if case.status == CaseStatus.DONE:
        return "Image received and analysed: the result is below."
    return "Image received. The result appears below when the model has looked at it."


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


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


@login_required
@require_GET
def case_image(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    return serve_case_image(request, case)


@login_required
@require_GET
def case_thumbnail(request, pk: int, size: int):
    # The scoping queryset alone (no prediction prefetch): a list page asks for many of these.
    case = get_object_or_404(Case.objects.for_user(request.user).select_related("clinic"), pk=pk)
    return serve_case_thumbnail(request, case, size=size)


@login_required
@require_POST
def case_retry(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    if case.status == CaseStatus.FAILED:
        services.case_retry(case=case)
        messages.info(request, "The case was queued again.")
    return redirect(case)
