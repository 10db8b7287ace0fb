"""Upload validation: any bytes in, a clean 8-bit RGB image with no metadata out, or a clear error.

What is checked, in order: size limit, real content type (JPEG/PNG magic bytes, whatever the file
is called), pixel limit before decoding (decompression bombs), no animation, a full decode (not
only ``verify()``), EXIF orientation applied, colour converted to sRGB RGB, and re-encoded
without any metadata (EXIF, GPS, ICC, text chunks). The SHA-256 is of the uploaded bytes, so the
same file submitted twice for a lesion is recognised as one case.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageCms, ImageOps

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class CleanImage:
    content: bytes  # the re-encoded image to store
    extension: str  # "jpg" or "png"
    sha256: str  # of the uploaded bytes
    width: int
    height: int


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _sniff_format(head: bytes) -> str | None:
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    if head.startswith(PNG_MAGIC):
        return "PNG"
    return None


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, source, target, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # an unusable profile: keep the pixels as they are


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode -> 8-bit RGB; transparency composited over white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image, dtype=np.uint32)
        peak = 65535 if image.mode.startswith("I;16") or array.max() > 255 else 255
        array = (array * 255 // peak).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    elif image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float32)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    image = _to_srgb(image)
    return image.convert("RGB") if image.mode != "RGB" else image


def validate_image(upload) -> CleanImage:
    """Validate an uploaded file (Django ``UploadedFile`` or any object with ``read``/``size``).

    Raises ``ValidationError`` with a message a clinician can act on.
    """
    data = _read_bounded(upload, settings.UPLOAD_MAX_BYTES)
    image_format = _sniff_format(data[:8])
    if image_format is None:
        raise ValidationError(
            "Only JPEG and PNG images are accepted, and this file is neither "
            "(its content was checked, not its name).",
            code="unsupported_type",
        )
    if image_format == "PNG" and b"IEND\xaeB`\x82" not in data[-4096:]:
        raise _undecodable(image_format)  # the data may be whole, but the file was cut short
    rgb = _decode(data, image_format, max_pixels=settings.UPLOAD_MAX_PIXELS)
    buffer = io.BytesIO()
    if image_format == "JPEG":
        rgb.save(buffer, format="JPEG", quality=95, subsampling=0, optimize=True)
        extension = "jpg"
    else:
        rgb.save(buffer, format="PNG")
        extension = "png"
    return CleanImage(
        content=buffer.getvalue(),
        extension=extension,
        sha256=hashlib.sha256(data).hexdigest(),
        width=rgb.width,
        height=rgb.height,
    )


def _read_bounded(upload, max_bytes: int) -> bytes:
    """The upload's bytes, refused when larger than ``max_bytes`` (declared or read) or empty."""
    size = getattr(upload, "size", None)
    if size is not None and size > max_bytes:
        raise ValidationError(
            f"The file is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}.",
            code="too_large",
        )
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValidationError(
            f"The file is larger than the limit of {_megabytes(max_bytes)}.", code="too_large"
        )
    if not data:
        raise ValidationError("The file is empty.", code="empty")
    return data


def _undecodable(image_format: str) -> ValidationError:
    return ValidationError(
        f"The image could not be decoded: the {image_format} file is damaged or truncated.",
        code="corrupt",
    )


DAMAGED_METADATA = (
    "The image's EXIF metadata is damaged, so its orientation cannot be read. Export or "
    "save the image again (or remove its metadata) and upload it again."
)
BOMB = "The image has too many pixels to be processed safely (decompression bomb)."
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def _decode(data: bytes, image_format: str, *, max_pixels: int) -> Image.Image:
    """Verify, decode and orient the image, as RGB. Pillow only warns about broken EXIF and
    decompression bombs, and reads on; here they are clear refusals."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("error", message="Corrupt EXIF", category=UserWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[image_format]) as probe:
                probe.verify()  # structure and checksums; the full decode comes below
            image = Image.open(io.BytesIO(data), formats=[image_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValidationError(BOMB, code="too_many_pixels")
        except UserWarning:
            raise ValidationError(DAMAGED_METADATA, code="corrupt_metadata")
        except _DECODE_ERRORS:
            raise _undecodable(image_format)
        with image:
            _check_shape(image, image_format, max_pixels)
            try:
                image.load()  # the full decode: truncated or corrupt data fails here
                return _to_rgb(ImageOps.exif_transpose(image))
            except UserWarning:
                raise ValidationError(DAMAGED_METADATA, code="corrupt_metadata")
            except (*_DECODE_ERRORS, Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise _undecodable(image_format)


def _check_shape(image: Image.Image, image_format: str, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise _undecodable(image_format)
    if width * height > max_pixels:
        raise ValidationError(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels);"
            f" the limit is {max_pixels / 1e6:.0f} megapixels.",
            code="too_many_pixels",
        )
    if getattr(image, "is_animated", False):
        raise ValidationError(
            "Animated images are not accepted; upload a single still image.", code="animated"
        )
