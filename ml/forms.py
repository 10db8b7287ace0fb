from django import forms

from ml.models import ModelVersion, Verdict
from ml.selectors import QUEUE_STATES


class QueueFilterForm(forms.Form):
    state = forms.ChoiceField(choices=list(QUEUE_STATES.items()), required=False)
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.all(), required=False, empty_label="Any model"
    )
    diagnosis = forms.CharField(required=False, max_length=32, label="Diagnosis code")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class ReviewForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices, widget=forms.RadioSelect)
    final_diagnosis = forms.ChoiceField(required=False, label="Final diagnosis (for an override)")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, prediction, **kwargs):
        super().__init__(*args, **kwargs)
        if prediction.heads_disagree:  # nothing coherent to agree with
            self.fields["verdict"].choices = [
                (value, label) for value, label in Verdict.choices if value != Verdict.AGREE
            ]
            self.fields["verdict"].help_text = (
                "“Agree” is not offered: the model's two answers disagree. Give the final "
                "diagnosis with “Override”."
            )
        self.fields["final_diagnosis"].choices = [("", "—")] + [
            (c["code"], f"{c['name']} ({c['code']}, {c['category']})")
            for c in prediction.model_version.classes
        ]

    def clean(self):
        data = super().clean()
        if data.get("verdict") == Verdict.OVERRIDE and not data.get("final_diagnosis"):
            self.add_error("final_diagnosis", "An override needs the final diagnosis.")
        return data
