from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.html import format_html

from diagnosis.middleware import time_zone_named
from diagnosis.models import (
    ANATOMIC_SITE_CHOICES,
    FITZPATRICK_CHOICES,
    IMAGE_TYPE_CHOICES,
    Lesion,
    Patient,
    Sex,
)
from diagnosis.sites import site_label
from diagnosis.widgets import AnatomicSiteSelect


class PatientSearchForm(forms.Form):
    q = forms.CharField(required=False, label="Search by identifier")


class LesionSelect(forms.Select):
    """A lesion picker whose options say whose lesion each is (``data-patient``), so the page
    can offer only the chosen patient's lesions."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-patient"] = str(instance.patient_id)
        return option


NEW_PATIENT_HAS_NO_LESIONS = (
    "A new patient has no lesions yet: choose “— new lesion —”, or pick the patient this "
    "lesion belongs to."
)


class NewCaseForm(forms.Form):
    """Pick or create the patient and the lesion, and upload the image, on one page."""

    clinic = forms.ModelChoiceField(queryset=None, empty_label=None)
    patient = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="— new patient —", label="Patient"
    )
    new_patient_identifier = forms.CharField(
        required=False, max_length=64, label="New patient: record number"
    )
    new_patient_sex = forms.ChoiceField(
        choices=Sex.choices, initial=Sex.UNKNOWN, required=False, label="Sex"
    )
    new_patient_year_of_birth = forms.IntegerField(
        required=False, min_value=1900, label="Year of birth"
    )
    new_patient_fitzpatrick_type = forms.ChoiceField(
        choices=[("", "—")] + FITZPATRICK_CHOICES, required=False, label="Fitzpatrick type"
    )
    lesion = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="— new lesion —",
        label="Lesion",
        widget=LesionSelect,
    )
    new_lesion_label = forms.CharField(
        required=False,
        max_length=100,
        label="New lesion: label",
        help_text='e.g. "left shoulder, upper"',
    )
    new_lesion_anatomic_site = forms.ChoiceField(
        choices=[("", "—")] + ANATOMIC_SITE_CHOICES,
        required=False,
        label="Anatomic site",
        widget=AnatomicSiteSelect,
        help_text="Choose the region, then the site if you can be more precise.",
    )
    image = forms.FileField(
        label="Image (JPEG or PNG)",
        # No "capture": phones then offer the camera and the gallery or files alike.
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png"}),
    )
    image_type = forms.ChoiceField(choices=IMAGE_TYPE_CHOICES, initial="dermoscopic")
    captured_at = forms.DateTimeField(
        required=False,
        label="Taken at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    # The browser's time zone (static/js/timezone.js): "taken at" is read in it.
    tz = forms.CharField(widget=forms.HiddenInput, required=False)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    # One per page shown: a second submit of the same page (a double click, a reload) lands on
    # the case the first one made instead of making another.
    form_token = forms.UUIDField(widget=forms.HiddenInput, required=False)
    # "Add a new image of this lesion" from a send-back or a follow-up: the case it answers.
    follows = forms.ModelChoiceField(queryset=None, required=False, widget=forms.HiddenInput)

    def __init__(self, *args, clinics, patients, lesions, cases, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["clinic"].queryset = clinics
        self.fields["patient"].queryset = patients
        self.fields["lesion"].queryset = lesions
        self.fields["follows"].queryset = cases
        self.fields["lesion"].label_from_instance = _lesion_choice_label
        # The zone the form was sent from, else the page's (the cookie's, else the default).
        sent = time_zone_named(self.data.get("tz")) if self.is_bound else None
        self.time_zone = sent or timezone.get_current_timezone()
        self.fields["tz"].initial = str(self.time_zone)
        self.fields["captured_at"].help_text = format_html(
            "Times are in <span data-time-zone>{}</span>. Leave empty for now.", str(self.time_zone)
        )
        if clinics.count() == 1:
            self.fields["clinic"].widget = forms.HiddenInput()
            self.fields["clinic"].initial = clinics.first()

    def full_clean(self):
        # A date without a zone ("taken at") is read in the zone the form was sent from.
        with timezone.override(self.time_zone):
            super().full_clean()

    def clean_tz(self):
        return str(self.time_zone)

    def clean_captured_at(self):
        value = self.cleaned_data.get("captured_at")
        now = timezone.now()
        if value and value > now + timedelta(minutes=5):
            local_now = timezone.localtime(now, self.time_zone)
            raise forms.ValidationError(
                f"This time is in the future: it is {local_now:%Y-%m-%d %H:%M} now in "
                f"{self.time_zone}. Check the date and time, or leave the field empty."
            )
        return value

    def clean(self):
        data = super().clean()
        clinic = data.get("clinic")
        patient: Patient | None = data.get("patient")
        lesion: Lesion | None = data.get("lesion")
        if lesion is not None:
            if patient is None:
                self.add_error("lesion", NEW_PATIENT_HAS_NO_LESIONS)
            elif lesion.patient_id != patient.pk:
                self.add_error("lesion", "This lesion belongs to another patient.")
        if patient is not None and clinic is not None and patient.clinic_id != clinic.pk:
            self.add_error("patient", "This patient belongs to another clinic.")
        if patient is None and not (data.get("new_patient_identifier") or "").strip():
            self.add_error(
                "new_patient_identifier", "Pick a patient or give the new patient's record number."
            )
        if lesion is None and not (data.get("new_lesion_label") or "").strip():
            self.add_error("new_lesion_label", "Pick a lesion or give the new lesion a label.")
        return data


def _lesion_choice_label(lesion: Lesion) -> str:
    site = f" ({site_label(lesion.anatomic_site)})" if lesion.anatomic_site else ""
    return f"{lesion.patient.identifier} — {lesion.label}{site}"
