from django import forms

from ml.models import Management, ModelVersion, SendBackReason, Verdict
from ml.selectors import QUEUE_STATES
from ml.services.review import MAX_FOLLOW_UP_MONTHS


class QueueFilterForm(forms.Form):
    state = forms.ChoiceField(choices=list(QUEUE_STATES.items()), required=False)
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.all(), required=False, empty_label="Any model"
    )
    diagnosis = forms.CharField(required=False, max_length=32, label="Diagnosis code")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


def diagnosis_options(prediction) -> list[dict[str, str]]:
    """The final diagnoses a reviewer can pick: every term of the ISIC hierarchy, each with
    its path and the model's class it falls under; the model's own classes first."""
    from ml.engine.model.taxonomy import class_for_isic, classes_from_dicts, isic_terms

    classes = classes_from_dicts(prediction.model_version.classes)
    terms = isic_terms()
    known = set(terms)
    own = [c.isic_diagnosis for c in classes if c.isic_diagnosis in known]
    options = []
    for value in own + [t for t in terms if t not in own]:
        mapped = class_for_isic(value, classes)
        levels = value.split(":")
        options.append(
            {
                "value": levels[-1],
                "path": " › ".join(levels[:-1]),
                "model_class": mapped.code if mapped else "",
            }
        )
    return options


class ReviewForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices, widget=forms.RadioSelect)
    final_diagnosis = forms.CharField(
        required=False,
        max_length=255,
        label="Final diagnosis",
        help_text="Any diagnosis of the ISIC hierarchy: type to search (e.g. “melanoma in situ”, "
        "“seborrheic keratosis”). Needed with “Different final diagnosis”.",
        widget=forms.TextInput(attrs={"list": "isic-diagnoses", "autocomplete": "off"}),
    )
    send_back_reason = forms.ChoiceField(
        choices=SendBackReason.choices,
        required=False,
        widget=forms.RadioSelect,
        label="Why is it sent back?",
    )
    management = forms.ChoiceField(
        choices=Management.choices,
        required=False,
        widget=forms.RadioSelect,
        label="Management",
        help_text="Needed when you agree or give the final diagnosis.",
    )
    follow_up_months = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_FOLLOW_UP_MONTHS,
        label="Follow-up in (months)",
        help_text="With “Monitor”.",
    )
    refer_to = forms.CharField(
        required=False, max_length=200, label="Refer to", help_text="With “Refer”: to whom."
    )
    notes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Seen by the clinician who filed the case.",
    )

    def __init__(self, *args, prediction, **kwargs):
        super().__init__(*args, **kwargs)
        if prediction.heads_disagree:  # nothing coherent to agree with
            self.fields["verdict"].choices = [
                (value, label) for value, label in Verdict.choices if value != Verdict.AGREE
            ]
            self.fields["verdict"].help_text = (
                "“Agree” is not offered: the model's two answers disagree. Give the final "
                "diagnosis with “Different final diagnosis”."
            )

    def clean(self):
        data = super().clean()
        if data.get("verdict") == Verdict.OVERRIDE and not data.get("final_diagnosis"):
            self.add_error(
                "final_diagnosis", "“Different final diagnosis” needs the final diagnosis."
            )
        return data
