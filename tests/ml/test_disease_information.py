"""Disease information: the team's data validates, every diagnosis the platform shows resolves
to an entry (its own or its nearest described ancestor's), the case and review pages show it
as general information, and the API serves it to signed-in users only."""

import copy
import json

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from ml import disease_information
from ml.disease_information import DiseaseInformationError, UnknownDiagnosisError, describe
from ml.engine.model.taxonomy import ISIC2019_CLASSES, isic_terms
from ml.models import ModelVersion, Prediction
from ml.services.review import review_submit
from tests.conftest import api_client_for, logged_in_client
from tests.diagnosis.test_api_schema import assert_documented
from tests.factories import predicted_case

GENERAL = "General information for clinicians, not advice about any patient."
MELANOMA = "Malignant:Malignant melanocytic proliferations (Melanoma)"
IN_SITU = f"{MELANOMA}:Melanoma in situ"
URL = "/api/v1/diagnosis-information/"


def raw_data() -> dict:
    return json.loads(disease_information.DATA_FILE.read_text(encoding="utf-8"))


@pytest.fixture
def model_version(db):  # noqa: ARG001 - a fixture asked for its effect
    """An active model with the ISIC 2019 classes (no weights: nothing is run)."""
    return ModelVersion.objects.create(
        name="isic2019",
        version="test",
        backbone="resnet18",
        classes=[c.as_dict() for c in ISIC2019_CLASSES],
        weights_file="none.pt",
        weights_sha256="0" * 64,
        is_active=True,
    )


# --- the data ------------------------------------------------------------------------------


def test_the_data_validates_and_says_it_is_general_information():
    library = disease_information.library()
    assert library.disclaimer == GENERAL
    assert "SkinSense team" in library.authorship
    assert 30 <= len(library.entries) <= 45
    assert set(library.entries) <= set(isic_terms())
    assert {"Benign", "Indeterminate", "Malignant"} <= set(library.entries)
    for entry in library.entries.values():
        assert entry.usual_next_step.startswith("Usually"), entry.term
        assert 2 <= len(entry.dermoscopic_features) <= 6, entry.term
        text = " ".join([entry.summary, entry.usual_next_step, *entry.dermoscopic_features])
        for personal in ("this patient", "your patient", "the patient"):
            assert personal not in text.lower(), entry.term


def test_the_clinically_common_terms_have_an_entry_of_their_own():
    for term in [
        "Melanoma in situ",
        "Melanoma Invasive",
        "Melanoma in situ, Lentigo maligna type",
        "Nevus, Atypical, Dysplastic, or Clark",
        "Nevus, Spitz",
        "Blue nevus",
        "Nevus, Congenital",
        "Seborrheic keratosis",
        "Solar lentigo",
        "Lichen planus like keratosis",
        "Squamous cell carcinoma in situ",
        "Keratoacanthoma",
        "Hemangioma",
        "Pyogenic granuloma",
        "Angiokeratoma",
        "Kaposi sarcoma",
        "Merkel cell carcinoma",
        "Dermatofibrosarcoma protuberans",
    ]:
        described = describe(term)
        assert not described.is_ancestor, term
        assert described.entry.name == term


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["entries"].update({"Malignant:Melanoma X": {}}), "not terms of the ISIC"),
        (lambda d: d["entries"][IN_SITU].pop("usual_next_step"), "exactly"),
        (lambda d: d["entries"][IN_SITU].update({"dermoscopic_features": []}), "non-empty list"),
        (lambda d: d["entries"][IN_SITU].update({"summary": "  "}), "non-empty text"),
        (lambda d: d["entries"].pop("Indeterminate"), "every category"),
        (lambda d: d["header"].pop("disclaimer"), "header needs"),
    ],
)
def test_malformed_data_is_refused_at_load(change, message):
    data = copy.deepcopy(raw_data())
    change(data)
    with pytest.raises(DiseaseInformationError, match=message):
        disease_information.parse(data)


# --- looking a diagnosis up ----------------------------------------------------------------


@pytest.mark.parametrize("model_class", ISIC2019_CLASSES, ids=lambda c: c.code)
def test_every_model_class_has_an_entry_of_its_own_node(model_class):
    described = describe(model_class.code)
    assert described.entry.term == model_class.isic_diagnosis
    assert not described.is_ancestor
    assert described.entry.term not in ("Benign", "Indeterminate", "Malignant")
    assert described.requested_name == model_class.name


def test_a_full_term_or_its_last_level_finds_its_entry_forgiving_case_and_spacing():
    for term in (IN_SITU, "Melanoma in situ", "  melanoma   IN situ "):
        described = describe(term)
        assert described.entry.term == IN_SITU
        assert described.requested_term == IN_SITU
        assert not described.is_ancestor
    assert describe("mel").entry.term == MELANOMA


def test_a_term_without_an_entry_is_described_by_its_nearest_described_ancestor():
    described = describe("Melanoma in situ, Superficial spreading")
    assert described.is_ancestor
    assert described.entry.term == IN_SITU
    assert described.requested_name == "Melanoma in situ, Superficial spreading"
    assert describe("Squamous cell carcinoma in situ, Bowens disease").entry.name == (
        "Squamous cell carcinoma in situ"
    )
    assert describe("Hemangioma, Cherry").entry.name == "Hemangioma"
    # Nothing closer than the category: the category's text.
    assert describe("Angiosarcoma cutaneous").entry.term == "Malignant"
    assert describe("Lentigo simplex").entry.term == "Benign"


def test_every_term_of_the_hierarchy_resolves_to_an_entry():
    for term in isic_terms():
        assert term.startswith(describe(term).entry.term)


def test_an_unknown_or_blank_term_is_a_clear_error():
    with pytest.raises(UnknownDiagnosisError, match="neither a model class code nor"):
        describe("Melanoma X")
    with pytest.raises(UnknownDiagnosisError, match="No diagnosis given"):
        describe("   ")
    assert disease_information.describe_or_none("Melanoma X") is None


def test_a_model_version_s_own_classes_come_first():
    classes = [
        {"code": "SK", "name": "Seborrheic keratosis", "category": "benign",
         "isic_diagnosis": "Benign:Benign epidermal proliferations:Seborrheic keratosis"},
        {"code": "OTHER", "name": "Other malignant", "category": "malignant",
         "isic_diagnosis": ""},
        {"code": "ODD", "name": "Odd", "category": "indeterminate", "isic_diagnosis": "x"},
        {"code": "NONE", "name": "No category", "category": "", "isic_diagnosis": ""},
    ]  # fmt: skip
    assert describe("SK", classes=classes).entry.name == "Seborrheic keratosis"
    outside = describe("OTHER", classes=classes)
    assert outside.entry.term == "Malignant"
    assert outside.is_ancestor
    assert outside.requested_name == "Other malignant"
    assert describe("ODD", classes=classes).entry.term == "Indeterminate"  # not an ISIC term
    with pytest.raises(UnknownDiagnosisError, match="has no category"):
        describe("NONE", classes=classes)
    assert describe("NV", classes=classes).entry.name == "Nevus"  # ISIC 2019 as the fallback


# --- the pages -----------------------------------------------------------------------------


def _review(colleague, case, **fields):
    prediction = Prediction.objects.get(case=case)
    return review_submit(reviewer=colleague, prediction=prediction, **fields)


def test_the_case_page_shows_more_information_on_the_top_diagnosis(
    client, clinic, clinician, model_version
):
    case = predicted_case(clinic, clinician, model_version, malignant=0.9, top="MEL")
    page = logged_in_client(client, clinician).get(case.get_absolute_url()).content.decode()
    assert page.count('<details class="card more-information">') == 1
    assert "More information: <strong>Melanoma</strong>" in page
    assert GENERAL in page
    assert "Typical dermoscopic features" in page
    assert "Usual next step" in page


def test_the_case_page_adds_the_final_diagnosis_when_it_differs(
    client, clinic, clinician, colleague, model_version
):
    case = predicted_case(clinic, clinician, model_version, malignant=0.9, top="MEL")
    _review(
        colleague,
        case,
        verdict="override",
        final_diagnosis="Melanoma in situ, Superficial spreading",
        management="excision",
    )
    page = logged_in_client(client, clinician).get(case.get_absolute_url()).content.decode()
    assert page.count('<details class="card more-information">') == 2
    assert "More information: <strong>Melanoma in situ, Superficial spreading</strong>" in page
    assert "this describes Melanoma in situ, the broader group" in page


def test_an_agreeing_review_does_not_repeat_the_text(
    client, clinic, clinician, colleague, model_version
):
    case = predicted_case(clinic, clinician, model_version, malignant=0.1, top="NV")
    _review(colleague, case, verdict="agree", management="no_action")
    page = logged_in_client(client, clinician).get(case.get_absolute_url()).content.decode()
    assert page.count('<details class="card more-information">') == 1


def test_the_review_screen_shows_more_information_on_the_top_diagnosis(
    client, clinic, clinician, colleague, model_version
):
    case = predicted_case(clinic, clinician, model_version, malignant=0.1, top="BKL")
    page = logged_in_client(client, colleague).get(reverse("ml:review-case", args=[case.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "More information: <strong>Benign keratosis</strong>" in html
    assert GENERAL in html


def test_a_pending_case_shows_no_more_information(client, clinic, clinician, model_version):
    case = predicted_case(clinic, clinician, model_version, top="NV")
    Prediction.objects.filter(case=case).delete()
    page = logged_in_client(client, clinician).get(case.get_absolute_url()).content.decode()
    assert "more-information" not in page


# --- the API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.django_db
def test_the_api_needs_a_signed_in_user(schema):
    response = APIClient().get(URL)
    assert_documented(schema, URL, "get", response, 401)


@pytest.mark.usefixtures("model_version")
def test_the_api_lists_every_entry_as_general_information(schema, clinician):
    response = api_client_for(clinician).get(URL)
    assert_documented(schema, URL, "get", response, 200)
    body = response.json()
    assert body["count"] == len(disease_information.entries())
    assert [r["term"] for r in body["results"]] == [e.term for e in disease_information.entries()]
    assert all(r["disclaimer"] == GENERAL and r["lookup"] is None for r in body["results"])


@pytest.mark.usefixtures("model_version")
@pytest.mark.parametrize(
    ("term", "described", "exact"),
    [
        ("MEL", MELANOMA, True),
        (IN_SITU, IN_SITU, True),
        ("Melanoma in situ", IN_SITU, True),
        ("Melanoma in situ, Superficial spreading", IN_SITU, False),
    ],
)
def test_the_api_looks_a_term_up_like_the_pages(schema, outsider, term, described, exact):
    response = api_client_for(outsider).get(URL, {"term": term})  # general: any clinic's user
    assert_documented(schema, URL, "get", response, 200)
    (result,) = response.json()["results"]
    assert result["term"] == described
    assert result["lookup"]["query"] == term
    assert result["lookup"]["exact"] is exact
    assert result["disclaimer"] == GENERAL


def test_the_api_reads_codes_of_the_active_model(clinician, model_version):
    model_version.classes = [
        *model_version.classes,
        {"code": "SK", "name": "Seborrheic keratosis", "category": "benign",
         "isic_diagnosis": "Benign:Benign epidermal proliferations:Seborrheic keratosis"},
    ]  # fmt: skip
    model_version.save()
    response = api_client_for(clinician).get(URL, {"term": "SK"})
    (result,) = response.json()["results"]
    assert result["name"] == "Seborrheic keratosis"
    assert result["lookup"]["name"] == "Seborrheic keratosis"


@pytest.mark.django_db
def test_an_unknown_term_is_a_404_that_says_why(schema, clinician):
    response = api_client_for(clinician).get(URL, {"term": "Melanoma X"})
    assert_documented(schema, URL, "get", response, 404)
    assert response.json()["detail"] == (
        "'Melanoma X' is neither a model class code nor a diagnosis of the ISIC hierarchy."
    )


def test_the_schema_documents_the_term_parameter_and_examples(schema):
    operation = schema["paths"][URL]["get"]
    assert "term" in [p["name"] for p in operation["parameters"]]
    examples = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert len(examples) >= 2
