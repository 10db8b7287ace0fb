"""Opening images for the model: JPEG draft-mode decoding of large images, and its parity with
a full decode through the eval preset and a real model."""

import io

import pytest
import torch
from PIL import Image

from ml.engine.data.images import draft_size, open_for_model
from ml.engine.model.transforms import default_preprocessing, eval_transform
from ml.engine.serve.torch_predictor import Predictor
from tests import images
from tests.conftest import small_checkpoint

PREPROCESSING = default_preprocessing(224)  # resize 256, crop 224


def test_draft_size_keeps_the_shorter_side_at_the_resize_target():
    assert draft_size(600, 450, 256) is None  # too small to scale even by 1/2
    assert draft_size(4000, 3000, 256) == (342, 256)
    assert draft_size(3000, 4000, 256) == (256, 342)
    assert draft_size(512, 512, 256) == (256, 256)


def jpeg(image: Image.Image, **kwargs) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **kwargs)
    buffer.seek(0)
    return buffer


@pytest.fixture
def large_dermoscopy_jpegs():
    """Real ISIC images blown up to phone-photo sizes (4000×3000 and 3000×4000)."""
    if not images.sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
    rows = images.sample_rows(4)
    out = []
    for index, row in enumerate(rows):
        with Image.open(images.sample_image_path(row["image_id"])) as small:
            size = (4000, 3000) if index % 2 == 0 else (3000, 4000)
            out.append(jpeg(small.convert("RGB").resize(size, Image.Resampling.BICUBIC)))
    return out


@pytest.mark.shared_data
def test_large_jpegs_decode_in_draft_mode_and_match_the_full_decode(large_dermoscopy_jpegs):
    transform = eval_transform(PREPROCESSING)
    predictor = Predictor(small_checkpoint(preprocessing=PREPROCESSING))
    worst_pixel, worst_probability = 0.0, 0.0
    for buffer in large_dermoscopy_jpegs:
        full = open_for_model(io.BytesIO(buffer.getvalue()), PREPROCESSING, draft=False)
        fast = open_for_model(io.BytesIO(buffer.getvalue()), PREPROCESSING)
        assert max(full.size) in (4000,)
        assert min(fast.size) >= 256
        assert max(fast.size) < 1000
        assert fast.mode == "RGB"
        # The same aspect (the heatmap overlay is laid over the shown image).
        assert abs(fast.width / fast.height - full.width / full.height) < 0.01
        # Model inputs: normalised tensors; compare in [0, 1] pixel units.
        std = torch.tensor(PREPROCESSING["std"]).view(3, 1, 1)
        difference = ((transform(full) - transform(fast)) * std).abs()
        worst_pixel = max(worst_pixel, float(difference.mean()))
        a, b = predictor.predict(full), predictor.predict(fast)
        probabilities = [
            abs(a.diagnosis_probabilities[c] - b.diagnosis_probabilities[c])
            for c in predictor.codes
        ]
        probabilities.append(abs(a.malignant_probability - b.malignant_probability))
        worst_probability = max(worst_probability, max(probabilities))
    print(f"\ndraft vs full: mean |pixel| {worst_pixel:.4f}, max |p| {worst_probability:.4f}")
    assert worst_pixel < 0.01
    assert worst_probability < 0.01


def test_small_and_png_images_are_decoded_in_full():
    small = jpeg(Image.new("RGB", (600, 450), (150, 90, 70)))
    assert open_for_model(small, PREPROCESSING).size == (600, 450)
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (150, 90, 70)).save(buffer, "PNG")
    buffer.seek(0)
    assert open_for_model(buffer, PREPROCESSING).size == (4000, 3000)
    grey = jpeg(Image.new("L", (2000, 1500), 128))
    opened = open_for_model(grey, PREPROCESSING)
    assert opened.mode == "RGB"
    assert min(opened.size) >= 256
    assert opened.size != (2000, 1500)
