import io
import zipfile

import pytest

from diagnosis.models import Case, Lesion, Patient
from tests import images
from tests.conftest import api_client_for, stored_files

pytestmark = pytest.mark.django_db


def make_zip(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    buffer.seek(0)
    buffer.name = "batch.zip"
    return buffer


MANIFEST = (
    "filename,patient,lesion,anatomic_site,captured_at,sex\n"
    "a.jpg,B-1,back,Trunk,2025-03-01T10:00:00Z,female\n"
    "b.png,B-1,back,Trunk,2025-09-01T10:00:00Z,female\n"
    "broken.jpg,B-2,arm,,,\n"
    "missing.jpg,B-3,leg,,,\n"
    "a.jpg,B-1,back,Trunk,,\n"
    "c.jpg,B-4,chest,Nowhere,,\n"
)


@pytest.mark.usefixtures("clinic")
def test_a_batch_reports_each_row_and_keeps_the_good_ones(clinician, private_storage):
    archive = make_zip(
        {
            "manifest.csv": MANIFEST.encode(),
            "a.jpg": images.jpeg_bytes(color=(200, 10, 10)),
            "b.png": images.png_bytes(),
            "broken.jpg": images.jpeg_bytes(size=(300, 300))[:300],
            "c.jpg": images.jpeg_bytes(color=(10, 200, 10)),
        }
    )
    response = api_client_for(clinician).post(
        "/api/v1/cases/bulk/", {"archive": archive}, format="multipart"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["duplicates"], body["errors"]) == (2, 1, 3)
    by_row = {r["row"]: r for r in body["rows"]}
    assert by_row[2]["status"] == by_row[3]["status"] == "created"
    assert "damaged or truncated" in " ".join(by_row[4]["errors"])
    assert "not in the archive" in " ".join(by_row[5]["errors"])
    assert by_row[6]["status"] == "duplicate"
    assert by_row[6]["case"] == by_row[2]["case"]
    assert "anatomic_site" in " ".join(by_row[7]["errors"])
    # Rows are independent and a refused row leaves nothing behind.
    assert Case.objects.count() == 2
    assert set(Patient.objects.values_list("identifier", flat=True)) == {"B-1"}
    assert Lesion.objects.count() == 1
    assert len(stored_files(private_storage)) == 2


@pytest.mark.usefixtures("clinic")
def test_the_manifest_may_come_beside_the_zip(
    clinician,
):
    archive = make_zip({"x.jpg": images.jpeg_bytes()})
    manifest = io.BytesIO(b"filename,patient,lesion\nx.jpg,S-1,nose\n")
    manifest.name = "manifest.csv"
    response = api_client_for(clinician).post(
        "/api/v1/cases/bulk/", {"archive": archive, "manifest": manifest}, format="multipart"
    )
    assert response.json()["created"] == 1


@pytest.mark.usefixtures("clinic")
@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (io.BytesIO(b"not a zip"), "not a readable ZIP"),
        (make_zip({"x.jpg": b"x"}), "not in the archive"),
        (make_zip({"manifest.csv": b"name,who\nx,y\n"}), "lacks the column"),
    ],
)
def test_an_unusable_batch_is_refused_whole(clinician, archive, message):
    archive.name = "batch.zip"
    response = api_client_for(clinician).post(
        "/api/v1/cases/bulk/", {"archive": archive}, format="multipart"
    )
    assert response.status_code == 400
    assert message in str(response.json())
    assert Case.objects.count() == 0


@pytest.mark.usefixtures("clinic")
def test_path_traversal_names_are_only_names(clinician, private_storage):
    archive = make_zip(
        {
            "manifest.csv": b"filename,patient,lesion\n../../etc/evil.jpg,T-1,x\n",
            "../../etc/evil.jpg": images.jpeg_bytes(),
        }
    )
    response = api_client_for(clinician).post(
        "/api/v1/cases/bulk/", {"archive": archive}, format="multipart"
    )
    assert response.json()["created"] == 1
    assert all("evil" not in p.name for p in stored_files(private_storage))
