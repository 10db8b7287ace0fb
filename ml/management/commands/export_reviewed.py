"""Export reviewed cases as an ISIC-style training set (see ml/export.py for the layout)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date

from diagnosis.audit import audit_record
from diagnosis.models import AuditAction
from ml.reviewed_export import reviewed_rows, write_folder


class Command(BaseCommand):
    help = "Write reviewed cases (images + ground_truth.csv + metadata.csv) for `train`."

    def add_arguments(self, parser):
        parser.add_argument("out_dir")
        parser.add_argument("--clinic", type=int, action="append", help="Clinic id (repeatable)")
        parser.add_argument("--since", help="Only reviews made on or after this date (YYYY-MM-DD)")

    def handle(self, *args, out_dir, clinic, since, **options):
        since_date = parse_date(since) if since else None
        if since and since_date is None:
            raise CommandError("--since must be a date, YYYY-MM-DD")
        rows = reviewed_rows(clinic_ids=clinic, since=since_date)
        if not rows:
            raise CommandError("No reviewed cases to export.")
        path = write_folder(rows, out_dir)
        audit_record(
            action=AuditAction.EXPORT,
            target_type="training_set",
            detail={"rows": len(rows), "clinics": clinic or "all", "via": "export_reviewed"},
        )
        self.stdout.write(self.style.SUCCESS(f"Exported {len(rows)} reviewed cases to {path}"))
