"""Times in the user's time zone: "taken at" on the new-case page is read in the zone the browser
sent with the form (not the server's), a time still to come there is refused, and every page
shows dates in the zone of the browser's "tz" cookie."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from diagnosis import services
from diagnosis.middleware import TimeZoneMiddleware, time_zone_named
from diagnosis.models import Case
from tests import images
from tests.conftest import logged_in_client, upload
from tests.factories import LesionFactory, PatientFactory

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def server_in_utc(settings):
    settings.TIME_ZONE = "UTC"


def new_case(client, clinic, **extra):
    data = {
        "clinic": clinic.pk,
        "new_patient_identifier": "TZ-1",
        "new_patient_sex": "female",
        "new_lesion_label": "back",
        "image": upload(images.jpeg_bytes()),
        "image_type": "dermoscopic",
        **extra,
    }
    return client.post(reverse("diagnosis:case-new"), data)


def local(moment: datetime, zone=BERLIN) -> str:
    """As a datetime-local field sends it."""
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2024-07-01T10:30", datetime(2024, 7, 1, 8, 30, tzinfo=UTC)),  # summer time, +2
        ("2024-01-15T10:30", datetime(2024, 1, 15, 9, 30, tzinfo=UTC)),  # winter time, +1
    ],
)
def test_taken_at_is_read_in_the_zone_sent_with_the_form(client, clinician, clinic, sent, stored):
    response = new_case(
        logged_in_client(client, clinician), clinic, tz="Europe/Berlin", captured_at=sent
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Case.objects.get().captured_at == stored


def test_the_local_time_of_now_in_berlin_is_not_in_the_future(client, clinician, clinic):
    """The reported defect: read as UTC, a Berlin clock's "now" was hours ahead."""
    now = timezone.now().replace(second=0, microsecond=0)
    response = new_case(
        logged_in_client(client, clinician), clinic, tz="Europe/Berlin", captured_at=local(now)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Case.objects.get().captured_at == now


def test_a_time_still_to_come_in_the_users_zone_is_refused(client, clinician, clinic):
    soon = timezone.now() + timedelta(hours=1)
    response = new_case(
        logged_in_client(client, clinician), clinic, tz="Europe/Berlin", captured_at=local(soon)
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "This time is in the future" in html
    assert "now in Europe/Berlin" in html
    assert not Case.objects.exists()


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "../../etc/passwd", "", "x" * 300])
def test_an_unknown_zone_falls_back_to_the_default(client, clinician, clinic, name):
    response = new_case(
        logged_in_client(client, clinician), clinic, tz=name, captured_at="2024-07-01T10:30"
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Case.objects.get().captured_at == datetime(2024, 7, 1, 10, 30, tzinfo=UTC)


def test_the_zone_sent_with_the_form_wins_over_the_cookie(client, clinician, clinic):
    client.cookies["tz"] = "Asia/Tokyo"
    response = new_case(
        logged_in_client(client, clinician),
        clinic,
        tz="Europe/Berlin",
        captured_at="2024-07-01T10:30",
    )
    assert response.status_code == 302
    assert Case.objects.get().captured_at == datetime(2024, 7, 1, 8, 30, tzinfo=UTC)


def test_the_new_case_page_says_which_zone_it_uses(client, clinician):
    logged_in_client(client, clinician)
    page = client.get(reverse("diagnosis:case-new")).content.decode()
    assert "Times are in <span data-time-zone>UTC</span>" in page
    client.cookies["tz"] = "Europe/Berlin"
    page = client.get(reverse("diagnosis:case-new")).content.decode()
    assert "Times are in <span data-time-zone>Europe/Berlin</span>" in page
    assert '<input type="hidden" name="tz" value="Europe/Berlin" id="id_tz">' in page
    assert "js/timezone.js" in page


def test_a_refused_form_keeps_the_zone_it_was_sent_with(client, clinician, clinic):
    response = new_case(
        logged_in_client(client, clinician), clinic, tz="Europe/Berlin", new_lesion_label=""
    )
    assert response.status_code == 400
    assert "Times are in <span data-time-zone>Europe/Berlin</span>" in response.content.decode()


def test_the_middleware_activates_the_cookies_zone_for_the_request_only():
    seen = []

    def view(_request):
        seen.append(timezone.get_current_timezone_name())
        return HttpResponse()

    middleware = TimeZoneMiddleware(view)
    factory = RequestFactory()
    for cookie in ("Europe/Berlin", "Not/AZone", None):
        request = factory.get("/")
        if cookie is not None:
            request.COOKIES["tz"] = cookie
        middleware(request)
        assert timezone.get_current_timezone_name() == "UTC"  # nothing leaks to the next request
    assert seen == ["Europe/Berlin", "UTC", "UTC"]


def test_zone_names_are_looked_up_only_in_the_time_zone_database():
    assert time_zone_named("Europe/Berlin") == BERLIN
    for name in (None, "", "Europe/Nowhere", "/etc/localtime", "../zoneinfo/UTC"):
        assert time_zone_named(name) is None


def test_pages_show_dates_in_the_cookies_zone(client, clinician, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    case = services.case_submit(
        user=clinician,
        lesion=lesion,
        upload=upload(images.jpeg_bytes()),
        captured_at=datetime(2024, 7, 1, 8, 30, tzinfo=UTC),
    ).case
    logged_in_client(client, clinician)
    assert "2024-07-01 08:30" in client.get(case.get_absolute_url()).content.decode()
    client.cookies["tz"] = "Europe/Berlin"
    assert "2024-07-01 10:30" in client.get(case.get_absolute_url()).content.decode()
