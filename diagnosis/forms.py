from django import forms
from django.utils import timezone

from diagnosis.models import (
    ANATOMIC_SITE_CHOICES,
    FITZPATRICK_CHOICES,
    IMAGE_TYPE_CHOICES,
    Lesion,
    Patient,
    Sex,
)


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
        choices=[("", "—")] + ANATOMIC_SITE_CHOICES, required=False, label="Anatomic site"
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
        help_text="Leave empty for now.",
    )
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    # One per page shown: a second submit of the same page (a double click, a reload) lands on
    # the case the first one made instead of making another.
    form_token = forms.UUIDField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, clinics, patients, lesions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["clinic"].queryset = clinics
        self.fields["patient"].queryset = patients
        self.fields["lesion"].queryset = lesions
        self.fields["lesion"].label_from_instance = lambda lesion: (
            f"{lesion.patient.identifier} — {lesion}"
        )
        if clinics.count() == 1:
            self.fields["clinic"].widget = forms.HiddenInput()
            self.fields["clinic"].initial = clinics.first()

    def clean_captured_at(self):
        value = self.cleaned_data.get("captured_at")
        if value and value > timezone.now() + timezone.timedelta(minutes=5):
            raise forms.ValidationError("The image cannot have been taken in the future.")
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
