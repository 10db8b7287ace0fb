from django.core.management.base import BaseCommand

from ml.services import demo_model_ensure


class Command(BaseCommand):
    help = "Register and activate a DEMO model (random weights) when no model is registered."

    def handle(self, *args, **options):
        created = demo_model_ensure()
        if created is None:
            self.stdout.write("A model is already registered; no demo model added.")
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Registered {created.label}: random weights, predictions are meaningless."
                )
            )
