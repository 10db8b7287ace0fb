"""From a data set's label to a class of the model's class list. No Django, no torch.

Every label is first turned into a diagnosis of the ISIC hierarchy (``isic_metadata``), then
into the class of the model's class list that contains it (the class whose ISIC diagnosis is the
longest prefix of it). So a class list other than the ISIC 2019 eight works for every layout,
and every class's benign / indeterminate / malignant category is the hierarchy's.

HAM10000's seven ``dx`` codes map into the ISIC 2019 eight as mel→MEL, nv→NV, bcc→BCC,
bkl→BKL, df→DF, vasc→VASC and akiec→AK. HAM10000's ``akiec`` mixes actinic keratoses with
intraepithelial carcinoma (Bowen's disease); ISIC 2019 split it into AK and SCC, and when a
``dx_isic2019`` column carries that split it is used instead of ``dx``. Without it, akiec is AK:
category indeterminate, so not malignant for the binary target.
"""

from __future__ import annotations

from collections.abc import Sequence

from isic_metadata.diagnosis_hierarchical import DiagnosisEnum

from ml.engine.model.taxonomy import ISIC2019_CLASSES, DiagnosisClass

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


class LabelMapper:
    """Maps ISIC diagnoses (hierarchical, terminal, legacy) and class codes to class indices."""

    def __init__(self, classes: Sequence[DiagnosisClass]) -> None:
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
        self._terminals: dict[str, str] = {
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
            return str(DiagnosisEnum(value).value)
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
