"""Reading labelled dermoscopy data sets into the model's class list. No Django, no torch.

Four layouts, as ISIC and HAM10000 ship them: ``ham10000``, ``isic2019`` (and the ISIC 2020
ground truth), ``isic-archive`` and ``folder`` (``read_samples`` says what each expects). Labels
become classes through ``labels.LabelMapper``; rows whose label maps to no class or whose image is
missing are skipped and listed in ``SampleSet.skipped``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.engine.data.labels import LabelMapper
from ml.engine.model.taxonomy import ISIC2019_CLASSES, DiagnosisClass

logger = logging.getLogger(__name__)

FORMATS = ("ham10000", "isic2019", "isic-archive", "folder")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

Row = dict[str, str]
_ONE_HOT_COLUMNS = {*(c.code for c in ISIC2019_CLASSES), "UNK"}  # ISIC 2019 ground truth


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``label`` indexes the class list the samples were read with."""

    path: Path
    label: int
    lesion_id: str  # the image's own id when the data set has no lesion ids
    patient_id: str | None
    source_label: str  # the label as the data set wrote it: "akiec", "MEL", a folder name


@dataclass(frozen=True)
class Problem:
    """A row or file that was skipped, and why."""

    item: str
    reason: str


@dataclass
class SampleSet:
    """What a reader found: usable samples, the class list they index, and what was skipped."""

    samples: list[Sample]
    classes: list[DiagnosisClass]
    format: str
    root: Path
    skipped: list[Problem] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.samples)
        return {c.code: counts.get(i, 0) for i, c in enumerate(self.classes)}

    def summary(self) -> dict[str, Any]:
        """JSON-able description, for a model's metadata and a TrainingRun's log."""
        return {
            "format": self.format,
            "root": str(self.root),
            "images": len(self.samples),
            "class_counts": self.class_counts(),
            "skipped": len(self.skipped),
            "skipped_examples": [f"{p.item}: {p.reason}" for p in self.skipped[:20]],
        }


class _Collector:
    """Samples and skipped rows of one reader, mapping labels and finding image files."""

    def __init__(self, classes: Sequence[DiagnosisClass], images: ImageIndex | None) -> None:
        self.classes = classes
        self.mapper = LabelMapper(classes)
        self.images = images
        self.samples: list[Sample] = []
        self.skipped: list[Problem] = []

    def add(self, image_id: str, label: str, lesion_id: str | None, patient_id: str | None) -> None:
        index = self.mapper.index(label) if label else None
        if index is None:
            self.skipped.append(Problem(image_id, f"label {label!r} maps to no class of the model"))
            return
        path = self.images.find(image_id) if self.images is not None else None
        if path is None:
            self.skipped.append(Problem(image_id, "image file not found"))
            return
        lesion = (lesion_id or "").strip() or f"image:{image_id}"
        patient = (patient_id or "").strip() or None
        self.samples.append(Sample(path, index, lesion, patient, label))

    def result(self, format: str, root: Path) -> SampleSet:
        samples, skipped = list(self.samples), list(self.skipped)
        result = SampleSet(samples, list(self.classes), format, Path(root), skipped)
        if skipped:
            logger.warning(
                "%s: skipped %d of %d rows (e.g. %s)",
                root,
                len(skipped),
                len(samples) + len(skipped),
                "; ".join(f"{p.item}: {p.reason}" for p in skipped[:3]),
            )
        return result


# --- readers --------------------------------------------------------------------------------


def read_samples(
    root: str | Path,
    format: str,
    *,
    classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES,
    csv_path: str | Path | None = None,
    metadata_path: str | Path | None = None,
) -> SampleSet:
    """Read a data set in one of ``FORMATS``. ``root`` is its folder (or its CSV file).

    - ``ham10000``: a metadata CSV with ``image_id``, ``dx``, ``lesion_id`` (optionally
      ``dx_isic2019``); images in ``images/``, next to the CSV, or in a folder beside it.
    - ``isic2019``: the ISIC 2019 ground-truth CSV (``image`` + one-hot classes), with the
      optional metadata CSV (``image``, ``lesion_id``); also the ISIC 2020 ground truth
      (``image_name``, ``patient_id``, ``lesion_id``, ``diagnosis``).
    - ``isic-archive``: an ISIC Archive metadata CSV (``isic_id``, ``diagnosis_1`` … ``_5`` or
      ``diagnosis``, ``lesion_id``, ``patient_id``), as ``isic-cli`` downloads it.
    - ``folder``: one folder per class, named by class code (``MEL``), HAM10000 code (``akiec``)
      or ISIC diagnosis (``Seborrheic keratosis``).
    """
    readers: dict[str, Callable[..., SampleSet]] = {
        "ham10000": read_ham10000,
        "isic2019": read_isic2019,
        "isic-archive": read_isic_archive,
        "folder": read_folder,
    }
    if format not in readers:
        raise ValueError(f"unknown data format {format!r}; choose from {', '.join(FORMATS)}")
    if format == "folder":
        return read_folder(root, classes=classes)
    kwargs: dict[str, Any] = {"classes": classes, "csv_path": csv_path}
    if format == "isic2019":
        kwargs["metadata_path"] = metadata_path
    return readers[format](root, **kwargs)


def read_ham10000(
    root: str | Path,
    *,
    classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES,
    csv_path: str | Path | None = None,
) -> SampleSet:
    """HAM10000 layout: ``image_id``, ``dx``, ``lesion_id`` (+ ``dx_isic2019`` when present)."""
    folder, csv_file = _locate_csv(root, csv_path, required=("image_id", "dx"))
    collector = _Collector(classes, ImageIndex(csv_file.parent, folder))
    for row in _read_csv(csv_file):
        image_id = row["image_id"].strip()
        label = (row.get("dx_isic2019") or "").strip() or row["dx"].strip()
        collector.add(image_id, label, row.get("lesion_id"), None)
    return collector.result("ham10000", folder)


def read_isic2019(
    root: str | Path,
    *,
    classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES,
    csv_path: str | Path | None = None,
    metadata_path: str | Path | None = None,
) -> SampleSet:
    """ISIC 2019 ground truth (``image`` + one-hot columns), or ISIC 2020's (``diagnosis``).

    Lesion (and patient) ids come from the ground truth when it has them, else from the
    metadata CSV (``ISIC_2019_Training_Metadata.csv``: ``image``, ``lesion_id``), found beside
    the ground truth when ``metadata_path`` is not given. A row marked UNK (or whose one-hot
    class is not in ``classes``) is skipped.
    """
    folder, csv_file = _locate_csv(
        root, csv_path, required=("image",), any_of=("MEL", "diagnosis"), alternative="image_name"
    )
    rows = _read_csv(csv_file)
    header = list(rows[0]) if rows else []
    id_column = "image" if "image" in header else "image_name"
    one_hot = [c for c in header if c.upper() in _ONE_HOT_COLUMNS]
    if metadata_path is None and "lesion_id" not in header:
        metadata_path = _find_csv(csv_file.parent, required=("image", "lesion_id"))
    lesions: dict[str, Row] = {}
    if metadata_path is not None:
        lesions = {r["image"].strip(): r for r in _read_csv(Path(metadata_path))}
    collector = _Collector(classes, ImageIndex(csv_file.parent, folder))
    for row in rows:
        image_id = row[id_column].strip()
        if one_hot:
            hot = [c for c in one_hot if _is_one(row[c])]
            if len(hot) != 1:
                collector.skipped.append(Problem(image_id, f"not exactly one class marked ({hot})"))
                continue
            label = hot[0]
        else:
            label = row.get("diagnosis", "").strip()
        extra = lesions.get(image_id, {})
        lesion = row.get("lesion_id") or extra.get("lesion_id")
        patient = row.get("patient_id") or extra.get("patient_id")
        collector.add(image_id, label, lesion, patient)
    return collector.result("isic2019", folder)


def read_isic_archive(
    root: str | Path,
    *,
    classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES,
    csv_path: str | Path | None = None,
) -> SampleSet:
    """ISIC Archive metadata (``isic image download``): ``isic_id``, ``diagnosis_1..5``.

    The hierarchy columns are joined into the ISIC hierarchical value; an older export's single
    ``diagnosis`` column is read as a level name or legacy name. An image whose diagnosis is too
    coarse for the class list (e.g. only ``Benign``) is skipped and listed.
    """
    folder, csv_file = _locate_csv(root, csv_path, required=("isic_id",))
    collector = _Collector(classes, ImageIndex(csv_file.parent, folder))
    for row in _read_csv(csv_file):
        image_id = row["isic_id"].strip()
        levels = [(row.get(f"diagnosis_{n}") or "").strip() for n in range(1, 6)]
        levels = [level for level in levels if level]
        label = ":".join(levels) if levels else (row.get("diagnosis") or "").strip()
        collector.add(image_id, label, row.get("lesion_id"), row.get("patient_id"))
    return collector.result("isic-archive", folder)


def read_folder(
    root: str | Path, *, classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES
) -> SampleSet:
    """One folder per class; each image is its own lesion (the layout has no lesion ids)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    collector = _Collector(classes, None)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        index = collector.mapper.index(folder.name)
        if index is None:
            problem = Problem(folder.name, f"folder maps to no class ({len(files)} images)")
            collector.skipped.append(problem)
            continue
        for path in files:
            collector.samples.append(Sample(path, index, f"image:{path.stem}", None, folder.name))
    return collector.result("folder", root)


# --- CSV files ------------------------------------------------------------------------------


def _is_one(value: str) -> bool:
    try:
        return float(value) >= 0.5
    except (TypeError, ValueError):
        return False


def _read_csv(path: Path) -> list[Row]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _find_csv(
    folder: Path, *, required: Iterable[str], any_of: Iterable[str] = (), alternative: str = ""
) -> Path | None:
    required, any_of = list(required), list(any_of)
    for path in sorted(folder.glob("*.csv")):
        header = set(_header(path))
        has_required = all(c in header for c in required) or (alternative and alternative in header)
        if has_required and (not any_of or any(c in header for c in any_of)):
            return path
    return None


def _locate_csv(
    root: str | Path,
    csv_path: str | Path | None,
    *,
    required: Sequence[str],
    any_of: Sequence[str] = (),
    alternative: str = "",
) -> tuple[Path, Path]:
    """(the data set's folder, its CSV file)."""
    root = Path(root)
    if csv_path is not None:
        return root, Path(csv_path)
    if root.is_file():
        return root.parent, root
    found = _find_csv(root, required=required, any_of=any_of, alternative=alternative)
    if found is None:
        raise FileNotFoundError(f"no CSV with columns {', '.join(required)} in {root}")
    return root, found


class ImageIndex:
    """Image files by name stem, in the given folders and the folders directly inside them.

    One directory listing instead of a stat per row: data sets ship images beside their CSV, in
    ``images/``, ``ISIC_2019_Training_Input/`` or HAM10000's ``HAM10000_images_part_1/`` and
    ``…_2/``. The first folder given wins when two hold the same name.
    """

    def __init__(self, *roots: Path) -> None:
        self._paths: dict[str, Path] = {}
        folders: list[Path] = []
        for root in dict.fromkeys(Path(r).resolve() for r in roots if Path(r).is_dir()):
            folders += [root] + sorted(p for p in root.iterdir() if p.is_dir())
        for directory in dict.fromkeys(folders):
            with os.scandir(directory) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    stem, ext = os.path.splitext(entry.name)
                    if ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
                        self._paths.setdefault(stem, Path(entry.path))

    def find(self, image_id: str) -> Path | None:
        return self._paths.get(image_id) or self._paths.get(Path(image_id).stem)
