"""Diagnosis classes and their place in the ISIC diagnosis hierarchy. No Django here.

A model's class list is data stored with the model (checkpoint and ModelVersion), each class
mapped to its top-level category (benign / indeterminate / malignant). The category is read off
the class's ISIC hierarchical diagnosis (``isic_metadata``), never hard-coded in views.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from isic_metadata.diagnosis_hierarchical import DiagnosisEnum

CATEGORIES = ("benign", "indeterminate", "malignant")


@dataclass(frozen=True)
class DiagnosisClass:
    code: str  # short, stable code used in APIs and CSVs, e.g. "MEL"
    name: str  # human-readable name
    category: str  # one of CATEGORIES
    isic_diagnosis: str = ""  # the ISIC hierarchical diagnosis, e.g. "Benign:...:Nevus"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def category_of(isic_diagnosis: str) -> str:
    """Top-level category (lower-case) of an ISIC hierarchical diagnosis or a terminal name."""
    value: str = DiagnosisEnum.accept_terminal_values(isic_diagnosis)
    try:
        DiagnosisEnum(value)
    except ValueError as exc:
        raise ValueError(f"{isic_diagnosis!r} is not a diagnosis of the ISIC hierarchy") from exc
    return value.split(":")[0].lower()


def resolve_isic(term: str) -> str:
    """The full hierarchical value for an ISIC diagnosis given in full or by its last level."""
    value: str = DiagnosisEnum.accept_terminal_values(term)
    try:
        DiagnosisEnum(value)
    except ValueError:
        raise ValueError(f"{term!r} is not a diagnosis of the ISIC hierarchy") from None
    return value


def class_for_isic(term: str, classes: list[DiagnosisClass]) -> DiagnosisClass | None:
    """The model class an ISIC diagnosis falls under: the class whose ISIC diagnosis is the
    term itself or its nearest ancestor in the hierarchy (e.g. "Solar lentigo" under "Benign
    epidermal proliferations" is BKL). None when no class covers the term."""
    levels = resolve_isic(term).split(":")
    by_isic = {c.isic_diagnosis: c for c in classes if c.isic_diagnosis}
    for depth in range(len(levels), 0, -1):
        found = by_isic.get(":".join(levels[:depth]))
        if found is not None:
            return found
    return None


def isic_name(term: str) -> str:
    """The readable name of an ISIC diagnosis: its last level."""
    return resolve_isic(term).split(":")[-1]


def find_isic(term: str) -> str:
    """``resolve_isic`` forgiving case and spacing ("melanoma in situ" finds "...:Melanoma in
    situ"); ValueError when no term of the hierarchy matches."""
    wanted = " ".join(term.split()).casefold()
    for value in isic_terms():
        if wanted in (value.casefold(), value.split(":")[-1].casefold()):
            return value
    raise ValueError(f"{term!r} is not a diagnosis of the ISIC hierarchy")


def isic_terms() -> list[str]:
    """Every diagnosis of the ISIC hierarchy (full values), in the hierarchy's order."""
    return [d.value for d in DiagnosisEnum]


def make_class(code: str, name: str, isic_term: str) -> DiagnosisClass:
    isic = resolve_isic(isic_term)
    return DiagnosisClass(code=code, name=name, category=category_of(isic), isic_diagnosis=isic)


def classes_from_dicts(items: list[dict[str, Any]]) -> list[DiagnosisClass]:
    """Validate a stored class list (checkpoint or ModelVersion.classes)."""
    classes = []
    for item in items:
        cls = DiagnosisClass(
            code=str(item["code"]),
            name=str(item.get("name") or item["code"]),
            category=str(item["category"]).lower(),
            isic_diagnosis=str(item.get("isic_diagnosis") or ""),
        )
        if cls.category not in CATEGORIES:
            raise ValueError(f"class {cls.code}: category must be one of {CATEGORIES}")
        classes.append(cls)
    codes = [c.code for c in classes]
    if len(set(codes)) != len(codes):
        raise ValueError("class codes must be unique")
    if not classes:
        raise ValueError("a model needs at least one class")
    return classes


# The ISIC 2019 challenge's eight diagnoses, placed in the ISIC hierarchy.
ISIC2019_CLASSES: list[DiagnosisClass] = [
    make_class("MEL", "Melanoma", "Malignant melanocytic proliferations (Melanoma)"),
    make_class("NV", "Melanocytic nevus", "Nevus"),
    make_class("BCC", "Basal cell carcinoma", "Basal cell carcinoma"),
    make_class("AK", "Actinic keratosis", "Solar or actinic keratosis"),
    make_class("BKL", "Benign keratosis", "Benign epidermal proliferations"),
    make_class("DF", "Dermatofibroma", "Dermatofibroma"),
    make_class("VASC", "Vascular lesion", "Benign soft tissue proliferations - Vascular"),
    make_class("SCC", "Squamous cell carcinoma", "Squamous cell carcinoma, NOS"),
]


def parse_class_spec(lines: list[str]) -> list[DiagnosisClass]:
    """Parse a class list file: one class per line, in the model's output order.

    Each line is ``CODE,ISIC diagnosis`` (full hierarchical value or its last level, e.g.
    ``SK,Seborrheic keratosis``) or ``CODE,Name,category`` with category one of CATEGORIES.
    Blank lines and lines starting with ``#`` are ignored.
    """
    classes = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, last = line.rpartition(",")
        if head and "," in head and last.strip().lower() in CATEGORIES:
            code, _, name = head.partition(",")
            classes.append(DiagnosisClass(code.strip(), name.strip(), last.strip().lower()))
            continue
        code, _, term = line.partition(",")
        if not code.strip() or not term.strip():
            raise ValueError(
                f"line {number}: expected 'CODE,ISIC diagnosis' or 'CODE,Name,category'"
            )
        try:
            classes.append(make_class(code.strip(), term.strip().split(":")[-1], term.strip()))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from exc
    return classes_from_dicts([c.as_dict() for c in classes])
