"""A generated corpus of hostile and odd upload files (none are stored in the repository).

``corpus()`` yields ``(name, filename, content, kind)`` where kind is "hostile" (must be refused
with a 4xx and a message) or "legit" (must be accepted and normalised), plus for legit files the
expected orientation marker.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, ImageCms

from tests import images


@dataclass(frozen=True)
class Specimen:
    name: str
    filename: str
    content: bytes
    hostile: bool
    # For legit files: the stored image's (width, height) after orientation, when known.
    size: tuple[int, int] | None = None


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _marked(width=60, height=40) -> Image.Image:
    """A landscape image whose top-left quarter is dark, so orientation can be checked."""
    image = Image.new("RGB", (width, height), (230, 230, 230))
    image.paste((10, 10, 10), (0, 0, width // 2, height // 2))
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _jpeg_with_dimensions(width: int, height: int) -> bytes:
    """A real JPEG whose SOF header is rewritten to claim other dimensions."""
    data = bytearray(images.jpeg_bytes(size=(16, 16)))
    marker = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, marker + 5, height, width)
    return bytes(data)


def _garbage_and_truncated() -> list[Specimen]:
    """Empty, tiny and garbage files; truncated at many points."""
    out: list[Specimen] = []
    add = out.append
    add(Specimen("empty", "empty.jpg", b"", True))
    for i, byte in enumerate([b"\x00", b"\xff", b"A", b"\x89"]):
        add(Specimen(f"one-byte-{i}", "x.jpg", byte, True))
    add(Specimen("jpeg-magic-only", "m.jpg", b"\xff\xd8\xff", True))
    add(Specimen("png-magic-only", "m.png", b"\x89PNG\r\n\x1a\n", True))

    # Truncated at many points.
    jpeg = images.jpeg_bytes(size=(200, 150), quality=90)
    png = images.png_bytes(size=(200, 150))
    for fraction in [i / 50 for i in range(1, 50)]:
        add(
            Specimen(f"jpeg-cut-{fraction:.2f}", "cut.jpg", jpeg[: int(len(jpeg) * fraction)], True)
        )
    for fraction in [i / 50 for i in range(1, 50)]:
        add(Specimen(f"png-cut-{fraction:.2f}", "cut.png", png[: int(len(png) * fraction)], True))
    return out


def _magic_then_garbage() -> list[Specimen]:
    """Right magic bytes, garbage after them."""
    out: list[Specimen] = []
    add = out.append
    import random

    noise = random.Random(20261125)
    for i in range(20):
        add(
            Specimen(
                f"jpeg-magic-garbage-{i}",
                "g.jpg",
                b"\xff\xd8\xff" + noise.randbytes(noise.randint(10, 5000)),
                True,
            )
        )
    for i in range(10):
        add(
            Specimen(
                f"png-magic-garbage-{i}",
                "g.png",
                b"\x89PNG\r\n\x1a\n" + noise.randbytes(noise.randint(10, 5000)),
                True,
            )
        )
    return out


def _bombs() -> list[Specimen]:
    """Decompression bombs and huge dimensions."""
    out: list[Specimen] = []
    add = out.append
    for side in (20_000, 50_000, 100_000):
        add(Specimen(f"png-bomb-{side}", "bomb.png", images.png_bomb(side, side), True))
    for width, height in [(65_000, 65_000), (60_000, 1_000), (10_000, 10_000)]:
        add(
            Specimen(
                f"jpeg-claims-{width}x{height}",
                "big.jpg",
                _jpeg_with_dimensions(width, height),
                True,
            )
        )
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    text_bomb = _png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"\x00" * 50_000_000, 9))
    add(
        Specimen(
            "png-ztxt-bomb",
            "t.png",
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", header)
            + text_bomb
            + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00"))
            + _png_chunk(b"IEND", b""),
            True,
        )
    )
    return out


def _other_formats() -> list[Specimen]:
    """Other formats, whatever their name says."""
    out: list[Specimen] = []
    add = out.append
    small = Image.new("RGB", (16, 16), (120, 30, 30))
    add(Specimen("html", "page.jpg", b"<!doctype html><script>alert(1)</script>", True))
    add(
        Specimen(
            "svg", "img.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', True
        )
    )
    add(Specimen("pdf", "doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", True))
    add(Specimen("eps", "x.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", True))
    add(Specimen("psd", "x.jpg", b"8BPS\x00\x01" + b"\x00" * 40, True))
    add(Specimen("tiff", "x.jpg", _save(small, "TIFF"), True))
    add(Specimen("bmp", "x.png", _save(small, "BMP"), True))
    add(Specimen("webp", "x.jpg", _save(small, "WEBP"), True))
    add(Specimen("gif", "x.jpg", _save(small.convert("P"), "GIF"), True))
    add(
        Specimen(
            "gif-js-polyglot", "x.jpg", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1);", True
        )
    )
    add(Specimen("zip", "x.jpg", b"PK\x03\x04" + b"\x00" * 30, True))
    add(Specimen("exe", "x.png", b"MZ\x90\x00" + b"\x00" * 60, True))
    return out


def _animations() -> list[Specimen]:
    """Animations."""
    out: list[Specimen] = []
    add = out.append
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    add(
        Specimen(
            "animated-gif",
            "a.jpg",
            _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
            True,
        )
    )
    add(
        Specimen(
            "apng", "a.png", _save(frames[0], "PNG", save_all=True, append_images=frames[1:]), True
        )
    )
    add(
        Specimen(
            "animated-webp",
            "a.jpg",
            _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
            True,
        )
    )
    return out


def _odd_but_legitimate() -> list[Specimen]:
    """Legitimate odd files: accepted and normalised."""
    out: list[Specimen] = []
    add = out.append
    marked = _marked()
    add(Specimen("cmyk-jpeg", "cmyk.jpg", _save(marked.convert("CMYK"), "JPEG"), False, (60, 40)))
    sixteen = Image.new("I;16", (60, 40), 30000)
    add(Specimen("png-16-bit-grey", "g16.png", _save(sixteen, "PNG"), False, (60, 40)))
    palette = marked.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    add(
        Specimen(
            "palette-transparency", "p.png", _save(palette, "PNG", transparency=0), False, (60, 40)
        )
    )
    add(Specimen("greyscale-jpeg", "g.jpg", _save(marked.convert("L"), "JPEG"), False, (60, 40)))
    add(
        Specimen(
            "greyscale-alpha-png", "la.png", _save(marked.convert("LA"), "PNG"), False, (60, 40)
        )
    )
    add(Specimen("rgba-png", "rgba.png", _save(marked.convert("RGBA"), "PNG"), False, (60, 40)))
    add(
        Specimen(
            "one-pixel-jpeg",
            "1.jpg",
            _save(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"),
            False,
            (1, 1),
        )
    )
    add(
        Specimen(
            "one-pixel-png",
            "1.png",
            _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
            False,
            (1, 1),
        )
    )
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    add(Specimen("icc-profile", "icc.jpg", _save(marked, "JPEG", icc_profile=icc), False, (60, 40)))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        rotated = orientation in (5, 6, 7, 8)
        add(
            Specimen(
                f"exif-orientation-{orientation}",
                f"o{orientation}.jpg",
                _save(marked, "JPEG", exif=exif.tobytes(), quality=95),
                False,
                (40, 60) if rotated else (60, 40),
            )
        )
    gps_exif = Image.Exif()
    gps = gps_exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 12.0, 30.0), "E", (16.0, 22.0, 5.0)
    gps_exif[0x010F] = "PhoneMaker"
    add(
        Specimen(
            "exif-gps", "gps.jpg", _save(marked, "JPEG", exif=gps_exif.tobytes()), False, (60, 40)
        )
    )
    add(
        Specimen(
            "jpeg-with-trailing-html",
            "poly.jpg",
            _save(marked, "JPEG") + b"<html><script>alert(1)</script></html>",
            False,
            (60, 40),
        )
    )
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient Jane Doe")
    info.add_itxt("Description", "MRN 12345")
    add(Specimen("png-text-chunks", "t.png", _save(marked, "PNG", pnginfo=info), False, (60, 40)))
    traversal = [
        "../../etc/passwd.jpg",
        "..\\..\\windows\\win.ini.jpg",
        "/etc/shadow.jpg",
        "a/b/../../../c.jpg",
        "%2e%2e%2fx.jpg",
        "x.jpg\x00.png",
    ]
    for i, name in enumerate(traversal):
        add(
            Specimen(
                f"traversal-{i}", name, _save(_marked(), "JPEG", quality=80 + i), False, (60, 40)
            )
        )
    for i, name in enumerate(
        [
            "é" * 300 + ".jpg",
            "日本語の画像" * 40 + ".jpg",
            "🩺" * 200 + ".png",
            "a" * 1000 + ".jpg",
            " .jpg",
            "CON.jpg",
            "x" + "\u202e" + "gpj.exe",
        ]
    ):
        content = (
            _save(_marked(), "PNG" if name.endswith(".png") else "JPEG", quality=70 + i)
            if name.endswith(".png")
            else _save(_marked(), "JPEG", quality=70 + i)
        )
        add(Specimen(f"long-name-{i}", name, content, False, (60, 40)))
    for size in [(1, 1000), (1000, 1), (3000, 2000)]:
        add(
            Specimen(
                f"jpeg-{size[0]}x{size[1]}",
                "s.jpg",
                _save(Image.new("RGB", size, (90, 60, 40)), "JPEG"),
                False,
                size,
            )
        )
    return out


def _real_sizes() -> list[Specimen]:
    """Real dermoscopy-sized images in both formats, several qualities."""
    out: list[Specimen] = []
    add = out.append
    for quality in range(50, 100, 5):
        add(
            Specimen(
                f"jpeg-q{quality}",
                f"q{quality}.jpg",
                _save(_marked(224, 224), "JPEG", quality=quality),
                False,
                (224, 224),
            )
        )
    return out


def corpus() -> list[Specimen]:
    return [
        *_garbage_and_truncated(),
        *_magic_then_garbage(),
        *_bombs(),
        *_other_formats(),
        *_animations(),
        *_odd_but_legitimate(),
        *_real_sizes(),
    ]
