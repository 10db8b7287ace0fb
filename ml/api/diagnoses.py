"""Disease information, read-only: the team's general text about each diagnosis
(``ml.disease_information``), every entry or the one that describes a term."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound

from diagnosis.api.examples import response
from ml import disease_information
from ml.disease_information import Described, Entry
from ml.models import PredictionCategory
from ml.services.registry import active_model_version


def entry_data(entry: Entry, lookup: dict | None = None) -> dict:
    return {
        "term": entry.term,
        "name": entry.name,
        "category": entry.category,
        "summary": entry.summary,
        "dermoscopic_features": list(entry.dermoscopic_features),
        "usual_next_step": entry.usual_next_step,
        "disclaimer": disease_information.library().disclaimer,
        "lookup": lookup,
    }


def described_data(described: Described, query: str) -> dict:
    lookup = {
        "query": query,
        "term": described.requested_term or None,
        "name": described.requested_name,
        "exact": not described.is_ancestor,
    }
    return entry_data(described.entry, lookup)


# Examples made from the data itself, so that they cannot drift from what the endpoint answers.
_SUPERFICIAL_SPREADING = "Melanoma in situ, Superficial spreading"
EXAMPLES = [
    response(
        "Every entry (one shown)",
        entry_data(disease_information.describe("Melanoma in situ").entry),
        status_codes=["200"],
    ),
    response(
        f"?term={_SUPERFICIAL_SPREADING}: no entry of its own, described by its parent",
        described_data(
            disease_information.describe(_SUPERFICIAL_SPREADING), _SUPERFICIAL_SPREADING
        ),
        status_codes=["200"],
    ),
    response(
        "?term=MEL: the model class's own node",
        described_data(disease_information.describe("MEL"), "MEL"),
        status_codes=["200"],
    ),
]
UNKNOWN = "'Melanoma X' is neither a model class code nor a diagnosis of the ISIC hierarchy."


class LookupSerializer(serializers.Serializer):
    query = serializers.CharField(help_text="The term as asked for")
    term = serializers.CharField(
        allow_null=True,
        help_text="The full ISIC term it resolved to (null: a model class outside the hierarchy)",
    )
    name = serializers.CharField(help_text="The model class's name, or the term's last level")
    exact = serializers.BooleanField(
        help_text="True: the text describes the term itself; false: the term has no entry of "
        "its own and the text describes its nearest described ancestor (the entry's `term`)."
    )


@extend_schema_serializer(examples=EXAMPLES)
class DiagnosisInformationSerializer(serializers.Serializer):
    term = serializers.CharField(help_text="The ISIC hierarchy node this text describes")
    name = serializers.CharField(help_text="Its last level")
    category = serializers.ChoiceField(choices=PredictionCategory.choices)  # one enum in the schema
    summary = serializers.CharField(help_text="Two or three sentences, for clinicians")
    dermoscopic_features = serializers.ListField(child=serializers.CharField())
    usual_next_step = serializers.CharField(help_text="What is usually done, in general terms")
    disclaimer = serializers.CharField(
        help_text="General information for clinicians, not advice about any patient"
    )
    lookup = LookupSerializer(
        allow_null=True, help_text="With ?term=: what was looked up; null in the full list"
    )


class DiagnosisInformationViewSet(viewsets.GenericViewSet, mixins.ListModelMixin):
    """General information for clinicians about the diagnoses SkinSense shows, not advice
    about any patient. Every entry (in the order of the ISIC hierarchy), or with ``?term=`` the
    one entry that describes a term: a model class code (the active model's, or the ISIC 2019
    classes'), a full ISIC term, or its last level. A term without an entry of its own is
    described by its nearest described ancestor; ``lookup`` says so."""

    serializer_class = DiagnosisInformationSerializer
    filter_backends: list = []  # the entries are data, not a queryset; ?term= is the lookup
    documented_errors = {
        "list": {
            404: (
                "The term is neither a model class code nor a diagnosis of the ISIC hierarchy "
                "(or the page is past the last one).",
                {"detail": UNKNOWN},
            )
        }
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return []
        term = " ".join(self.request.query_params.get("term", "").split())
        if not term:
            return [entry_data(entry) for entry in disease_information.entries()]
        version = active_model_version()
        classes = version.classes if version is not None else None
        try:
            described = disease_information.describe(term, classes=classes)
        except disease_information.UnknownDiagnosisError as exc:
            raise NotFound(str(exc)) from None
        return [described_data(described, term)]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "term",
                OpenApiTypes.STR,
                description="A model class code (e.g. `MEL`: a case's `prediction.top_diagnosis`), "
                "a full ISIC term (a review's `final_isic_diagnosis`) or its last level (e.g. "
                "`Melanoma in situ`)",
            )
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)
