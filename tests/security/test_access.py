"""Every route that names a clinical object answers 404 to a member of another clinic.

The routes are read from the API router and the URLconf, not listed by hand: a new route that
takes an object id is covered (or fails here until its object type is mapped).
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from diagnosis import services
from skinsense_site.api_urls import router
from tests import images
from tests.conftest import api_client_for, logged_in_client, upload
from tests.factories import LesionFactory, PatientFactory, predicted_case
from tests.security.routes import OBJECT_OF_ROUTE

pytestmark = pytest.mark.django_db

# Which object a route's <pk> names, by route-name prefix.
NOT_CLINICAL = {"modelversion"}  # the registry is the same for everyone
# A value for each route argument other than <pk> (a new argument fails here until it is added).
OTHER_ROUTE_ARGUMENTS = {"size": 256}


@pytest.fixture
def foreign(other_clinic, outsider, active_model):
    from diagnosis.models import AuditEvent, Webhook

    case = predicted_case(other_clinic, outsider, active_model)
    return {
        "case": case,
        "lesion": case.lesion,
        "patient": case.lesion.patient,
        "auditevent": AuditEvent.objects.filter(clinic=other_clinic).first(),
        "webhook": Webhook.objects.create(clinic=other_clinic, url="https://example.org/h"),
        "membership": outsider.memberships.get(),
        "clinic": other_clinic,
    }


def api_detail_routes():
    for url in router.get_urls():
        name = url.name or ""
        basename = name.rsplit("-", 1)[0]
        if "pk" not in url.pattern.regex.groupindex or basename in NOT_CLINICAL:
            continue
        actions = url.callback.actions  # {"get": "retrieve", "patch": "partial_update", ...}
        allowed = url.callback.cls.http_method_names
        for method in actions:
            if method in allowed:
                yield name, basename, method


def web_detail_routes():
    """(name, other arguments) of every page route that takes an object's <pk>."""

    def walk(patterns, namespace=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                space = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                if entry.namespace in (None, "api", "admin"):
                    continue
                yield from walk(entry.url_patterns, space)
            elif isinstance(entry, URLPattern) and "pk" in entry.pattern.regex.groupindex:
                others = set(entry.pattern.regex.groupindex) - {"pk"}
                yield namespace + entry.name, {a: OTHER_ROUTE_ARGUMENTS[a] for a in others}

    yield from walk(get_resolver().url_patterns)


def test_every_api_route_with_an_object_id_is_404_for_an_outsider(clinician, foreign):
    api = api_client_for(clinician)
    checked = 0
    for name, basename, method in api_detail_routes():
        obj = foreign[OBJECT_OF_ROUTE[basename]]
        url = reverse(f"api:{name}", kwargs={"pk": obj.pk})
        response = getattr(api, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        checked += 1
    # patient get/put/patch, lesion get, case get + image/thumbnail/heatmap/reviews
    assert checked >= 9


def test_every_page_with_an_object_id_is_404_for_an_outsider(client, clinician, colleague, foreign):
    for user in (clinician, colleague):  # a dermatologist of the other clinic too
        logged_in_client(client, user)
        routes = list(web_detail_routes())
        assert len(routes) >= 7
        assert "diagnosis:case-thumbnail" in dict(routes)
        for name, others in routes:
            prefix = name.split(":")[-1].rsplit("-", 1)[0]
            key = name.split(":")[-1] if name.split(":")[-1] in OBJECT_OF_ROUTE else prefix
            obj = foreign[OBJECT_OF_ROUTE[key]]
            url = reverse(name, kwargs={"pk": obj.pk, **others})
            codes = {method: getattr(client, method)(url).status_code for method in ("get", "post")}
            # 405 only for a method the view does not take at all; every other answer is 404.
            assert set(codes.values()) <= {404, 405}, (user, url, codes)
            assert 404 in codes.values(), (user, url, codes)
        client.logout()


def test_anonymous_is_redirected_to_login_or_401(client, foreign):
    for name, others in web_detail_routes():
        response = client.get(reverse(name, kwargs={"pk": foreign["case"].pk, **others}))
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
    from rest_framework.test import APIClient

    for name, basename, method in api_detail_routes():
        url = reverse(f"api:{name}", kwargs={"pk": foreign[OBJECT_OF_ROUTE[basename]].pk})
        assert getattr(APIClient(), method)(url).status_code == 401


def test_mass_assignment_of_server_owned_fields_is_ignored(clinician, clinic, other_clinic):
    api = api_client_for(clinician)
    patient = api.post(
        "/api/v1/patients/",
        {
            "identifier": "MA-1",
            "created_by": 999,
            "id": 12345,
            "created_at": "2001-01-01T00:00:00Z",
        },
    ).json()
    assert patient["id"] != 12345
    assert not patient["created_at"].startswith("2001")
    moved = api.patch(f"/api/v1/patients/{patient['id']}/", {"clinic": other_clinic.pk})
    assert moved.status_code == 400
    lesion = api.post(
        "/api/v1/lesions/", {"patient": patient["id"], "label": "x", "clinic": other_clinic.pk}
    ).json()
    assert lesion["clinic"] == clinic.pk
    case = services.case_submit(
        user=clinician,
        lesion=LesionFactory(patient=PatientFactory(clinic=clinic)),
        upload=upload(images.jpeg_bytes()),
    ).case
    for method in ("put", "patch", "delete"):
        assert (
            getattr(api, method)(f"/api/v1/cases/{case.pk}/", {"status": "done"}).status_code == 405
        )
    case.refresh_from_db()
    assert case.status == "queued"
