"""The hostile and odd file battery, through the page and the API (issue: nothing lost, no one
in). Every hostile file is refused with a 4xx and a message; every legitimate odd one is
accepted, oriented and stored as 8-bit RGB without metadata; no server error, no orphan row or
file. Plus a property test: any bytes give a clean image or a validation error, nothing else."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from diagnosis.models import Case
from diagnosis.validation import CleanImage, validate_image
from tests.conftest import api_client_for, logged_in_client, stored_files
from tests.factories import LesionFactory, PatientFactory
from tests.hostile import corpus

pytestmark = pytest.mark.django_db

CORPUS = corpus()


def test_the_corpus_is_large_and_mixed():
    assert len(CORPUS) >= 200
    assert sum(s.hostile for s in CORPUS) >= 100
    assert sum(not s.hostile for s in CORPUS) >= 40


def _stored_is_clean(path, expected_size):
    content = path.read_bytes()
    for needle in (
        b"Exif",
        b"GPS",
        b"Jane Doe",
        b"MRN",
        b"<script",
        b"PhoneMaker",
        b"tEXt",
        b"iTXt",
        b"zTXt",
        b"iCCP",
    ):
        assert needle not in content, (path.name, needle)
    with Image.open(io.BytesIO(content)) as image:
        image.load()
        assert image.mode == "RGB"
        assert not image.getexif()
        assert "icc_profile" not in image.info
        assert not getattr(image, "text", {})
        assert image.size == expected_size


@pytest.mark.usefixtures("settings")
@pytest.mark.parametrize("channel", ["api", "page"])
def test_every_hostile_file_is_refused_and_every_odd_one_normalised(
    channel, client, clinician, clinic, private_storage, monkeypatch
):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "uploads", "100000/min")
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    api = api_client_for(clinician) if channel == "api" else None
    if channel == "page":
        logged_in_client(client, clinician)
    problems, accepted = [], 0
    for specimen in CORPUS:
        upload = SimpleUploadedFile(specimen.filename, specimen.content, "image/jpeg")
        if channel == "api":
            response = api.post(
                "/api/v1/cases/", {"lesion": lesion.pk, "image": upload}, format="multipart"
            )
            ok = response.status_code in (200, 202)
            message = "" if ok else " ".join(response.json().get("image", []))
        else:
            response = client.post(
                "/cases/new/",
                {
                    "clinic": clinic.pk,
                    "patient": lesion.patient_id,
                    "lesion": lesion.pk,
                    "image": upload,
                    "image_type": "dermoscopic",
                },
            )
            ok = response.status_code == 302
            message = "" if ok else response.content.decode()
        if response.status_code >= 500:
            problems.append(f"{specimen.name}: server error {response.status_code}")
        elif specimen.hostile and ok:
            problems.append(f"{specimen.name}: accepted")
        elif specimen.hostile and not (400 <= response.status_code < 500 and message.strip()):
            problems.append(f"{specimen.name}: refused without a message")
        elif not specimen.hostile and not ok:
            problems.append(f"{specimen.name}: refused ({response.status_code})")
        accepted += ok
    assert not problems, "\n".join(problems)

    cases = list(Case.objects.filter(lesion=lesion))
    files = stored_files(private_storage)
    assert len(files) == len(cases) <= accepted  # duplicates of the same bytes are one case
    assert {str(p.relative_to(private_storage)) for p in files} == {c.image.name for c in cases}
    for case in cases:
        _stored_is_clean(private_storage / case.image.name, (case.width, case.height))


@pytest.mark.parametrize(
    "specimen", [s for s in CORPUS if s.name.startswith("exif-orientation-")], ids=lambda s: s.name
)
def test_exif_orientations_are_applied(specimen):
    clean = validate_image(SimpleUploadedFile(specimen.filename, specimen.content))
    with Image.open(io.BytesIO(clean.content)) as image:
        assert image.size == specimen.size
        # The marked (dark) corner of the upright image ends where the orientation puts it.
        corners = {
            "tl": image.getpixel((2, 2)),
            "tr": image.getpixel((image.width - 3, 2)),
            "bl": image.getpixel((2, image.height - 3)),
            "br": image.getpixel((image.width - 3, image.height - 3)),
        }
        dark = min(corners, key=lambda k: sum(corners[k]))
        orientation = int(specimen.name.rsplit("-", 1)[1])
        expected = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}
        assert dark == expected[orientation]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=4096),
        st.binary(max_size=4096).map(lambda b: b"\xff\xd8\xff" + b),
        st.binary(max_size=4096).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        st.sampled_from([s.content for s in CORPUS if len(s.content) < 200_000]).flatmap(
            lambda base: st.tuples(
                st.integers(0, max(len(base) - 1, 0)), st.binary(max_size=8)
            ).map(lambda cut: base[: cut[0]] + cut[1] + base[cut[0] + len(cut[1]) :])
        ),
    )
)
def test_any_bytes_give_a_clean_image_or_a_validation_error(content):
    try:
        clean = validate_image(SimpleUploadedFile("x.jpg", content))
    except ValidationError as refused:
        messages = refused.messages
    else:
        messages = None
    if messages is not None:
        assert messages
        assert all(m.strip() for m in messages)
        return
    assert isinstance(clean, CleanImage)
    with Image.open(io.BytesIO(clean.content)) as image:
        image.load()
        assert image.mode == "RGB"
        assert image.size == (clean.width, clean.height)


def test_a_jpeg_with_damaged_exif_is_refused_with_its_reason():
    """Found by the property test above on a fresh Hypothesis database: Pillow only warns about
    broken EXIF (so the orientation would silently be lost); the validator refuses it."""
    import struct

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 100, 50)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    # An IFD that promises two 12-byte entries and holds 6 bytes.
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + b"\x12\x01\x03\x00\x01\x00"
    payload = b"Exif\x00\x00" + tiff
    damaged = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
    with pytest.raises(ValidationError) as refused:
        validate_image(SimpleUploadedFile("photo.jpg", damaged))
    assert refused.value.code == "corrupt_metadata"
    assert "EXIF" in refused.value.messages[0]
