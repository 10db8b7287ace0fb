import factory
from django.contrib.auth import get_user_model

from diagnosis import services
from diagnosis.models import Clinic, Lesion, Membership, Patient, Role
from ml.engine.model.taxonomy import classes_from_dicts
from ml.engine.serve.base import interpret
from ml.models import Prediction
from tests import images
from tests.images import upload

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or PASSWORD)
        if create:
            self.save()


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic

    name = factory.Sequence(lambda n: f"Clinic {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    clinic = factory.SubFactory(ClinicFactory)
    role = Role.CLINICIAN


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    clinic = factory.SubFactory(ClinicFactory)
    identifier = factory.Sequence(lambda n: f"MRN-{n:05d}")
    sex = "female"
    year_of_birth = 1970


class LesionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lesion

    patient = factory.SubFactory(PatientFactory)
    clinic = factory.LazyAttribute(lambda o: o.patient.clinic)
    label = factory.Sequence(lambda n: f"lesion {n}")
    anatomic_site = "Trunk"


def predicted_case(
    clinic, user, model_version, *, malignant=0.2, top="NV", uncertain=False, seed=0
):
    """A submitted case with a stored prediction (no model run): for reviews and audits."""
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    case = services.case_submit(
        user=user, lesion=lesion, upload=upload(images.jpeg_bytes(color=(seed, 50, 60)))
    ).case
    probabilities = {c["code"]: 0.01 for c in model_version.classes}
    probabilities[top] = 0.93
    # Stored as the workers store it: both heads read by the one rule.
    _, category, _, uncertain_by_rule = interpret(
        malignant_probability=malignant,
        diagnosis_probabilities=probabilities,
        classes=classes_from_dicts(model_version.classes),
        thresholds={"malignant": 0.5, "confidence": 0.5},
    )
    Prediction.objects.create(
        case=case,
        model_version=model_version,
        malignant_probability=malignant,
        malignant_threshold=0.5,
        diagnosis_probabilities=probabilities,
        top_diagnosis=top,
        top_probability=0.93,
        category=category,
        uncertain=uncertain or uncertain_by_rule,
        inference_ms=10,
    )
    case.status = "done"
    case.save()
    return case
