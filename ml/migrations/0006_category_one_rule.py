"""Stored predictions follow the one category rule: "malignant" by the binary head over a
benign top diagnosis becomes "indeterminate" (the heads disagree) and uncertain."""

from django.db import migrations


def forwards(apps, schema_editor):
    Prediction = apps.get_model("ml", "Prediction")
    ModelVersion = apps.get_model("ml", "ModelVersion")
    for version in ModelVersion.objects.all():
        benign = [c["code"] for c in version.classes or [] if c.get("category") == "benign"]
        Prediction.objects.filter(
            model_version=version, category="malignant", top_diagnosis__in=benign
        ).update(category="indeterminate", uncertain=True)


class Migration(migrations.Migration):
    dependencies = [("ml", "0005_training_run")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
