"""The demo: clinics and users, and, when the ISIC sample is there and a model is active, demo
patients whose images over several visits are predicted and partly reviewed. Idempotent (a
second run makes nothing new); refuses to run when DEBUG is off.

It lives in ``ml`` (not ``diagnosis``) because it runs the model and files reviews: ``ml``
depends on ``diagnosis``, never the reverse. Cases are filed with the services the new-case page
uses; the prediction runs here, at once, as an eager task would.

The sample has one image per lesion, so the visits of a demo lesion are different real images of
the same diagnosis and site. Patients are record numbers only (DEMO-001, …).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from diagnosis import services as diagnosis_services
from diagnosis.models import Case, Clinic, Lesion, Membership, Patient, Role
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.models import Management, ModelVersion, Prediction, Verdict
from ml.services import PermanentPredictionError, active_model_version, predict_case, review_submit

DEMO_USERS = [
    # username, clinic, role
    ("demo", "Demo Clinic", Role.CLINICIAN),
    ("derm", "Demo Clinic", Role.DERMATOLOGIST),
    ("clinicadmin", "Demo Clinic", Role.CLINIC_ADMIN),
    ("outsider", "Other Clinic", Role.CLINICIAN),
]
AUDITOR = "auditor"
# Staff, no clinic: the model versions in the admin and their performance against reviews.
AUDITOR_PERMISSIONS = [("ml", "view_modelversion")]
DEMO_CLINIC = "Demo Clinic"


@dataclass(frozen=True)
class DemoLesion:
    patient: str
    label: str  # the sample's own "localization" of its images
    anatomic_site: str  # that localization in the ISIC vocabulary
    dx: str  # the sample's ground truth (dx_isic2019) of the images used
    months_ago: tuple[int, ...]  # one visit each, oldest first


DEMO_LESIONS = (
    DemoLesion("DEMO-001", "back", "Trunk:Posterior trunk", "nv", (14, 8, 2)),
    DemoLesion("DEMO-001", "lower extremity", "Lower extremity", "mel", (11, 5, 1)),
    DemoLesion("DEMO-002", "face", "Head and neck:Head:Face", "bkl", (9, 3)),
    DemoLesion("DEMO-003", "upper extremity", "Upper extremity", "bcc", (7, 1)),
)
# The dermatologist's decision on an earlier visit, by the sample's diagnosis.
MANAGEMENT = {
    "nv": {"management": Management.MONITOR, "follow_up_months": 6},
    "bkl": {"management": Management.MONITOR, "follow_up_months": 6},
    "mel": {"management": Management.BIOPSY},
    "bcc": {"management": Management.BIOPSY},
}
ISIC_DIAGNOSIS = {c.code.lower(): c.isic_diagnosis for c in ISIC2019_CLASSES}


def default_sample_dir() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "data" / "isic-sample"


def demo_images(sample_dir: Path) -> dict[DemoLesion, list[Path]]:
    """Each demo lesion's images (one per visit): the sample's first images of its diagnosis and
    localization, by image id."""
    with open(sample_dir / "labels.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["image_id"])
    chosen: dict[DemoLesion, list[Path]] = {}
    for lesion in DEMO_LESIONS:
        ids = [
            row["image_id"]
            for row in rows
            if row["dx_isic2019"] == lesion.dx and row["localization"] == lesion.label
        ][: len(lesion.months_ago)]
        if len(ids) < len(lesion.months_ago):
            raise CommandError(f"The sample has too few {lesion.dx} images of the {lesion.label}.")
        chosen[lesion] = [sample_dir / "images" / f"{image_id}.jpg" for image_id in ids]
    return chosen


class Command(BaseCommand):
    help = (
        "Create the demo clinics and users (demo, derm, clinicadmin, outsider, auditor) and, "
        "with the ISIC sample and an active model, demo patients. Idempotent; DEBUG only."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sample-dir",
            type=Path,
            default=None,
            help="The ISIC sample (default ../shared/data/isic-sample); absent: no patients.",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo refuses to run with DEBUG off (demo passwords).")
        self.made = dict.fromkeys(["users", "patients", "lesions", "cases", "reviews"], 0)
        self._users()
        self.stdout.write(
            "Demo users: "
            + ", ".join(f"{u} ({r.label}, {c})" for u, c, r in DEMO_USERS)
            + f", {AUDITOR} (staff auditor: model performance only)"
        )
        sample_dir = Path(options["sample_dir"] or default_sample_dir())
        model_version = active_model_version()
        if not (sample_dir / "labels.csv").is_file():
            self.stdout.write(f"No ISIC sample at {sample_dir}: no demo patients.")
        elif model_version is None:
            self.stdout.write(
                "No active model: no demo patients. Run `manage.py ensure_demo_model` (or "
                "register a model), then seed_demo again."
            )
        else:
            self._patients(demo_images(sample_dir), model_version)
            patients = sorted({lesion.patient for lesion in DEMO_LESIONS})
            self.stdout.write(
                f"Demo patients ({DEMO_CLINIC}): {', '.join(patients)}: {len(DEMO_LESIONS)} "
                f"lesions, 2 or 3 dated visits each, predicted by {model_version}; every visit "
                "but a lesion's latest reviewed by derm."
            )
        made = ", ".join(f"{count} {what}" for what, count in self.made.items() if count)
        self.stdout.write(f"Made: {made}." if made else "Nothing new: the demo was there already.")

    @transaction.atomic
    def _users(self) -> None:
        password = settings.DEMO_PASSWORD
        for username, clinic_name, role in DEMO_USERS:
            clinic, _ = Clinic.objects.get_or_create(name=clinic_name)
            user = self._user(username, password)
            Membership.objects.update_or_create(user=user, clinic=clinic, defaults={"role": role})
        auditor = self._user(AUDITOR, password)
        if not auditor.is_staff or auditor.is_superuser:
            auditor.is_staff, auditor.is_superuser = True, False
            auditor.save(update_fields=["is_staff", "is_superuser"])
        auditor.user_permissions.set(
            [
                Permission.objects.get(content_type__app_label=app, codename=codename)
                for app, codename in AUDITOR_PERMISSIONS
            ]
        )

    def _user(self, username: str, password: str):
        user, created = get_user_model().objects.get_or_create(username=username)
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        self.made["users"] += created
        return user

    def _patients(self, images: dict[DemoLesion, list[Path]], model_version: ModelVersion):
        users = get_user_model().objects
        clinician, dermatologist = users.get(username="demo"), users.get(username="derm")
        clinic = Clinic.objects.get(name=DEMO_CLINIC)
        now = timezone.now()
        for lesion, paths in images.items():
            for number, (path, months) in enumerate(zip(paths, lesion.months_ago, strict=True)):
                case = self._visit(
                    clinician, clinic, lesion, path, now - timedelta(days=30 * months)
                )
                prediction = self._prediction(case, model_version)
                # Every visit but the latest is reviewed: the latest waits in the review queue.
                if prediction is not None and number < len(paths) - 1:
                    self._review(dermatologist, prediction, lesion)

    def _visit(self, clinician, clinic, lesion: DemoLesion, path: Path, captured_at) -> Case:
        patient = Patient.objects.filter(clinic=clinic, identifier=lesion.patient).first()
        existing = patient and Lesion.objects.filter(patient=patient, label=lesion.label).first()
        submission = diagnosis_services.case_submit_with_records(
            user=clinician,
            clinic=clinic,
            upload=SimpleUploadedFile(path.name, path.read_bytes(), content_type="image/jpeg"),
            patient=patient or {"identifier": lesion.patient},
            lesion=existing or {"label": lesion.label, "anatomic_site": lesion.anatomic_site},
            image_type="dermoscopic",
            captured_at=captured_at,
        )
        self.made["patients"] += patient is None
        self.made["lesions"] += not existing
        self.made["cases"] += submission.created
        return submission.case

    def _prediction(self, case: Case, model_version: ModelVersion) -> Prediction | None:
        found = Prediction.objects.filter(case=case, model_version=model_version, shadow=False)
        if not found.exists():
            try:
                predict_case(case_id=case.pk, model_version=model_version)
            except PermanentPredictionError as exc:
                self.stderr.write(f"Case {case.pk} was not predicted: {exc}")
                return None
        return found.first()

    def _review(self, dermatologist, prediction: Prediction, lesion: DemoLesion) -> None:
        if prediction.reviews.exists():
            return
        agrees = prediction.top_diagnosis.lower() == lesion.dx and not prediction.heads_disagree
        review_submit(
            reviewer=dermatologist,
            prediction=prediction,
            verdict=Verdict.AGREE if agrees else Verdict.OVERRIDE,
            final_diagnosis="" if agrees else ISIC_DIAGNOSIS[lesion.dx],
            **MANAGEMENT[lesion.dx],
        )
        self.made["reviews"] += 1
