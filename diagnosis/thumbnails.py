"""Small JPEG copies of case images for pages that show many of them (timelines, lists).

A case's image never changes, so a thumbnail is made once, on first request, and kept under
``PRIVATE_MEDIA_ROOT/thumbnails``, named by the image's SHA-256 and the size: the same bytes
give the same thumbnail, whichever case (and clinic) they belong to. Access is checked by the
view on the case, never by the file name. Pillow only: no torch in the web process.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from django.conf import settings
from PIL import Image, ImageOps

# A fixed, small set: any size would let a client fill the disk with variants.
THUMBNAIL_SIZES = (256, 768)
LIST_THUMBNAIL_SIZE = 256
JPEG_QUALITY = 85


class ThumbnailError(Exception):
    """The stored original could not be read."""


def thumbnail_root() -> Path:
    return Path(settings.PRIVATE_MEDIA_ROOT) / "thumbnails"


def thumbnail_path(*, sha256: str, size: int) -> Path:
    if size not in THUMBNAIL_SIZES:
        raise ValueError(f"thumbnail size {size} is not one of {THUMBNAIL_SIZES}")
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError("not a SHA-256 hex digest")  # never a path from elsewhere
    return thumbnail_root() / sha256[:2] / f"{sha256}-{size}.jpg"


def etag_for(*, sha256: str, size: int) -> str:
    return f'"{sha256}-{size}"'


def render_thumbnail(handle, *, size: int) -> bytes:
    """JPEG bytes of the image in ``handle``, fitted inside size×size (aspect kept, never
    enlarged), RGB, without any metadata."""
    with Image.open(handle) as image:
        if image.format == "JPEG":
            # Decode at a reduced scale (1/2, 1/4, 1/8) when the original is much larger.
            image.draft("RGB", (size, size))
        image = ImageOps.exif_transpose(image)
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if image.mode != "RGB":
            image = image.convert("RGB")
        buffer = io.BytesIO()
        # No exif/icc_profile arguments: nothing but pixels is written.
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return buffer.getvalue()


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".thumb-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(temporary, path)  # readers see the old state or the whole file, never half
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def case_thumbnail(case, *, size: int) -> Path:
    """The path of the case's thumbnail of this size, made (once) if it is not there yet."""
    path = thumbnail_path(sha256=case.image_sha256, size=size)
    if path.is_file():
        return path
    try:
        with case.image.open("rb") as handle:
            content = render_thumbnail(handle, size=size)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"the stored image could not be read: {exc}") from exc
    _write_atomically(path, content)
    return path
