"""Server-rendered pages of the clinical records: the patient list, a new case, a case's image and
thumbnails, retrying a failed case. Pages that show what the model said are ``ml.views``."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from diagnosis import selectors, services
from diagnosis.files import serve_case_image, serve_case_thumbnail
from diagnosis.forms import NewCaseForm, PatientSearchForm
from diagnosis.models import Case, CaseStatus


@login_required
@require_GET
def patient_list(request):
    form = PatientSearchForm(request.GET)
    search = form.cleaned_data["q"] if form.is_valid() else ""
    patients = selectors.patients_for_user(request.user, search=search).order_by("identifier")
    page = Paginator(patients, 25).get_page(request.GET.get("page"))
    return render(request, "diagnosis/patient_list.html", {"form": form, "page": page})


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
