"""Forms of the pages that correct records (``diagnosis.corrections`` does the writes). Each
asks for the reason that goes into the audit trail."""

from __future__ import annotations

from django import forms

from diagnosis.corrections import PATIENT_FIELDS, REASON_MAX_LENGTH
from diagnosis.models import ANATOMIC_SITE_CHOICES, FITZPATRICK_CHOICES, Lesion, Patient, Sex
from diagnosis.widgets import AnatomicSiteSelect


def reason_field(**kwargs) -> forms.CharField:
    return forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this is corrected. It is kept in the audit trail: no patient names.",
        **{"label": "Reason", **kwargs},
    )


def lesion_choice_label(lesion: Lesion) -> str:
    site = f" ({lesion.get_anatomic_site_display()})" if lesion.anatomic_site else ""
    return f"{lesion.patient.identifier} — {lesion.label}{site}"


class ReasonForm(forms.Form):
    """Withdrawing or restoring a case: the reason only."""

    reason = reason_field()


class PatientEditForm(forms.Form):
    identifier = forms.CharField(max_length=64, label="Record number")
    sex = forms.ChoiceField(choices=Sex.choices)
    year_of_birth = forms.IntegerField(required=False, min_value=1900, label="Year of birth")
    fitzpatrick_type = forms.ChoiceField(
        choices=[("", "—")] + FITZPATRICK_CHOICES, required=False, label="Fitzpatrick type"
    )
    reason = reason_field()

    @classmethod
    def initial_for(cls, patient: Patient) -> dict:
        return {name: getattr(patient, name) for name in PATIENT_FIELDS}


class LesionEditForm(forms.Form):
    label = forms.CharField(max_length=100, help_text='e.g. "left shoulder, upper"')
    anatomic_site = forms.ChoiceField(
        choices=[("", "—")] + ANATOMIC_SITE_CHOICES,
        required=False,
        label="Anatomic site",
        widget=AnatomicSiteSelect,
        help_text="The region, then the site if you can be more precise.",
    )
    reason = reason_field()


class CaseMoveForm(forms.Form):
    lesion = forms.ModelChoiceField(
        queryset=Lesion.objects.none(),
        label="File under",
        help_text="A lesion of this clinic: of this patient, or of the patient the image "
        "really belongs to.",
    )
    reason = reason_field()

    def __init__(self, *args, lesions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lesion"].queryset = lesions
        self.fields["lesion"].label_from_instance = lesion_choice_label


class PatientMergeForm(forms.Form):
    """Step one chooses the other record; step two (``confirm``) merges it."""

    duplicate = forms.ModelChoiceField(
        queryset=Patient.objects.none(),
        label="The other record of this person",
        help_text="It is merged into this one: its lesions and images move here.",
    )
    reason = reason_field()
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, patients, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["duplicate"].queryset = patients
        self.fields["duplicate"].label_from_instance = _patient_choice_label


def _patient_choice_label(patient: Patient) -> str:
    born = f", born {patient.year_of_birth}" if patient.year_of_birth else ""
    return f"{patient.identifier} ({patient.get_sex_display().lower()}{born})"
