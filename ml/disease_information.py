"""Disease information: general, clinician-facing text about the diagnoses SkinSense shows.

The text is data (``disease_information.json``), written by the team, one entry per node of the
ISIC diagnosis hierarchy. A diagnosis without an entry of its own is described by its nearest
ancestor that has one (the three top-level categories always do). Loaded once and validated: a
key that is not an ISIC term, or a malformed entry, is an error at load, not on a page.
No Django and no torch here; the pages and the API call ``describe``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ml.engine.model.taxonomy import CATEGORIES, ISIC2019_CLASSES, find_isic, isic_terms

DATA_FILE = Path(__file__).with_name("disease_information.json")
ENTRY_FIELDS = {"summary", "dermoscopic_features", "usual_next_step"}
HEADER_FIELDS = {"authorship", "disclaimer"}


class DiseaseInformationError(ValueError):
    """The data file is malformed."""


class UnknownDiagnosisError(ValueError):
    """A term that is neither a model class code nor a diagnosis of the ISIC hierarchy."""


@dataclass(frozen=True)
class Entry:
    term: str  # the full ISIC hierarchical value this text describes
    summary: str
    dermoscopic_features: tuple[str, ...]
    usual_next_step: str

    @property
    def name(self) -> str:
        return self.term.split(":")[-1]

    @property
    def category(self) -> str:
        return self.term.split(":")[0].lower()


@dataclass(frozen=True)
class Library:
    authorship: str
    disclaimer: str
    entries: dict[str, Entry]  # by ISIC term, in the hierarchy's order


@dataclass(frozen=True)
class Described:
    """What a term looked up resolved to, and the entry whose text describes it."""

    requested_term: str  # full ISIC term looked up ("" for a model class outside the hierarchy)
    requested_name: str  # the class's name for a class code, else the term's last level
    entry: Entry

    @property
    def is_ancestor(self) -> bool:
        """The text describes a broader group than the term asked for."""
        return self.entry.term != self.requested_term

    @property
    def disclaimer(self) -> str:
        return library().disclaimer


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DiseaseInformationError(f"{where}: must be non-empty text")
    return value.strip()


def _entry(term: str, raw: Any) -> Entry:
    if not isinstance(raw, dict) or set(raw) != ENTRY_FIELDS:
        raise DiseaseInformationError(f"{term!r}: an entry has exactly {sorted(ENTRY_FIELDS)}")
    features = raw["dermoscopic_features"]
    if not isinstance(features, list) or not features:
        raise DiseaseInformationError(f"{term!r}: dermoscopic_features must be a non-empty list")
    return Entry(
        term=term,
        summary=_text(raw["summary"], f"{term!r} summary"),
        dermoscopic_features=tuple(_text(f, f"{term!r} feature") for f in features),
        usual_next_step=_text(raw["usual_next_step"], f"{term!r} usual_next_step"),
    )


def parse(data: Any) -> Library:
    """Validate the data file's content: a header with authorship and disclaimer, and entries
    keyed by full ISIC terms (including the three top-level categories, the last fallback)."""
    if not isinstance(data, dict) or not isinstance(data.get("header"), dict):
        raise DiseaseInformationError("the data needs a header")
    header, raw_entries = data["header"], data.get("entries")
    missing = HEADER_FIELDS - set(header)
    if missing:
        raise DiseaseInformationError(f"the header needs {sorted(missing)}")
    if not isinstance(raw_entries, dict):
        raise DiseaseInformationError("entries must be an object keyed by ISIC term")
    known = isic_terms()
    unknown = sorted(set(raw_entries) - set(known))
    if unknown:
        raise DiseaseInformationError(f"not terms of the ISIC hierarchy: {unknown}")
    categories = {c.capitalize() for c in CATEGORIES}
    if not categories <= set(raw_entries):
        raise DiseaseInformationError(f"every category needs an entry: {sorted(categories)}")
    entries = {term: _entry(term, raw_entries[term]) for term in known if term in raw_entries}
    return Library(
        authorship=_text(header["authorship"], "header authorship"),
        disclaimer=_text(header["disclaimer"], "header disclaimer"),
        entries=entries,
    )


@lru_cache(maxsize=1)
def library() -> Library:
    """The team's disease information, loaded and validated once per process."""
    with DATA_FILE.open(encoding="utf-8") as handle:
        return parse(json.load(handle))


def entries() -> list[Entry]:
    """Every entry, in the order of the ISIC hierarchy."""
    return list(library().entries.values())


def _nearest_entry(term: str) -> Entry:
    levels = term.split(":")
    for depth in range(len(levels), 0, -1):
        found = library().entries.get(":".join(levels[:depth]))
        if found is not None:
            return found
    raise DiseaseInformationError(f"no entry covers {term!r}")  # parse() rules this out


def _class_for_code(code: str, classes: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    candidates = list(classes)
    for matches in (
        lambda c: c.get("code") == code,
        lambda c: str(c.get("code", "")).casefold() == code.casefold(),
    ):
        found = next((c for c in candidates if matches(c)), None)
        if found is not None:
            return found
    return None


@lru_cache(maxsize=1)
def _isic_term_set() -> frozenset[str]:
    return frozenset(isic_terms())


def _describe_class(model_class: Mapping[str, Any]) -> Described:
    """A stored class: by its ISIC diagnosis, else (none, or not a term of the hierarchy) by
    its category."""
    name = str(model_class.get("name") or model_class["code"])
    isic = str(model_class.get("isic_diagnosis") or "")
    if isic in _isic_term_set():
        return Described(requested_term=isic, requested_name=name, entry=_nearest_entry(isic))
    category = str(model_class.get("category", "")).lower()
    if category not in CATEGORIES:
        raise UnknownDiagnosisError(f"The model class {model_class['code']!r} has no category.")
    entry = _nearest_entry(category.capitalize())
    return Described(requested_term="", requested_name=name, entry=entry)


def describe(term: str, *, classes: Iterable[Mapping[str, Any]] | None = None) -> Described:
    """The entry for a model class code (``classes``: the model version's stored class list;
    the ISIC 2019 classes when not given, and always as a fallback), a full ISIC term, or an
    ISIC term's last level (case and spacing forgiven): the term's own entry or that of its
    nearest ancestor. A class outside the hierarchy is described by its category.
    UnknownDiagnosisError for anything else."""
    wanted = " ".join((term or "").split())
    if not wanted:
        raise UnknownDiagnosisError("No diagnosis given.")
    known = [*(classes or []), *(c.as_dict() for c in ISIC2019_CLASSES)]
    model_class = _class_for_code(wanted, known)
    if model_class is not None:
        return _describe_class(model_class)
    try:
        isic = find_isic(wanted)
    except ValueError:
        raise UnknownDiagnosisError(
            f"{wanted!r} is neither a model class code nor a diagnosis of the ISIC hierarchy."
        ) from None
    name = isic.split(":")[-1]
    return Described(requested_term=isic, requested_name=name, entry=_nearest_entry(isic))


def describe_or_none(
    term: str, *, classes: Iterable[Mapping[str, Any]] | None = None
) -> Described | None:
    """``describe`` for the pages: None for a blank or unknown term."""
    try:
        return describe(term, classes=classes)
    except UnknownDiagnosisError:
        return None


def for_case(prediction: Any, review: Any = None) -> list[tuple[str, Described]]:
    """What a case's "More information" shows: the model's top diagnosis, and the review's
    final diagnosis when its text is another entry. ``prediction`` and ``review`` are the
    stored ``Prediction`` and ``Review`` (either may be None)."""
    if prediction is None:
        return []
    classes = prediction.model_version.classes
    shown: list[tuple[str, Described]] = []
    top = describe_or_none(prediction.top_diagnosis, classes=classes)
    if top is not None:
        shown.append(("model's top diagnosis", top))
    if review is not None:
        final = describe_or_none(
            review.final_isic_diagnosis or review.final_diagnosis, classes=classes
        )
        if final is not None and (top is None or final.entry != top.entry):
            shown.append(("final diagnosis", final))
    return shown
