"""Anatomic sites read as people read them: labels derived from the ISIC hierarchy, a two-step
picker (region, then site) that stores the ISIC value, and the readable label on the pages, in
the admin and in the API."""

import pytest
from django.template import Context, Template
from django.urls import reverse
from isic_metadata.anatom_site_hierarchical import AnatomSiteEnum

from diagnosis.models import ANATOMIC_SITE_CHOICES, Lesion
from diagnosis.sites import site_label, site_region, site_regions
from diagnosis.widgets import AnatomicSiteSelect
from tests import images
from tests.conftest import api_client_for, logged_in_client, upload
from tests.factories import LesionFactory, PatientFactory

CHEEK = "Head and neck:Head:Face:Cheek"


# --- the vocabulary -----------------------------------------------------------------------


def test_a_site_reads_as_its_levels_without_the_ones_a_neighbour_restates():
    assert site_label(CHEEK) == "Head › Face › Cheek"
    assert site_label("Head and neck:Head:Face:Cheek:Upper cheek") == "Head › Face › Upper cheek"
    assert site_label("Trunk:Anterior trunk") == "Anterior trunk"
    assert site_label("Head and neck:Neck:Front of neck") == "Front of neck"
    assert site_label("Lower extremity:Foot:Toes:Great toe") == "Lower extremity › Foot › Great toe"
    assert site_label("Upper extremity:Shoulder") == "Upper extremity › Shoulder"
    assert site_label("Trunk") == "Trunk"


def test_every_site_has_its_own_label_and_the_choices_carry_it():
    labels = [site_label(site.value) for site in AnatomSiteEnum]
    assert len(set(labels)) == len(labels)
    assert all(":" not in label for label in labels)
    assert dict(ANATOMIC_SITE_CHOICES)[CHEEK] == "Head › Face › Cheek"


def test_text_that_is_not_a_site_is_shown_as_it_is():
    assert site_label("unknown") == "unknown"
    assert site_label("") == ""
    assert site_region("not a site") == ""


def test_the_picker_tree_offers_every_site_once_under_its_region():
    regions = site_regions()
    assert [r.value for r in regions] == [
        "Head and neck",
        "Trunk",
        "Upper extremity",
        "Lower extremity",
        "Anogenital region",
    ]
    offered = [r.value for r in regions] + [
        value for r in regions for group in r.groups for value, _ in group.sites
    ]
    assert sorted(offered) == sorted(site.value for site in AnatomSiteEnum)
    for region in regions:
        for group in region.groups:
            assert all(site_region(value) == region.value for value, _ in group.sites)
    head = regions[0].groups[0]
    assert (head.label, head.sites[0]) == ("Head", ("Head and neck:Head", "Head"))
    assert (CHEEK, "Face › Cheek") in head.sites


def test_the_template_filter_shows_the_readable_label():
    rendered = Template("{% load anatomic_sites %}{{ site|site_label }}").render(
        Context({"site": CHEEK})
    )
    assert rendered == "Head › Face › Cheek"


# --- the widget ---------------------------------------------------------------------------


def test_the_widget_is_a_labelled_region_list_and_a_grouped_site_list():
    html = AnatomicSiteSelect().render("site", CHEEK, attrs={"id": "id_site"})
    assert '<label for="id_site_region">Region</label>' in html
    assert '<label for="id_site">Site</label>' in html
    assert 'name="site_region" id="id_site_region" data-site-region-for="id_site"' in html
    assert '<option value="Head and neck" selected>Head and neck</option>' in html
    assert f'<option value="{CHEEK}" selected>Face › Cheek</option>' in html
    assert '<optgroup label="Upper extremity › Shoulder">' in html
    assert "js/site_picker.js" in str(AnatomicSiteSelect().media)


def test_a_region_alone_shows_the_region_and_no_site():
    html = AnatomicSiteSelect().render("site", "Trunk", attrs={"id": "id_site"})
    assert '<option value="Trunk" selected>Trunk</option>' in html
    assert '<option value="" selected>— no more precise site —</option>' in html


@pytest.mark.parametrize(
    ("posted", "value"),
    [
        ({"site_region": "Trunk", "site": "Trunk:Anterior trunk"}, "Trunk:Anterior trunk"),
        ({"site_region": "Trunk", "site": ""}, "Trunk"),
        ({"site": CHEEK}, CHEEK),  # an API-like post without the region
        ({"site_region": "Trunk", "site": CHEEK}, CHEEK),  # without JavaScript: the site wins
        ({}, ""),
    ],
)
def test_the_posted_value_is_the_site_else_the_region(posted, value):
    assert AnatomicSiteSelect().value_from_datadict(posted, {}, "site") == value


# --- the new-case page, the pages, the admin and the API ----------------------------------


def new_case(client, clinic, **extra):
    data = {
        "clinic": clinic.pk,
        "new_patient_identifier": "SITE-1",
        "new_patient_sex": "female",
        "new_lesion_label": "cheek",
        "image": upload(images.jpeg_bytes()),
        "image_type": "dermoscopic",
        **extra,
    }
    return client.post(reverse("diagnosis:case-new"), data)


@pytest.mark.django_db
def test_the_new_case_page_offers_the_two_step_picker(client, clinician):
    page = logged_in_client(client, clinician).get(reverse("diagnosis:case-new"))
    html = page.content.decode()
    assert "<legend>Anatomic site:</legend>" in html
    assert 'id="id_new_lesion_anatomic_site_region"' in html
    assert "js/site_picker.js" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("posted", "stored"),
    [
        ({"new_lesion_anatomic_site": CHEEK}, CHEEK),
        ({"new_lesion_anatomic_site_region": "Trunk", "new_lesion_anatomic_site": ""}, "Trunk"),
    ],
)
def test_the_new_case_form_stores_the_isic_value(client, clinician, clinic, posted, stored):
    response = new_case(logged_in_client(client, clinician), clinic, **posted)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Lesion.objects.get(label="cheek").anatomic_site == stored


@pytest.mark.django_db
def test_a_site_that_is_not_in_the_vocabulary_is_refused(client, clinician, clinic):
    response = new_case(
        logged_in_client(client, clinician), clinic, new_lesion_anatomic_site="Tail"
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Lesion.objects.exists()


@pytest.mark.django_db
def test_pages_show_the_readable_site(client, clinician, clinic):
    from diagnosis import services

    lesion = LesionFactory(patient=PatientFactory(clinic=clinic), anatomic_site=CHEEK)
    case = services.case_submit(user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes()))
    logged_in_client(client, clinician)
    for url in (
        reverse("ml:patient-detail", args=[lesion.patient_id]),
        case.case.get_absolute_url(),
        reverse("diagnosis:case-new"),  # the lesion list names the site too
    ):
        html = client.get(url).content.decode()
        assert "Head › Face › Cheek" in html, url
        assert f">{CHEEK}<" not in html, url
        assert f"({CHEEK})" not in html, url


@pytest.mark.django_db
def test_the_admin_lists_the_readable_site(client, admin_user, clinic):
    LesionFactory(patient=PatientFactory(clinic=clinic), anatomic_site=CHEEK)
    client.force_login(admin_user)
    html = client.get(reverse("admin:diagnosis_lesion_changelist")).content.decode()
    assert "Head › Face › Cheek" in html


@pytest.mark.django_db
def test_the_api_gives_the_readable_label_next_to_the_value(clinician, clinic):
    patient = PatientFactory(clinic=clinic)
    api = api_client_for(clinician)
    created = api.post(
        "/api/v1/lesions/",
        {"patient": patient.pk, "label": "cheek", "anatomic_site": CHEEK},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["anatomic_site"], body["anatomic_site_label"]) == (CHEEK, "Head › Face › Cheek")
    listed = api.get("/api/v1/lesions/").json()["results"][0]
    assert listed["anatomic_site_label"] == "Head › Face › Cheek"


@pytest.mark.django_db
def test_the_schema_documents_the_label_as_read_only():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    field = schema["components"]["schemas"]["Lesion"]["properties"]["anatomic_site_label"]
    assert field["type"] == "string"
    assert field["readOnly"] is True
    assert "Head › Face › Cheek" in field["description"]
