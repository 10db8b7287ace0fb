"""Reading labelled dermoscopy data sets into the model's class list. No Django here.

Four layouts, each as ISIC or HAM10000 ship them (see ``read_samples``):

- ``ham10000``: a metadata CSV with ``image_id``, ``dx``, ``lesion_id`` (and optionally
  ``dx_isic2019``); images in ``images/``, next to the CSV, or in any folder beside it.
- ``isic2019``: the ISIC 2019 ground-truth CSV (``image`` + one-hot MEL, NV, BCC, AK, BKL, DF,
  VASC, SCC, UNK), with the optional metadata CSV (``image``, ``lesion_id``); the ISIC 2020
  ground truth (``image_name``, ``patient_id``, ``lesion_id``, ``diagnosis``) is read too.
- ``isic-archive``: an ISIC Archive metadata CSV (``isic_id``, ``diagnosis_1`` … ``diagnosis_5``
  or the older ``diagnosis``, ``lesion_id``, ``patient_id``), as ``isic-cli`` downloads it.
- ``folder``: one folder per class, named by class code (``MEL``), HAM10000 code (``akiec``)
  or ISIC diagnosis (``Seborrheic keratosis``).

Every label is first turned into a diagnosis of the ISIC hierarchy (``isic_metadata``), then
into the class of the model's class list that contains it (the class whose ISIC diagnosis is the
longest prefix of it). So a class list other than the ISIC 2019 eight works for every layout,
and every class's benign / indeterminate / malignant category is the hierarchy's.

HAM10000's seven ``dx`` codes map into the ISIC 2019 eight as mel→MEL, nv→NV, bcc→BCC,
bkl→BKL, df→DF, vasc→VASC and akiec→AK. HAM10000's ``akiec`` mixes actinic keratoses with
intraepithelial carcinoma (Bowen's disease); ISIC 2019 split it into AK and SCC, and when a
``dx_isic2019`` column carries that split it is used instead of ``dx``. Without it, akiec is AK:
category indeterminate, so not malignant for the binary target.

The malignant (binary) target of a sample is 1 exactly when its class's category is malignant
(MEL, BCC, SCC of the ISIC 2019 eight); benign and indeterminate (AK) are 0.

Rows whose label maps to no class, and rows whose image file is missing, are skipped and listed
in ``SampleSet.skipped``; ``check_images`` also decodes every file and drops the unreadable ones.
A sample whose image fails to decode later still never stops a run: the Dataset returns ``None``
for it and ``collate_skipping_failures`` drops it from the batch.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from isic_metadata.diagnosis_hierarchical import DiagnosisEnum
from PIL import Image, ImageOps
from torch.utils.data import Dataset, default_collate

from ml.engine.model.taxonomy import ISIC2019_CLASSES, DiagnosisClass

logger = logging.getLogger(__name__)

FORMATS = ("ham10000", "isic2019", "isic-archive", "folder")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_BY_CODE = {c.code: c.isic_diagnosis for c in ISIC2019_CLASSES}

# Dataset label codes -> ISIC hierarchical diagnosis. HAM10000 ``dx`` (lower case) and the ISIC
# 2019 challenge's codes; ``akiec`` is AK (see the module docstring).
CODE_DIAGNOSES: dict[str, str] = {
    "mel": _BY_CODE["MEL"],
    "nv": _BY_CODE["NV"],
    "bcc": _BY_CODE["BCC"],
    "akiec": _BY_CODE["AK"],
    "ak": _BY_CODE["AK"],
    "bkl": _BY_CODE["BKL"],
    "df": _BY_CODE["DF"],
    "vasc": _BY_CODE["VASC"],
    "scc": _BY_CODE["SCC"],
}

# What the ISIC 2019 challenge put in some of its classes, beyond the class's own ISIC diagnosis:
# SCC is every malignant epidermal proliferation (in situ, invasive, keratoacanthoma), AK every
# indeterminate epidermal one (actinic keratosis and cheilitis), NV every benign melanocytic
# proliferation, VASC includes haemorrhage (as in HAM10000's "vasc").
ISIC2019_EXTRA_PREFIXES: dict[str, tuple[str, ...]] = {
    "SCC": ("Malignant:Malignant epidermal proliferations",),
    "AK": ("Indeterminate:Indeterminate epidermal proliferations",),
    "NV": ("Benign:Benign melanocytic proliferations",),
    "VASC": ("Benign:Hemorrhagic lesions",),
}

# The ISIC Archive's diagnosis names from before the hierarchy (column ``diagnosis``, ISIC 2020).
LEGACY_DIAGNOSES: dict[str, str] = {
    "melanoma": _BY_CODE["MEL"],
    "nevus": _BY_CODE["NV"],
    "basal cell carcinoma": _BY_CODE["BCC"],
    "actinic keratosis": _BY_CODE["AK"],
    "squamous cell carcinoma": _BY_CODE["SCC"],
    "dermatofibroma": _BY_CODE["DF"],
    "vascular lesion": _BY_CODE["VASC"],
    "angioma": "Benign:Benign soft tissue proliferations - Vascular:Hemangioma",
    "seborrheic keratosis": "Benign:Benign epidermal proliferations:Seborrheic keratosis",
    "lichenoid keratosis": "Benign:Benign epidermal proliferations:Lichen planus like keratosis",
    "solar lentigo": "Benign:Benign epidermal proliferations:Solar lentigo",
    "pigmented benign keratosis": (
        "Benign:Benign epidermal proliferations:Pigmented benign keratosis"
    ),
    "cafe-au-lait macule": (
        "Benign:Flat melanotic pigmentations - not melanocytic nevus:Cafe au lait macule or patch"
    ),
    "atypical melanocytic proliferation": (
        "Indeterminate:Indeterminate melanocytic proliferations:Atypical melanocytic neoplasm"
    ),
}


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

    def summary(self) -> dict:
        """JSON-able description, for a model's metadata and a TrainingRun's log."""
        return {
            "format": self.format,
            "root": str(self.root),
            "images": len(self.samples),
            "class_counts": self.class_counts(),
            "skipped": len(self.skipped),
            "skipped_examples": [f"{p.item}: {p.reason}" for p in self.skipped[:20]],
        }


class LabelMapper:
    """Maps ISIC diagnoses (hierarchical, terminal, legacy) and class codes to class indices."""

    def __init__(self, classes: Sequence[DiagnosisClass]):
        self.classes = list(classes)
        self._codes = {c.code.lower(): i for i, c in enumerate(self.classes)}
        self._prefixes: list[tuple[str, int]] = []
        for index, cls in enumerate(self.classes):
            if cls.isic_diagnosis:
                self._prefixes.append((cls.isic_diagnosis, index))
            if _BY_CODE.get(cls.code) == cls.isic_diagnosis:
                for prefix in ISIC2019_EXTRA_PREFIXES.get(cls.code, ()):
                    self._prefixes.append((prefix, index))
        # Longest first, so the most specific class that contains a diagnosis wins.
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._terminals = {
            member.value.split(":")[-1].lower(): member.value for member in DiagnosisEnum
        }

    def diagnosis(self, term: str) -> str | None:
        """The ISIC hierarchical value for a full value, a level name or a legacy/dataset code."""
        term = term.strip()
        if not term:
            return None
        lowered = term.lower()
        if lowered in CODE_DIAGNOSES:
            return CODE_DIAGNOSES[lowered]
        if lowered in LEGACY_DIAGNOSES:
            return LEGACY_DIAGNOSES[lowered]
        value = DiagnosisEnum.accept_terminal_values(term)
        try:
            return DiagnosisEnum(value).value
        except ValueError:
            pass
        return self._terminals.get(lowered.split(":")[-1])

    def index_for_diagnosis(self, diagnosis: str) -> int | None:
        for prefix, index in self._prefixes:
            if diagnosis == prefix or diagnosis.startswith(prefix + ":"):
                return index
        return None

    def index(self, label: str) -> int | None:
        """Class index for a class code (case-insensitive) or anything ``diagnosis`` accepts."""
        code_index = self._codes.get(label.strip().lower())
        if code_index is not None:
            return code_index
        diagnosis = self.diagnosis(label)
        return None if diagnosis is None else self.index_for_diagnosis(diagnosis)


# --- readers --------------------------------------------------------------------------------


def read_samples(
    root: str | Path,
    format: str,
    *,
    classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES,
    csv_path: str | Path | None = None,
    metadata_path: str | Path | None = None,
) -> SampleSet:
    """Read a data set in one of ``FORMATS``. ``root`` is its folder (or its CSV file)."""
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
    kwargs: dict = {"classes": classes, "csv_path": csv_path}
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
    root, csv_file = _locate_csv(root, csv_path, required=("image_id", "dx"))
    mapper = LabelMapper(classes)
    images = ImageIndex(csv_file.parent, root)
    samples, skipped = [], []
    for row in _read_csv(csv_file):
        image_id = row["image_id"].strip()
        label = (row.get("dx_isic2019") or "").strip() or row["dx"].strip()
        _add(samples, skipped, mapper, images, image_id, label, row.get("lesion_id"), None)
    return _finish(samples, skipped, classes, "ham10000", root)


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
    root, csv_file = _locate_csv(
        root, csv_path, required=("image",), any_of=("MEL", "diagnosis"), alternative="image_name"
    )
    rows = _read_csv(csv_file)
    header = list(rows[0]) if rows else []
    id_column = "image" if "image" in header else "image_name"
    one_hot = [c for c in header if c.upper() in {*_BY_CODE, "UNK"}]
    lesions: dict[str, dict] = {}
    if metadata_path is None and "lesion_id" not in header:
        metadata_path = _find_csv(csv_file.parent, required=("image", "lesion_id"))
    if metadata_path is not None:
        lesions = {r["image"].strip(): r for r in _read_csv(Path(metadata_path))}
    mapper = LabelMapper(classes)
    images = ImageIndex(csv_file.parent, root)
    samples, skipped = [], []
    for row in rows:
        image_id = row[id_column].strip()
        if one_hot:
            hot = [c for c in one_hot if _is_one(row[c])]
            if len(hot) != 1:
                skipped.append(Problem(image_id, f"not exactly one class marked ({hot})"))
                continue
            label = hot[0]
        else:
            label = row.get("diagnosis", "").strip()
        extra = lesions.get(image_id, {})
        lesion = row.get("lesion_id") or extra.get("lesion_id")
        patient = row.get("patient_id") or extra.get("patient_id")
        _add(samples, skipped, mapper, images, image_id, label, lesion, patient)
    return _finish(samples, skipped, classes, "isic2019", root)


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
    root, csv_file = _locate_csv(root, csv_path, required=("isic_id",))
    mapper = LabelMapper(classes)
    images = ImageIndex(csv_file.parent, root)
    samples, skipped = [], []
    for row in _read_csv(csv_file):
        image_id = row["isic_id"].strip()
        levels = [(row.get(f"diagnosis_{n}") or "").strip() for n in range(1, 6)]
        levels = [level for level in levels if level]
        label = ":".join(levels) if levels else (row.get("diagnosis") or "").strip()
        _add(
            samples,
            skipped,
            mapper,
            images,
            image_id,
            label,
            row.get("lesion_id"),
            row.get("patient_id"),
        )
    return _finish(samples, skipped, classes, "isic-archive", root)


def read_folder(
    root: str | Path, *, classes: Sequence[DiagnosisClass] = ISIC2019_CLASSES
) -> SampleSet:
    """One folder per class; each image is its own lesion (the layout has no lesion ids)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    mapper = LabelMapper(classes)
    samples, skipped = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        index = mapper.index(folder.name)
        if index is None:
            skipped.append(Problem(folder.name, f"folder maps to no class ({len(files)} images)"))
            continue
        for path in files:
            samples.append(Sample(path, index, f"image:{path.stem}", None, folder.name))
    return _finish(samples, skipped, classes, "folder", root)


def _add(samples, skipped, mapper, images, image_id, label, lesion_id, patient_id) -> None:
    index = mapper.index(label) if label else None
    if index is None:
        skipped.append(Problem(image_id, f"label {label!r} maps to no class of the model"))
        return
    path = images.find(image_id)
    if path is None:
        skipped.append(Problem(image_id, "image file not found"))
        return
    lesion = (lesion_id or "").strip() or f"image:{image_id}"
    patient = (patient_id or "").strip() or None
    samples.append(Sample(path, index, lesion, patient, label))


def _finish(samples, skipped, classes, format, root) -> SampleSet:
    result = SampleSet(list(samples), list(classes), format, Path(root), list(skipped))
    if skipped:
        logger.warning(
            "%s: skipped %d of %d rows (e.g. %s)",
            root,
            len(skipped),
            len(samples) + len(skipped),
            "; ".join(f"{p.item}: {p.reason}" for p in skipped[:3]),
        )
    return result


def _is_one(value: str) -> bool:
    try:
        return float(value) >= 0.5
    except (TypeError, ValueError):
        return False


def _read_csv(path: Path) -> list[dict]:
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


def _locate_csv(root, csv_path, *, required, any_of=(), alternative="") -> tuple[Path, Path]:
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

    def __init__(self, *roots: Path):
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


# --- checking and subsetting ----------------------------------------------------------------


def _check_one(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()
        # verify() leaves the file unusable and misses truncated pixel data; decode it too.
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes PIL raise many kinds
        return f"{type(exc).__name__}: {exc}"
    return None


def check_images(
    samples: Sequence[Sample], *, workers: int = 4
) -> tuple[list[Sample], list[Problem]]:
    """Open and fully decode every image. Returns (readable samples, problems), order kept."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        errors = list(pool.map(_check_one, [s.path for s in samples]))
    ok = [s for s, error in zip(samples, errors, strict=True) if error is None]
    problems = [
        Problem(str(s.path), error)
        for s, error in zip(samples, errors, strict=True)
        if error is not None
    ]
    if problems:
        logger.warning(
            "%d of %d images are unreadable and skipped (e.g. %s)",
            len(problems),
            len(samples),
            "; ".join(f"{p.item}: {p.reason}" for p in problems[:3]),
        )
    return ok, problems


def limit_per_class(
    samples: Sequence[Sample], max_per_class: int, *, seed: int = 0
) -> list[Sample]:
    """At most ``max_per_class`` samples of each class, chosen with ``seed``; order kept."""
    by_class: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_class.setdefault(sample.label, []).append(index)
    rng = random.Random(seed)
    keep: set[int] = set()
    for indices in by_class.values():
        keep.update(
            indices if len(indices) <= max_per_class else rng.sample(indices, max_per_class)
        )
    return [s for i, s in enumerate(samples) if i in keep]


# --- the torch Dataset ----------------------------------------------------------------------


def decode_rgb(path: str | Path, *, draft_size: int | None = None) -> Image.Image:
    """Decode an image file as RGB with its EXIF orientation applied (as uploads are).

    ``draft_size`` lets the JPEG decoder scale down by a power of two while keeping both sides
    at least that large: large archive images decode several times faster. Training only; the
    eval preset decodes at full size, as serving does.
    """
    with Image.open(path) as image:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")


class SkinLesionDataset(Dataset):
    """Samples -> (image: float[3, S, S], class index: int, malignant target: float 0/1).

    ``malignant`` is 1.0 when the class's category is malignant. An image that fails to decode
    yields ``None`` (logged, and remembered in ``failures`` in this process) instead of raising:
    use ``collate_skipping_failures`` so the batch goes on without it.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[DiagnosisClass],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        draft_size: int | None = None,
    ):
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform
        self.draft_size = draft_size
        self.malignant = [1.0 if c.category == "malignant" else 0.0 for c in self.classes]
        self.failures: list[Problem] = []

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            image = decode_rgb(sample.path, draft_size=self.draft_size)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a run
            problem = Problem(str(sample.path), f"{type(exc).__name__}: {exc}")
            self.failures.append(problem)
            logger.warning("skipping unreadable image %s (%s)", problem.item, problem.reason)
            return None
        return self.transform(image), sample.label, self.malignant[sample.label]


def collate_skipping_failures(batch: list):
    """``default_collate`` without the ``None`` items of unreadable images.

    Returns (images: float[B, 3, S, S], labels: int64[B], malignant: float32[B]), or ``None``
    when every image of the batch failed (the loops skip such a batch).
    """
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    images, labels, malignant = default_collate(batch)
    return images, labels, malignant.float()
