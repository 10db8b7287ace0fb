"""Bulk submission: a ZIP of images with a CSV manifest, one case per row, errors per row.

Manifest columns (``manifest.csv`` inside the ZIP, or sent beside it): ``filename`` (a file in the
ZIP), ``patient`` (the clinic's record number: created when new), ``lesion`` (its label: created
when new), and optionally ``anatomic_site``, ``image_type``, ``captured_at`` (ISO 8601),
``notes``, ``sex``, ``year_of_birth``. Rows are independent: one refused image does not stop
the others. Nothing from the archive is written to disk under its own name.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils.dateparse import parse_datetime

from diagnosis import services
from diagnosis.models import Clinic, Lesion, Patient

MAX_ROWS = 500
MANIFEST = "manifest.csv"
REQUIRED = ("filename", "patient", "lesion")


@dataclass
class RowResult:
    row: int
    filename: str
    status: str  # created | duplicate | error
    case: int | None = None
    errors: list[str] = field(default_factory=list)


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{k}: {m}" for k, ms in exc.message_dict.items() for m in ms]
    return list(exc.messages)


def read_manifest(data: bytes) -> list[dict]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("The manifest must be UTF-8 CSV.")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(f"The manifest lacks the column(s): {', '.join(missing)}.")
    rows = list(reader)
    if not rows:
        raise ValidationError("The manifest has no rows.")
    if len(rows) > MAX_ROWS:
        raise ValidationError(f"At most {MAX_ROWS} rows per batch.")
    return rows


def open_archive(upload) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ValidationError("The archive is not a readable ZIP file.")
    if len(archive.infolist()) > MAX_ROWS + 1:
        raise ValidationError(f"At most {MAX_ROWS} files per archive.")
    return archive


def _member(archive: zipfile.ZipFile, name: str, max_bytes: int) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValidationError(f"{name!r} is not in the archive.")
    if info.is_dir():
        raise ValidationError(f"{name!r} is a folder.")
    if info.file_size > max_bytes:
        raise ValidationError(f"{name!r} is larger than the upload limit.")
    with archive.open(info) as handle:
        data = handle.read(max_bytes + 1)  # never trust the declared size alone
    if len(data) > max_bytes:
        raise ValidationError(f"{name!r} is larger than the upload limit.")
    return data


def submit_batch(*, user, clinic: Clinic, archive_upload, manifest_upload=None) -> list[RowResult]:
    """Submit every row; returns one result per row (created, duplicate or error)."""
    from django.conf import settings

    if not clinic.memberships.filter(user=user).exists():
        raise PermissionDenied("You are not a member of this clinic.")
    max_bytes = settings.UPLOAD_MAX_BYTES
    archive = open_archive(archive_upload)
    if manifest_upload is not None:
        manifest = manifest_upload.read(2 * 1024 * 1024)
    else:
        manifest = _member(archive, MANIFEST, 2 * 1024 * 1024)
    results = []
    for number, row in enumerate(read_manifest(manifest), start=2):  # row 1 is the header
        filename = (row.get("filename") or "").strip()
        result = RowResult(row=number, filename=filename[:200], status="error")
        try:
            _check_required(row)
            submission = _submit_row(user, clinic, row, _member(archive, filename, max_bytes))
        except ValidationError as exc:
            result.errors = _messages(exc)
        else:
            result.case = submission.case.pk
            result.status = "created" if submission.created else "duplicate"
        results.append(result)
    return results


def _text(row: dict, column: str) -> str:
    return (row.get(column) or "").strip()


def _year_of_birth(row: dict) -> int | None:
    value = _text(row, "year_of_birth")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationError({"year_of_birth": f"{value!r} is not a year."})


def _captured_at(row: dict):
    value = _text(row, "captured_at")
    if not value:
        return None
    try:
        captured_at = parse_datetime(value)
    except ValueError:  # well formed, but no such date (month 13, 31 February)
        captured_at = None
    if captured_at is None:
        raise ValidationError("captured_at is not an ISO 8601 date-time.")
    return captured_at


def _check_required(row: dict) -> None:
    for column in REQUIRED:
        if not _text(row, column):
            raise ValidationError(f"{column} is empty.")


def _submit_row(user, clinic: Clinic, row: dict, content: bytes):
    """One manifest row: its patient and lesion (found, or created), then the case."""
    captured_at, year_of_birth = _captured_at(row), _year_of_birth(row)
    with transaction.atomic():
        patient = Patient.objects.filter(
            clinic=clinic, identifier=_text(row, "patient")
        ).first() or services.patient_create(
            user=user,
            clinic=clinic,
            identifier=row["patient"],
            sex=_text(row, "sex") or "unknown",
            year_of_birth=year_of_birth,
        )
        lesion = Lesion.objects.filter(
            patient=patient, label=_text(row, "lesion")
        ).first() or services.lesion_create(
            user=user,
            patient=patient,
            label=row["lesion"],
            anatomic_site=_text(row, "anatomic_site"),
        )
        return services.case_submit(
            user=user,
            lesion=lesion,
            upload=SimpleUploadedFile("image", content),
            image_type=_text(row, "image_type"),
            notes=_text(row, "notes"),
            captured_at=captured_at,
        )
