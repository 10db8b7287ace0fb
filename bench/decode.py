"""(d) Decoding + preprocessing per image: 600×450 and 4000×3000 JPEGs, full decode vs draft.

A real ISIC image scaled to each size is opened with ``open_for_model`` with and without JPEG
draft mode, then preprocessed with the torch eval preset (on all threads and on one: a busy
machine makes a parallel resize wait for a core) and the ONNX worker's NumPy preset::

    .venv/bin/python -m bench.decode [--repeats 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from bench.common import (
    add_json_argument,
    fit_jpeg,
    generated_jpeg,
    images_are_real,
    median,
    real_image_paths,
    write_json,
)

SIZES = ((600, 450), (4000, 3000))
ORIENTATION_MS = {"4000x3000 full": 160.0, "4000x3000 draft": 50.0}


def make_jpeg(source: bytes, size: tuple[int, int], quality: int = 90) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(source)) as image:
        resized = fit_jpeg(image, size)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def timed(step: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median milliseconds of ``step`` over ``repeats`` calls after one untimed call."""
    value = step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        value = step()
        times.append(time.perf_counter() - started)
    return median(times) * 1000, value


def one_thread(measure: Callable[[], tuple[float, object]]) -> float:
    """``measure()``'s milliseconds with torch on one thread (then its threads as before)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure()[0]
    finally:
        torch.set_num_threads(threads)


def _measure(data: bytes, size, draft: bool, preprocessing, repeats: int, steps) -> dict:
    """One JPEG decoded (full or draft) and preprocessed with both presets: its row."""
    open_for_model, transform, preprocess_image = steps
    width, height = size

    def decode():
        return open_for_model(io.BytesIO(data), preprocessing, draft=draft)

    decode_ms, image = timed(decode, repeats)
    torch_ms, _ = timed(lambda: transform(image), repeats)
    torch_1_ms = one_thread(lambda: timed(lambda: transform(image), repeats))
    numpy_ms, _ = timed(lambda: preprocess_image(image, preprocessing), repeats)
    key = f"{width}x{height} {'draft' if draft else 'full'}"
    return {
        "key": key,
        "size": [width, height],
        "jpeg_bytes": len(data),
        "draft": draft,
        "decoded_size": list(image.size),
        "decode_ms": decode_ms,
        "preprocess_torch_ms": torch_ms,
        "preprocess_torch_1_thread_ms": torch_1_ms,
        "preprocess_numpy_ms": numpy_ms,
        "total_torch_ms": decode_ms + torch_ms,
        "total_numpy_ms": decode_ms + numpy_ms,
        "orientation_decode_ms": ORIENTATION_MS.get(key),
    }


def run(*, repeats: int = 10, image_size: int = 224, log: Callable[[str], None] = print) -> dict:
    from ml.engine.data.images import open_for_model
    from ml.engine.model.transforms import default_preprocessing, eval_transform
    from ml.engine.serve.onnx.predict import preprocess_image

    preprocessing = default_preprocessing(image_size)
    transform = eval_transform(preprocessing)
    steps = (open_for_model, transform, preprocess_image)
    if images_are_real():
        source_path = real_image_paths(1)[0]
        source, source_name = source_path.read_bytes(), source_path.name
    else:
        source, source_name = generated_jpeg(0), "generated"
    import torch

    result: dict = {
        "source": source_name,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "rows": [],
    }
    for width, height in SIZES:
        data = make_jpeg(source, (width, height))
        for draft in (False, True):
            row = _measure(data, (width, height), draft, preprocessing, repeats, steps)
            result["rows"].append(row)
            log(
                f"(d) {row['key']:<16} decode {row['decode_ms']:6.1f} ms (to "
                f"{row['decoded_size'][0]}×{row['decoded_size'][1]}) "
                f"+ eval preset {row['preprocess_torch_ms']:5.1f} ms (1 thread "
                f"{row['preprocess_torch_1_thread_ms']:5.1f}, NumPy preset "
                f"{row['preprocess_numpy_ms']:5.1f} ms) "
                f"= {row['total_torch_ms']:6.1f} ms"
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    add_json_argument(parser)
    args = parser.parse_args()
    result = run(repeats=args.repeats)
    write_json(args.json_path, result)


if __name__ == "__main__":
    main()
