from django.core.management.base import BaseCommand, CommandError

from ml.services import ShippedModelError, default_model_ensure


class Command(BaseCommand):
    help = (
        "When no model is active, register and activate the model shipped in the repository "
        "(DEFAULT_MODEL_PATH, checked by SHA-256 against its manifest); without that file, the "
        "DEMO model (random weights)."
    )

    def handle(self, *args, **options):
        try:
            version, what = default_model_ensure()
        except ShippedModelError as exc:
            raise CommandError(str(exc)) from exc
        if what == "active":
            self.stdout.write("A model is active; nothing to do.")
        elif what == "shipped":
            self.stdout.write(
                self.style.SUCCESS(
                    f"Activated {version.label}: trained on HAM10000 only; research use, "
                    "CC BY-NC 4.0 (from the data); not a medical device."
                )
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"No shipped model file; activated {version.label}: random weights, "
                    "predictions are meaningless."
                )
            )
