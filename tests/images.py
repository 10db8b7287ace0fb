"""Image files made in the tests, and the real ISIC sample (read from ../shared, never copied)."""

import csv
import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE_DIR = Path(os.environ.get("ISIC_SAMPLE_DIR", SHARED / "data" / "isic-sample"))


def sample_available() -> bool:
    return (SAMPLE_DIR / "labels.csv").is_file()


def sample_rows(limit: int | None = None) -> list[dict]:
    with open(SAMPLE_DIR / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit else rows


def sample_image_path(image_id: str | None = None) -> Path:
    image_id = image_id or sample_rows(1)[0]["image_id"]
    return SAMPLE_DIR / "images" / f"{image_id}.jpg"


def jpeg_bytes(size=(64, 48), color=(180, 90, 60), **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", **save_kwargs)
    return buffer.getvalue()


def png_bytes(size=(64, 48), mode="RGB", color=(20, 120, 200), **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG", **save_kwargs)
    return buffer.getvalue()


def gradient_jpeg(size=(120, 80)) -> bytes:
    """An image whose orientation can be recognised: left half dark, right half bright."""
    image = Image.new("RGB", size, (10, 10, 10))
    image.paste((240, 240, 240), (size[0] // 2, 0, size[0], size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png_bomb(width=100_000, height=100_000) -> bytes:
    """A tiny PNG that declares a huge canvas: all-zero rows compress to almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(2000)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def upload(content: bytes, name: str = "image.jpg", content_type: str = "image/jpeg"):
    """Bytes as the uploaded file a form or the API receives."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type=content_type)


def needs_sample() -> None:
    """Skip the calling test when the ISIC sample is absent."""
    import pytest

    if not sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
