import io

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from diagnosis.validation import validate_image
from tests import images
from tests.conftest import upload


def decode(clean) -> Image.Image:
    image = Image.open(io.BytesIO(clean.content))
    image.load()
    return image


def test_a_jpeg_is_accepted_as_8_bit_rgb_with_its_hash():
    content = images.jpeg_bytes(size=(64, 48))
    clean = validate_image(upload(content))
    assert (clean.width, clean.height, clean.extension) == (64, 48, "jpg")
    assert decode(clean).mode == "RGB"
    import hashlib

    assert clean.sha256 == hashlib.sha256(content).hexdigest()


def test_a_real_dermoscopy_image_is_accepted(sample_jpeg_bytes):
    clean = validate_image(upload(sample_jpeg_bytes))
    assert (clean.width, clean.height) == (224, 224)


def test_a_png_is_accepted_and_stays_png():
    clean = validate_image(upload(images.png_bytes(), "x.png", "image/png"))
    assert clean.extension == "png"
    assert decode(clean).format == "PNG"


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_a_truncated_jpeg_is_refused(cut, sample_jpeg_bytes):
    content = sample_jpeg_bytes[: int(len(sample_jpeg_bytes) * cut)]
    with pytest.raises(ValidationError, match="damaged or truncated"):
        validate_image(upload(content))


def test_a_truncated_png_is_refused():
    content = images.png_bytes(size=(300, 300))
    with pytest.raises(ValidationError, match="damaged or truncated"):
        validate_image(upload(content[: len(content) // 2], "x.png"))


def test_a_png_decompression_bomb_is_refused():
    bomb = images.png_bomb()
    assert len(bomb) < 100_000
    with pytest.raises(ValidationError) as refused:
        validate_image(upload(bomb, "bomb.png", "image/png"))
    assert "pixels" in str(refused.value)


def test_an_image_over_the_pixel_limit_is_refused(settings):
    settings.UPLOAD_MAX_PIXELS = 1000
    with pytest.raises(ValidationError, match="megapixels"):
        validate_image(upload(images.jpeg_bytes(size=(100, 100))))


def test_a_text_file_named_jpg_is_refused():
    with pytest.raises(ValidationError, match="Only JPEG and PNG"):
        validate_image(upload(b"<html><script>alert(1)</script></html>", "photo.jpg"))


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_other_image_formats_are_refused_whatever_their_name(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format=fmt)
    with pytest.raises(ValidationError, match="Only JPEG and PNG"):
        validate_image(upload(buffer.getvalue(), "photo.jpg"))


def test_an_empty_file_is_refused():
    with pytest.raises(ValidationError, match="empty"):
        validate_image(upload(b"", "x.jpg"))


def test_a_25_mb_file_is_refused_with_the_limit_in_the_message():
    content = b"\xff\xd8\xff"
    with pytest.raises(ValidationError, match="limit is 20.0 MB"):
        validate_image(upload(content + b"\0" * (25 * 1024 * 1024)))


def test_an_animated_png_is_refused():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(ValidationError, match="Animated"):
        validate_image(upload(buffer.getvalue(), "a.png"))


def test_exif_orientation_is_applied_and_all_metadata_is_stripped():
    source = Image.open(io.BytesIO(images.gradient_jpeg(size=(120, 80))))
    exif = source.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    gps = exif.get_ifd(0x8825)
    gps[2] = (48.0, 12.0, 30.0)  # GPSLatitude
    gps[1] = "N"
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", exif=exif, quality=95)
    assert b"Exif" in buffer.getvalue()

    clean = validate_image(upload(buffer.getvalue()))
    stored = decode(clean)
    assert (clean.width, clean.height) == (80, 120)  # portrait after rotation
    # Rotated 90° clockwise, the dark left half is now on top.
    assert stored.getpixel((40, 10))[0] < 60
    assert stored.getpixel((40, 110))[0] > 200
    assert not stored.getexif()
    assert b"Exif" not in clean.content
    assert b"GPS" not in clean.content
    assert "icc_profile" not in stored.info


def test_png_text_chunks_are_stripped():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "Jane Doe, MRN 12345")
    clean = validate_image(upload(images.png_bytes(pnginfo=info), "x.png"))
    assert b"Jane Doe" not in clean.content
    assert not decode(clean).text


@pytest.mark.parametrize(
    ("mode", "color"),
    [("L", 128), ("CMYK", (0, 128, 128, 0)), ("I;16", 40000), ("P", 3), ("RGBA", (10, 20, 30, 0))],
)
def test_odd_colour_modes_become_8_bit_rgb(mode, color):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buffer = io.BytesIO()
    image = Image.new(mode, (16, 16), color)
    kwargs = {}
    if mode == "P":  # palette + transparency: index 3 transparent, index 5 opaque
        image.putpalette([i % 256 for i in range(768)])
        image.paste(5, (8, 0, 16, 16))
        kwargs = {"transparency": 3}
    image.save(buffer, format=fmt, **kwargs)
    clean = validate_image(upload(buffer.getvalue(), "x." + fmt.lower()))
    stored = decode(clean)
    assert stored.mode == "RGB"
    if mode == "RGBA" or mode == "P":  # fully transparent: composited over white
        assert stored.getpixel((5, 5)) == (255, 255, 255)
    if mode == "I;16":
        assert abs(stored.getpixel((5, 5))[0] - 40000 * 255 // 65535) <= 1
