"""Reviewed cases as an ISIC-style training set, so reviews feed the next ``manage.py train``.

Layout (what ``train --format isic2019`` reads)::

    ground_truth.csv   image, one column per class (1.0 for the final diagnosis), lesion_id,
                       patient_id
    metadata.csv       image, lesion_id, patient_id, sex, age_approx, anatom_site, fitzpatrick,
                       image_type, clinic, reviewed_at, diagnosis_isic (the reviewer's term)
    images/<image>.jpg (or .png), the stored (validated, metadata-free) images

The reference is the latest review that states a diagnosis (agree or override). Ids are
pseudonymous (``SKS_…``): no clinic record numbers leave the platform.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from diagnosis.models import not_withdrawn
from ml.models import ModelVersion, Review, Verdict


@dataclass(frozen=True)
class ExportRow:
    image: str
    filename: str
    final_diagnosis: str
    lesion_id: str
    patient_id: str
    metadata: dict
    case: object


def reviewed_rows(*, clinic_ids: Iterable[int] | None = None, since=None) -> list[ExportRow]:
    reviews = (
        Review.objects.filter(
            not_withdrawn("prediction__case"),
            verdict__in=[Verdict.AGREE, Verdict.OVERRIDE],
            prediction__shadow=False,
        )
        .select_related(
            "prediction__case__lesion__patient",
            "prediction__case__clinic",
            "prediction__model_version",
        )
        .order_by("prediction__case_id", "-created_at")
    )
    if clinic_ids is not None:
        reviews = reviews.filter(prediction__case__clinic_id__in=list(clinic_ids))
    if since is not None:
        reviews = reviews.filter(created_at__date__gte=since)
    rows, seen = [], set()
    for review in reviews:
        case = review.prediction.case
        if case.pk in seen:
            continue  # the latest review of a case is its reference
        seen.add(case.pk)
        patient = case.lesion.patient
        image = f"SKS_{case.pk:07d}"
        extension = "png" if case.image.name.endswith(".png") else "jpg"
        age = None
        if patient.year_of_birth:
            age = 5 * round((case.captured_at.year - patient.year_of_birth) / 5)
        rows.append(
            ExportRow(
                image=image,
                filename=f"{image}.{extension}",
                # a final diagnosis no model class covers: a column of its own (its ISIC name)
                final_diagnosis=review.final_diagnosis or review.final_diagnosis_name,
                lesion_id=f"SKS_L{case.lesion_id}",
                patient_id=f"SKS_P{patient.pk}",
                metadata={
                    "sex": patient.sex,
                    "age_approx": age if age is not None else "",
                    "anatom_site": case.lesion.anatomic_site,
                    "fitzpatrick": patient.fitzpatrick_type,
                    "image_type": case.image_type,
                    "clinic": case.clinic.name,
                    "reviewed_at": review.created_at.isoformat(),
                    "diagnosis_isic": review.final_isic_diagnosis,
                },
                case=case,
            )
        )
    return rows


def class_columns(rows: list[ExportRow]) -> list[str]:
    """The active model's classes first, then any other final diagnosis found."""
    active = ModelVersion.objects.filter(is_active=True).first()
    codes = [c["code"] for c in active.classes] if active else []
    for row in rows:
        if row.final_diagnosis not in codes:
            codes.append(row.final_diagnosis)
    return codes


def _csvs(rows: list[ExportRow]) -> tuple[str, str]:
    codes = class_columns(rows)
    truth, meta = io.StringIO(), io.StringIO()
    truth_writer = csv.writer(truth)
    truth_writer.writerow(["image", *codes, "lesion_id", "patient_id"])
    meta_fields = [
        "image",
        "lesion_id",
        "patient_id",
        "sex",
        "age_approx",
        "anatom_site",
        "fitzpatrick",
        "image_type",
        "clinic",
        "reviewed_at",
        "diagnosis_isic",
    ]
    meta_writer = csv.DictWriter(meta, fieldnames=meta_fields)
    meta_writer.writeheader()
    for row in rows:
        one_hot = ["1.0" if code == row.final_diagnosis else "0.0" for code in codes]
        truth_writer.writerow([row.image, *one_hot, row.lesion_id, row.patient_id])
        meta_writer.writerow(
            {
                "image": row.image,
                "lesion_id": row.lesion_id,
                "patient_id": row.patient_id,
                **row.metadata,
            }
        )
    return truth.getvalue(), meta.getvalue()


def write_folder(rows: list[ExportRow], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    truth, meta = _csvs(rows)
    (out / "ground_truth.csv").write_text(truth)
    (out / "metadata.csv").write_text(meta)
    for row in rows:
        with row.case.image.open("rb") as source:
            (out / "images" / row.filename).write_bytes(source.read())
    return out


def write_zip(rows: list[ExportRow]) -> bytes:
    buffer = io.BytesIO()
    truth, meta = _csvs(rows)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ground_truth.csv", truth)
        archive.writestr("metadata.csv", meta)
        for row in rows:
            with row.case.image.open("rb") as source:
                archive.writestr(f"images/{row.filename}", source.read())
    return buffer.getvalue()
