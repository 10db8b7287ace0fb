from django.core.management.base import BaseCommand

from ml.services import demo_model_ensure


class Command(BaseCommand):
    help = "When no model is active, activate the DEMO model (random weights), registering it."

    def handle(self, *args, **options):
        created = demo_model_ensure()
        if created is None:
            self.stdout.write("A model is active; the DEMO model is not needed.")
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Registered {created.label}: random weights, predictions are meaningless."
                )
            )
