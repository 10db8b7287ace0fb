"""Demo clinics and users (idempotent). Refuses to run when DEBUG is off."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from diagnosis.models import Clinic, Membership, Role

DEMO_USERS = [
    # username, clinic, role
    ("demo", "Demo Clinic", Role.CLINICIAN),
    ("derm", "Demo Clinic", Role.DERMATOLOGIST),
    ("outsider", "Other Clinic", Role.CLINICIAN),
]


class Command(BaseCommand):
    help = "Create the demo clinics and users (demo, derm, outsider). Idempotent; DEBUG only."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo refuses to run with DEBUG off (demo passwords).")
        password = settings.DEMO_PASSWORD
        User = get_user_model()
        with transaction.atomic():
            for username, clinic_name, role in DEMO_USERS:
                clinic, _ = Clinic.objects.get_or_create(name=clinic_name)
                user, created = User.objects.get_or_create(username=username)
                if created or not user.check_password(password):
                    user.set_password(password)
                    user.save()
                Membership.objects.update_or_create(
                    user=user, clinic=clinic, defaults={"role": role}
                )
        self.stdout.write(
            "Demo users: " + ", ".join(f"{u} ({r.label}, {c})" for u, c, r in DEMO_USERS)
        )
