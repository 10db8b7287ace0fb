"""Server-rendered pages of the clinical records: the patient list, a new case, a case's image and
thumbnails, retrying a failed case, and correcting records (edit a patient or a lesion, move,
withdraw and restore a case, merge two records). Pages that show what the model said are
``ml.views``."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from diagnosis import corrections, selectors, services
from diagnosis.files import serve_case_image, serve_case_thumbnail
from diagnosis.forms import NewCaseForm, PatientSearchForm
from diagnosis.forms_records import (
    CaseMoveForm,
    LesionEditForm,
    PatientEditForm,
    PatientMergeForm,
    ReasonForm,
)
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
    # A case withdrawn since is not an answer: the form is sent again as new.
    return stored.case if stored and not stored.case.is_withdrawn else None


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
    cases = selectors.cases_for_user(user)
    follows = request.GET.get("follows", "")
    earlier = cases.filter(pk=follows).first() if follows.isdigit() else None
    if earlier is not None:  # a new image of the lesion of a case sent back or due
        initial.update(
            follows=earlier.pk,
            clinic=earlier.clinic_id,
            patient=earlier.lesion.patient_id,
            lesion=earlier.lesion_id,
        )
    return NewCaseForm(
        data,
        files,
        initial=initial,
        clinics=selectors.clinics_for_user(user),
        patients=selectors.patients_for_user(user).order_by("identifier"),
        lesions=selectors.lesions_for_user(user).order_by("patient__identifier", "label"),
        cases=cases,
    )


@login_required
@require_http_methods(["GET", "POST"])
def case_new(request):
    if not selectors.clinics_for_user(request.user).exists():
        raise PermissionDenied("You are not a member of any clinic.")
    if request.method == "GET":
        return render(request, "diagnosis/case_new.html", _case_new_page(_new_case_form(request)))
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
                follows=data.get("follows"),
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
    return render(request, "diagnosis/case_new.html", _case_new_page(form), status=400)


def _case_new_page(form) -> dict:
    """The page's context: the form, and the earlier case the new image answers, if any."""
    wanted = str(form.data.get("follows") or form.initial.get("follows") or "")
    queryset = form.fields["follows"].queryset
    return {
        "form": form,
        "follows": queryset.filter(pk=wanted).first() if wanted.isdigit() else None,
    }


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
    # A withdrawn case's image: its clinic admins (its case page shows it to them).
    cases = selectors.cases_for_user(request.user, include_withdrawn=True)
    return serve_case_image(request, get_object_or_404(cases, pk=pk))


@login_required
@require_GET
def case_thumbnail(request, pk: int, size: int):
    # The scoping queryset alone (no prediction prefetch): a list page asks for many of these.
    # A withdrawn case's: its clinic admins (the withdrawn-cases list shows them).
    cases = selectors.cases_for_user(request.user, include_withdrawn=True)
    case = get_object_or_404(cases.select_related(None).select_related("clinic"), pk=pk)
    return serve_case_thumbnail(request, case, size=size)


@login_required
@require_POST
def case_retry(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    if case.status == CaseStatus.FAILED:
        services.case_retry(case=case)
        messages.info(request, "The case was queued again.")
    return redirect(case)


# --- correcting records (diagnosis.corrections does the writes) ---------------------------------


def _refused(form, exc: ValidationError) -> None:
    """A correction the service refused: its messages on the form, which keeps what was typed."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _page(request, template: str, context: dict, *, status: int | None = None):
    form = context.get("form")
    if status is None:
        status = 400 if form is not None and form.errors else 200
    return render(request, template, context, status=status)


def _posted(request):
    return request.POST if request.method == "POST" else None


def _split_reason(form) -> tuple[str, dict]:
    data = dict(form.cleaned_data)
    return data.pop("reason"), data


@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request, pk: int):
    patient = get_object_or_404(selectors.patients_for_user(request.user), pk=pk)
    form = PatientEditForm(_posted(request), initial=PatientEditForm.initial_for(patient))
    if form.is_valid():
        reason, fields = _split_reason(form)
        try:
            corrections.patient_update(user=request.user, patient=patient, reason=reason, **fields)
        except ValidationError as exc:
            _refused(form, exc)
        else:
            messages.success(request, "The patient's record was corrected.")
            return redirect(patient)
    return _page(request, "diagnosis/patient_edit.html", {"patient": patient, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def lesion_edit(request, pk: int):
    lesion = get_object_or_404(selectors.lesions_for_user(request.user), pk=pk)
    initial = {"label": lesion.label, "anatomic_site": lesion.anatomic_site}
    form = LesionEditForm(_posted(request), initial=initial)
    if form.is_valid():
        reason, fields = _split_reason(form)
        try:
            corrections.lesion_update(user=request.user, lesion=lesion, reason=reason, **fields)
        except ValidationError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"The lesion “{form.cleaned_data['label']}” was corrected.")
            return redirect(lesion.patient)
    return _page(request, "diagnosis/lesion_edit.html", {"lesion": lesion, "form": form})


def _move_targets(user, case: Case):
    """The lesions of the case's clinic it may move to: its patient's first."""
    elsewhere = ExpressionWrapper(~Q(patient_id=case.lesion.patient_id), BooleanField())
    return (
        selectors.lesions_for_user(user)
        .filter(clinic=case.clinic_id)
        .exclude(pk=case.lesion_id)
        .alias(elsewhere=elsewhere)
        .order_by("elsewhere", "patient__identifier", "label")
    )


@login_required
@require_http_methods(["GET", "POST"])
def case_move(request, pk: int):
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    form = CaseMoveForm(_posted(request), lesions=_move_targets(request.user, case))
    if form.is_valid():
        reason, fields = _split_reason(form)
        try:
            corrections.case_move(user=request.user, case=case, reason=reason, **fields)
        except ValidationError as exc:
            _refused(form, exc)
        else:
            lesion = fields["lesion"]
            messages.success(
                request,
                f"Case {case.pk} is now filed under “{lesion.label}” of patient "
                f"{lesion.patient.identifier}.",
            )
            return redirect(case)
    return _page(request, "diagnosis/case_move.html", {"case": case, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def case_withdraw(request, pk: int):
    """A confirm page that says what withdrawing does; its POST withdraws the case."""
    case = get_object_or_404(selectors.cases_for_user(request.user), pk=pk)
    reviewed = corrections.case_has_review(case)
    is_admin = selectors.user_is_clinic_admin(user=request.user, clinic=case.clinic)
    form = ReasonForm(_posted(request))
    context = {
        "case": case,
        "form": form,
        "reviewed": reviewed,
        "allowed": is_admin or not reviewed,
    }
    if not context["allowed"]:
        return _page(request, "diagnosis/case_withdraw.html", context, status=403)
    if form.is_valid():
        try:
            corrections.case_withdraw(user=request.user, case=case, **form.cleaned_data)
        except ValidationError as exc:
            _refused(form, exc)
        except PermissionDenied:  # reviewed meanwhile
            context["allowed"] = False
            return _page(request, "diagnosis/case_withdraw.html", context, status=403)
        else:
            where = " from the clinic's withdrawn cases" if is_admin else ""
            messages.success(
                request,
                f"Case {case.pk} was withdrawn. A clinic admin can restore it{where}.",
            )
            return redirect(case.lesion.patient)
    return _page(request, "diagnosis/case_withdraw.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def case_restore(request, pk: int):
    """Restore a withdrawn case (clinic admins: only they see withdrawn cases)."""
    case = get_object_or_404(selectors.withdrawn_cases(user=request.user), pk=pk)
    form = ReasonForm(_posted(request))
    if form.is_valid():
        try:
            corrections.case_restore(user=request.user, case=case, **form.cleaned_data)
        except ValidationError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"Case {case.pk} was restored: it is back in every list.")
            if request.POST.get("back") == "withdrawn":
                return redirect("diagnosis:withdrawn-cases", pk=case.clinic_id)
            return redirect(case)
    return _page(request, "diagnosis/case_restore.html", {"case": case, "form": form})


@login_required
@require_GET
def withdrawn_cases(request, pk: int):
    """A clinic's withdrawn cases, for its clinic admins, each with its restore form."""
    clinic = get_object_or_404(selectors.clinics_for_user(request.user), pk=pk)
    if not selectors.user_is_clinic_admin(user=request.user, clinic=clinic):
        raise PermissionDenied("Only clinic admins see the withdrawn cases.")
    cases = selectors.withdrawn_cases(user=request.user, clinic=clinic)
    page = Paginator(cases, 25).get_page(request.GET.get("page"))
    context = {"clinic": clinic, "page": page, "form": ReasonForm()}
    return render(request, "diagnosis/withdrawn_cases.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def patient_merge(request, pk: int):
    """Merge another record of the same person into this one: choose it and say why, read what
    will happen, confirm."""
    patient = get_object_or_404(selectors.patients_for_user(request.user), pk=pk)
    candidates = (
        selectors.patients_for_user(request.user)
        .filter(clinic=patient.clinic_id)
        .exclude(pk=patient.pk)
        .order_by("identifier")
    )
    initial = {"duplicate": request.GET.get("duplicate")} if request.method == "GET" else None
    form = PatientMergeForm(_posted(request), patients=candidates, initial=initial)
    if form.is_valid():
        duplicate, reason = form.cleaned_data["duplicate"], form.cleaned_data["reason"]
        if not form.cleaned_data["confirm"]:
            plan = corrections.merge_plan(target=patient, duplicate=duplicate)
            if not plan.label_clashes:
                context = {
                    "patient": patient,
                    "duplicate": duplicate,
                    "plan": plan,
                    "filled": plan.labelled("filled"),
                    "kept": plan.labelled("kept"),
                    "form": form,
                }
                return render(request, "diagnosis/patient_merge_confirm.html", context)
            form.add_error("duplicate", corrections.label_clash_message(plan.label_clashes))
        else:
            try:
                corrections.patients_merge(
                    user=request.user, target=patient, duplicate=duplicate, reason=reason
                )
            except ValidationError as exc:
                _refused(form, exc)
            else:
                messages.success(
                    request,
                    f"Record {duplicate.identifier} was merged into {patient.identifier}: its "
                    "lesions and images are here now.",
                )
                return redirect(patient)
    context = {"patient": patient, "form": form, "back": reverse("ml:patient-detail", args=[pk])}
    return _page(request, "diagnosis/patient_merge.html", context)
