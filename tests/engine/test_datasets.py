import csv
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ml.engine.data.checks import check_images, limit_per_class
from ml.engine.data.datasets import SkinLesionDataset, collate_skipping_failures
from ml.engine.data.labels import LabelMapper
from ml.engine.data.readers import read_samples
from ml.engine.model.taxonomy import ISIC2019_CLASSES, parse_class_spec
from ml.engine.model.transforms import default_preprocessing, eval_transform, train_transform
from tests import images

CODES = [c.code for c in ISIC2019_CLASSES]


def code_of(sample) -> str:
    return CODES[sample.label]


def write_image(path: Path, color=(160, 90, 70), size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def ham_folder(tmp_path):
    root = tmp_path / "ham"
    rows = [
        ["ISIC_1", "mel", "HAM_1", "mel"],
        ["ISIC_2", "nv", "HAM_2", "nv"],
        ["ISIC_3", "nv", "HAM_2", "nv"],  # a second image of lesion HAM_2
        ["ISIC_4", "akiec", "HAM_3", "scc"],  # ISIC 2019 says SCC
        ["ISIC_5", "akiec", "HAM_4", ""],  # no ISIC 2019 label: dx akiec -> AK
        ["ISIC_6", "vasc", "HAM_5", "vasc"],
        ["ISIC_7", "bkl", "HAM_6", "bkl"],  # no image file
        ["ISIC_8", "xyz", "HAM_7", ""],  # not a diagnosis
    ]
    write_csv(root / "labels.csv", ["image_id", "dx", "lesion_id", "dx_isic2019"], rows)
    for image_id, *_ in rows:
        if image_id != "ISIC_7":
            write_image(root / "images" / f"{image_id}.jpg")
    return root


def test_ham10000_reader_maps_dx_into_the_isic_2019_classes(ham_folder):
    result = read_samples(ham_folder, "ham10000")
    by_id = {s.path.stem: s for s in result.samples}
    assert {k: code_of(s) for k, s in by_id.items()} == {
        "ISIC_1": "MEL",
        "ISIC_2": "NV",
        "ISIC_3": "NV",
        "ISIC_4": "SCC",
        "ISIC_5": "AK",
        "ISIC_6": "VASC",
    }
    assert by_id["ISIC_2"].lesion_id == by_id["ISIC_3"].lesion_id == "HAM_2"
    assert by_id["ISIC_4"].source_label == "scc"
    assert by_id["ISIC_5"].source_label == "akiec"
    assert by_id["ISIC_1"].patient_id is None
    reasons = {p.item: p.reason for p in result.skipped}
    assert reasons["ISIC_7"] == "image file not found"
    assert "maps to no class" in reasons["ISIC_8"]
    assert result.summary()["skipped"] == 2
    assert result.class_counts()["NV"] == 2


def test_the_malignant_target_follows_the_category_of_the_class(ham_folder):
    result = read_samples(ham_folder, "ham10000")
    dataset = SkinLesionDataset(
        result.samples, result.classes, eval_transform(default_preprocessing(32))
    )
    targets = {s.path.stem: dataset[i][2] for i, s in enumerate(result.samples)}
    # MEL and SCC are malignant; AK (indeterminate), NV and VASC are not.
    assert targets == {
        "ISIC_1": 1.0,
        "ISIC_2": 0.0,
        "ISIC_3": 0.0,
        "ISIC_4": 1.0,
        "ISIC_5": 0.0,
        "ISIC_6": 0.0,
    }


def test_isic2019_ground_truth_with_metadata_gives_lesion_ids(tmp_path):
    root = tmp_path / "isic2019"
    header = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    one_hot = {code: [1.0 if c == code else 0.0 for c in header[1:]] for code in header[1:]}
    rows = [
        ["ISIC_0000000", *one_hot["NV"]],
        ["ISIC_0000001_downsampled", *one_hot["BCC"]],
        ["ISIC_0000002", *one_hot["UNK"]],
        ["ISIC_0000003", *one_hot["DF"]],
    ]
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", header, rows)
    write_csv(
        root / "ISIC_2019_Training_Metadata.csv",
        ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
        [
            ["ISIC_0000000", "55", "trunk", "BCN_0001", "male"],
            ["ISIC_0000001_downsampled", "60", "", "", "female"],
            ["ISIC_0000003", "30", "", "BCN_0001", "male"],
        ],
    )
    for image_id, *_ in rows:
        write_image(root / "ISIC_2019_Training_Input" / f"{image_id}.jpg")

    result = read_samples(root, "isic2019")
    assert [(s.path.stem, code_of(s), s.lesion_id) for s in result.samples] == [
        ("ISIC_0000000", "NV", "BCN_0001"),
        ("ISIC_0000001_downsampled", "BCC", "image:ISIC_0000001_downsampled"),
        ("ISIC_0000003", "DF", "BCN_0001"),
    ]
    assert [p.item for p in result.skipped] == ["ISIC_0000002"]  # UNK is no class


def test_isic2020_ground_truth_is_read_with_patients(tmp_path):
    root = tmp_path / "isic2020"
    header = ["image_name", "patient_id", "lesion_id", "diagnosis", "benign_malignant", "target"]
    rows = [
        ["ISIC_2637011", "IP_7279968", "IL_7972535", "nevus", "benign", "0"],
        ["ISIC_0015719", "IP_3075186", "IL_4649854", "melanoma", "malignant", "1"],
        ["ISIC_0052212", "IP_2842074", "IL_9087444", "unknown", "benign", "0"],
    ]
    write_csv(root / "ISIC_2020_Training_GroundTruth_v2.csv", header, rows)
    for image_id, *_ in rows:
        write_image(root / "train" / f"{image_id}.jpg")
    result = read_samples(root, "isic2019")
    assert [(code_of(s), s.patient_id) for s in result.samples] == [
        ("NV", "IP_7279968"),
        ("MEL", "IP_3075186"),
    ]
    assert len(result.skipped) == 1


def test_isic_archive_metadata_is_mapped_through_the_diagnosis_hierarchy(tmp_path):
    root = tmp_path / "archive"
    header = ["isic_id", "diagnosis_1", "diagnosis_2", "diagnosis_3", "lesion_id", "patient_id"]
    rows = [
        ["ISIC_1", "Benign", "Benign melanocytic proliferations", "Nevus", "IL_1", "IP_1"],
        [
            "ISIC_2",
            "Malignant",
            "Malignant epidermal proliferations",
            "Squamous cell carcinoma in situ",
            "IL_2",
            "IP_1",
        ],
        ["ISIC_3", "Benign", "Benign epidermal proliferations", "Solar lentigo", "IL_3", ""],
        ["ISIC_4", "Indeterminate", "Indeterminate epidermal proliferations", "", "IL_4", ""],
        ["ISIC_5", "Benign", "", "", "IL_5", ""],  # too coarse for the class list
        ["ISIC_6", "Benign", "Cysts", "Milium", "IL_6", ""],  # no class of the eight
    ]
    write_csv(root / "metadata.csv", header, rows)
    for image_id, *_ in rows:
        write_image(root / f"{image_id}.jpg")
    result = read_samples(root, "isic-archive")
    assert [(s.path.stem, code_of(s)) for s in result.samples] == [
        ("ISIC_1", "NV"),
        ("ISIC_2", "SCC"),  # in situ SCC belongs to the challenge's SCC
        ("ISIC_3", "BKL"),
        ("ISIC_4", "AK"),
    ]
    assert result.samples[0].patient_id == result.samples[1].patient_id == "IP_1"
    assert sorted(p.item for p in result.skipped) == ["ISIC_5", "ISIC_6"]


def test_isic_archive_legacy_diagnosis_column(tmp_path):
    root = tmp_path / "legacy"
    write_csv(
        root / "metadata.csv",
        ["isic_id", "diagnosis", "lesion_id"],
        [["ISIC_1", "seborrheic keratosis", ""], ["ISIC_2", "melanoma", "IL_2"]],
    )
    write_image(root / "images" / "ISIC_1.jpg")
    write_image(root / "images" / "ISIC_2.jpg")
    result = read_samples(root, "isic-archive")
    assert [code_of(s) for s in result.samples] == ["BKL", "MEL"]


def test_folder_per_class_accepts_codes_ham_codes_and_isic_terms(tmp_path):
    root = tmp_path / "folders"
    write_image(root / "MEL" / "a.jpg")
    write_image(root / "akiec" / "b.png")
    write_image(root / "Seborrheic keratosis" / "c.jpg")
    write_image(root / "Benign melanocytic proliferations:Nevus" / "d.jpg")
    write_image(root / "not a class" / "e.jpg")
    (root / "MEL" / "notes.txt").write_text("not an image")
    result = read_samples(root, "folder")
    assert sorted((s.path.name, code_of(s)) for s in result.samples) == [
        ("a.jpg", "MEL"),
        ("b.png", "AK"),
        ("c.jpg", "BKL"),
        ("d.jpg", "NV"),
    ]
    assert result.skipped[0].item == "not a class"
    assert all(s.lesion_id.startswith("image:") for s in result.samples)


def test_a_custom_class_list_maps_by_the_most_specific_class():
    classes = parse_class_spec(
        ["MEL,Melanoma in situ", "NEV,Nevus", "SK,Seborrheic keratosis", "BEN,Benign"]
    )
    mapper = LabelMapper(classes)
    assert mapper.index("Seborrheic keratosis") == 2
    assert mapper.index("Solar lentigo") == 3  # only "Benign" contains it
    assert mapper.index("Blue nevus, Cellular") == 1
    assert mapper.index("Melanoma Invasive") is None  # invasive is not "in situ"
    assert mapper.index("nev") == 1  # class codes, case-insensitively


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown data format"):
        read_samples(tmp_path, "dicom")


def test_unreadable_images_are_counted_listed_and_skipped(tmp_path):
    root = tmp_path / "folders"
    good = [write_image(root / "NV" / f"{i}.jpg") for i in range(3)]
    (root / "NV" / "truncated.jpg").write_bytes(images.jpeg_bytes(size=(64, 64))[:200])
    (root / "NV" / "text.jpg").write_text("this is not a JPEG")
    result = read_samples(root, "folder")
    assert len(result.samples) == 5

    ok, problems = check_images(result.samples)
    assert sorted(s.path for s in ok) == sorted(good)
    assert len(problems) == 2
    assert {Path(p.item).name for p in problems} == {"truncated.jpg", "text.jpg"}


def test_a_batch_goes_on_without_an_image_that_fails_to_decode(tmp_path):
    root = tmp_path / "folders"
    for i in range(3):
        write_image(root / "MEL" / f"{i}.jpg", size=(50, 40))
    (root / "MEL" / "3.jpg").write_text("broken")
    result = read_samples(root, "folder")
    dataset = SkinLesionDataset(
        result.samples, result.classes, train_transform(default_preprocessing(32))
    )
    broken = next(i for i, s in enumerate(result.samples) if s.path.name == "3.jpg")
    assert dataset[broken] is None
    assert len(dataset.failures) == 1

    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_skipping_failures)
    batches = list(loader)
    images_, labels, malignant = batches[0]
    assert images_.shape == (3, 3, 32, 32)
    assert images_.dtype == torch.float32
    assert labels.tolist() == [0, 0, 0]
    assert malignant.dtype == torch.float32
    assert malignant.tolist() == [1.0, 1.0, 1.0]
    assert collate_skipping_failures([None, None]) is None


def test_train_transform_keeps_colour_and_the_eval_preset_is_deterministic():
    image = Image.new("RGB", (90, 70), (200, 40, 40))
    preprocessing = default_preprocessing(48)
    augmented = train_transform(preprocessing)(image)
    assert augmented.shape == (3, 48, 48)
    # Red stays redder than green and blue: no grayscale anywhere in the pipeline.
    assert augmented[0].mean() > augmented[1].mean()
    assert augmented[0].mean() > augmented[2].mean()
    evaluated = eval_transform(preprocessing)
    assert torch.equal(evaluated(image), evaluated(image))


def test_limit_per_class_is_seeded_and_keeps_order(ham_folder):
    samples = read_samples(ham_folder, "ham10000").samples
    limited = limit_per_class(samples, 1, seed=3)
    assert limited == limit_per_class(samples, 1, seed=3)
    assert len(limited) == 5  # one per class present
    assert [samples.index(s) for s in limited] == sorted(samples.index(s) for s in limited)


@pytest.mark.shared_data
def test_the_isic_sample_reads_as_ham10000_with_the_isic_2019_split_of_akiec():
    if not images.sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
    result = read_samples(images.SAMPLE_DIR, "ham10000")
    assert len(result.samples) == 2461
    assert not result.skipped
    # The counts of the sample's SOURCE.md: akiec 183 = AK 69 + SCC 114.
    assert result.class_counts() == {
        "MEL": 491,
        "NV": 800,
        "BCC": 264,
        "AK": 69,
        "BKL": 583,
        "DF": 60,
        "VASC": 80,
        "SCC": 114,
    }
    folder = (images.SAMPLE_DIR / "images").resolve()  # ../shared may be a symbolic link
    assert all(s.path.parent.resolve() == folder for s in result.samples)
