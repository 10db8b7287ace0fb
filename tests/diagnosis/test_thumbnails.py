"""Pages show cached thumbnails, not originals: made once, private to the clinic, cacheable."""

import io

import pytest
from django.urls import reverse
from PIL import Image

from diagnosis import services, thumbnails
from diagnosis.models import AuditAction, AuditEvent
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.models import ModelVersion
from tests import images
from tests.conftest import api_client_for, drain, logged_in_client, upload
from tests.factories import LesionFactory, PatientFactory, predicted_case

pytestmark = pytest.mark.django_db


def thumb_url(case, size=256) -> str:
    return reverse("diagnosis:case-thumbnail", args=[case.pk, size])


def image_url(case) -> str:
    return reverse("diagnosis:case-image", args=[case.pk])


@pytest.fixture
def large_case(clinic, clinician):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic), label="left shoulder")
    content = images.jpeg_bytes(size=(1600, 1200), color=(200, 120, 90), quality=95)
    return services.case_submit(user=clinician, lesion=lesion, upload=upload(content)).case


@pytest.fixture
def model_row(db):  # noqa: ARG001 - a fixture asked for its effect
    """A registry row without weights: enough for pages that list predictions."""
    return ModelVersion.objects.create(
        name="rows-only",
        version="1",
        backbone="resnet18",
        classes=[c.as_dict() for c in ISIC2019_CLASSES],
        weights_file="absent.pt",
        weights_sha256="0" * 64,
        is_active=True,
    )


def test_a_member_gets_a_small_jpeg_without_metadata(client, large_case, clinician):
    response = logged_in_client(client, clinician).get(thumb_url(large_case))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    content = drain(response)
    with Image.open(io.BytesIO(content)) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (256, 192)  # the longest side, aspect kept
        assert thumb.mode == "RGB"
        assert not thumb.getexif()
        assert "icc_profile" not in thumb.info
    assert b"Exif" not in content
    with large_case.image.open("rb") as original:
        assert len(content) < len(original.read())


def test_no_metadata_reaches_the_thumbnail_even_from_an_original_that_has_some(
    client, large_case, clinician
):
    # Stored originals are already stripped; a thumbnail must not depend on that.
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90° to display
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 600), (10, 200, 30)).save(
        buffer, format="JPEG", exif=exif.tobytes(), icc_profile=icc
    )
    with open(large_case.image.path, "wb") as stored:
        stored.write(buffer.getvalue())

    content = drain(logged_in_client(client, clinician).get(thumb_url(large_case)))
    with Image.open(io.BytesIO(content)) as thumb:
        assert thumb.size == (128, 256)  # orientation applied, then fitted
        assert not thumb.getexif()
        assert "icc_profile" not in thumb.info
    assert b"Exif" not in content
    assert b"CameraMaker" not in content


def test_the_larger_size_and_a_small_original_are_never_enlarged(client, clinic, clinician):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    small = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes(size=(64, 48)))
    ).case
    logged_in_client(client, clinician)
    for size in (256, 768):
        with Image.open(io.BytesIO(drain(client.get(thumb_url(small, size))))) as thumb:
            assert thumb.size == (64, 48)


def test_a_png_original_gives_a_jpeg_thumbnail(client, clinic, clinician):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    case = services.case_submit(
        user=clinician,
        lesion=lesion,
        upload=upload(images.png_bytes(size=(900, 300)), "lesion.png", "image/png"),
    ).case
    response = logged_in_client(client, clinician).get(thumb_url(case, 768))
    with Image.open(io.BytesIO(drain(response))) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (768, 256)


def test_only_the_offered_sizes_exist(client, large_case, clinician):
    logged_in_client(client, clinician)
    for size in (1, 255, 300, 1024, 100000):
        assert client.get(thumb_url(large_case, size)).status_code == 404, size


def test_the_thumbnail_is_made_once_and_kept_privately_by_hash_and_size(
    client, large_case, clinician, private_storage, monkeypatch
):
    logged_in_client(client, clinician)
    drain(client.get(thumb_url(large_case)))
    stored = private_storage / "thumbnails" / large_case.image_sha256[:2]
    path = stored / f"{large_case.image_sha256}-256.jpg"
    assert path.is_file()
    assert [p.name for p in stored.iterdir()] == [path.name]
    made_at = path.stat().st_mtime_ns

    renders = []
    real_render = thumbnails.render_thumbnail
    monkeypatch.setattr(
        thumbnails,
        "render_thumbnail",
        lambda *a, **k: renders.append(1) or real_render(*a, **k),
    )
    again = client.get(thumb_url(large_case))
    assert again.status_code == 200
    assert drain(again) == path.read_bytes()
    assert renders == []
    assert path.stat().st_mtime_ns == made_at
    drain(client.get(thumb_url(large_case, 768)))  # another size is another file
    assert renders == [1]


def test_the_browser_may_cache_it_and_revalidate_with_the_etag(client, large_case, clinician):
    logged_in_client(client, clinician)
    first = client.get(thumb_url(large_case))
    drain(first)
    cache_control = first["Cache-Control"]
    assert "private" in cache_control
    assert "max-age=" in cache_control
    assert "no-store" not in cache_control
    assert "public" not in cache_control
    etag = first["ETag"]
    assert etag == f'"{large_case.image_sha256}-256"'

    again = client.get(thumb_url(large_case), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    assert "private" in again["Cache-Control"]
    weak = client.get(thumb_url(large_case), HTTP_IF_NONE_MATCH=f'"other", W/{etag}')
    assert weak.status_code == 304
    other_size = client.get(thumb_url(large_case, 768), HTTP_IF_NONE_MATCH=etag)
    assert other_size.status_code == 200
    drain(other_size)


def test_the_original_stays_uncacheable(client, large_case, clinician):
    response = logged_in_client(client, clinician).get(image_url(large_case))
    drain(response)
    assert response["Cache-Control"] == "no-store, private"
    assert not response.has_header("ETag")


def test_colleague_sees_it_outsider_gets_404_anonymous_goes_to_login(
    client, large_case, colleague, outsider
):
    url = thumb_url(large_case)
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]
    logged_in_client(client, colleague)
    drain(client.get(url))
    client.logout()
    logged_in_client(client, outsider)
    assert client.get(url).status_code == 404
    # An ETag does not get around the membership check.
    etag = f'"{large_case.image_sha256}-256"'
    assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 404
    assert client.get(url, HTTP_IF_NONE_MATCH="*").status_code == 404


def test_a_missing_original_is_404(client, large_case, clinician):
    large_case.image.storage.delete(large_case.image.name)
    assert logged_in_client(client, clinician).get(thumb_url(large_case)).status_code == 404


def test_sending_a_thumbnail_is_audited_and_a_revalidation_is_not(client, large_case, clinician):
    logged_in_client(client, clinician)
    response = client.get(thumb_url(large_case))
    drain(response)
    client.get(thumb_url(large_case), HTTP_IF_NONE_MATCH=response["ETag"])
    events = AuditEvent.objects.filter(action=AuditAction.VIEW, target_type="case_thumbnail")
    assert [(e.target_id, e.actor, e.detail) for e in events] == [
        (str(large_case.pk), clinician, {"size": 256})
    ]


def test_the_api_gives_a_thumbnail_url_that_works_with_a_token(large_case, clinician):
    api = api_client_for(clinician)
    body = api.get(f"/api/v1/cases/{large_case.pk}/").json()
    assert body["thumbnail_url"].endswith(f"/api/v1/cases/{large_case.pk}/thumbnail/")
    listed = api.get("/api/v1/cases/").json()["results"][0]
    assert listed["thumbnail_url"] == body["thumbnail_url"]
    response = api.get(body["thumbnail_url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert "private" in response["Cache-Control"]
    with Image.open(io.BytesIO(drain(response))) as thumb:
        assert max(thumb.size) == 256
    larger = api.get(body["thumbnail_url"], {"size": 768})
    with Image.open(io.BytesIO(drain(larger))) as thumb:
        assert max(thumb.size) == 768
    assert api.get(body["thumbnail_url"], {"size": 300}).status_code == 400
    revalidated = api.get(body["thumbnail_url"], HTTP_IF_NONE_MATCH=response["ETag"])
    assert revalidated.status_code == 304
    event = AuditEvent.objects.filter(target_type="case_thumbnail").order_by("pk").first()
    assert event.detail == {"size": 256, "via": "api"}


def test_the_timeline_shows_thumbnails_not_originals(client, large_case, clinician):
    page = logged_in_client(client, clinician).get(large_case.lesion.patient.get_absolute_url())
    html = page.content.decode()
    assert thumb_url(large_case) in html
    assert image_url(large_case) not in html


def test_the_dashboard_shows_thumbnails_not_originals(client, clinic, colleague, model_row):
    case = predicted_case(clinic, colleague, model_row)
    html = logged_in_client(client, colleague).get(reverse("ml:dashboard")).content.decode()
    assert html.count(thumb_url(case)) == 2  # recent cases and awaiting review
    assert image_url(case) not in html


def test_the_review_queue_shows_thumbnails_not_originals(client, clinic, colleague, model_row):
    case = predicted_case(clinic, colleague, model_row)
    html = logged_in_client(client, colleague).get(reverse("ml:review-queue")).content.decode()
    assert thumb_url(case) in html
    assert image_url(case) not in html


def test_other_images_of_a_lesion_are_thumbnails_and_the_case_image_stays_full_size(
    client, large_case, clinician
):
    later = services.case_submit(
        user=clinician, lesion=large_case.lesion, upload=upload(images.jpeg_bytes())
    ).case
    html = logged_in_client(client, clinician).get(later.get_absolute_url()).content.decode()
    assert thumb_url(large_case) in html
    assert image_url(large_case) not in html
    # The case's own image stays the original: its heatmap overlay is drawn at that size.
    assert image_url(later) in html
