"""``make bench``: every figure of issue #7's item 1, in one run on this machine, with its
target and whether it is met; all results also written as JSON (``var/bench/bench-<time>.json``)
so later runs can be compared (``--compare last`` or ``--compare FILE`` adds their values).

(a) ``original_vs_warm``: the original app's per-upload way vs our warm worker, per image.
(b) ``throughput``: torch fp32 / ONNX Runtime fp32 / int8 at batch 1, 8, 32 as a fraction of
    the measured fp32 ceiling, and the worker layout (N×1 thread vs 1×N threads).
(c) ``latency``: upload→result p50/p95 through the real stack (gunicorn → Redis → one idle
    Celery worker → PostgreSQL → the API poll).
(d) ``decode``: decoding + preprocessing of 600×450 and 4000×3000 JPEGs, full vs draft mode.
(e) ``worker_memory``: worker peak RSS and model load time per CPU backend.

Usage::

    .venv/bin/python bench/run_all.py [--quick] [--skip-stack] [--backend torch|onnx|onnx-int8]
        [--only a,b,c,d,e] [--out var/bench] [--compare last|FILE]

``--quick`` takes few samples (a smoke test, figures not meaningful); ``--skip-stack`` leaves
out (c), which needs PostgreSQL and Redis. ``--backend`` is the INFERENCE_BACKEND of (c)'s
worker (default onnx, the production CPU backend), in the process × thread layout (b) measured
faster for its engine. ``--backbone``/``--image-size`` shrink the model for tests. The exit
status is 1 when a section failed to run (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, load_average, machine, make_demo_model  # noqa: E402

SECTIONS = "abcde"
ORDER = "daebc"  # cheap and independent first; the real stack last
MIB = 2**20
DEFAULT_BACKEND = "onnx"  # (c)'s worker: the CPU production backend (README, deployment)

FULL = {
    "decode_repeats": 10,
    "original_repeats": 5,
    "warm_repeats": 20,
    "memory_images": 10,
    "speed_seconds": 3.0,
    "batch_sizes": (1, 8, 32),
    "calibration": 16,
    "layout_seconds": 5.0,
    "layout_rounds": 2,
    "uploads": 20,
    "warmup_uploads": 2,
}
QUICK = {
    "decode_repeats": 2,
    "original_repeats": 1,
    "warm_repeats": 3,
    "memory_images": 2,
    "speed_seconds": 0.1,
    "batch_sizes": (1, 8),
    "calibration": 2,
    "layout_seconds": 0.3,
    "layout_rounds": 1,
    "uploads": 3,
    "warmup_uploads": 1,
}


@dataclass
class Row:
    key: str  # stable, for comparing runs
    figure: str
    value: str
    target: str = "-"
    met: bool | None = None  # None: a figure without a target
    number: float | None = None  # the value as a number (for comparisons)
    previous: str = ""

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "figure": self.figure,
            "value": self.value,
            "target": self.target,
            "met": self.met,
            "number": self.number,
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def rows_a(a: dict) -> list[Row]:
    original = a["original_ms"]
    rows = [
        Row(
            "a.original_ms",
            "(a) original app, per upload (build+load+decode+forward)",
            _ms(original),
            number=original,
        )
    ]
    names = {
        "torch": "torch eager",
        "onnx": "ONNX Runtime fp32",
        "onnx-int8": "ONNX Runtime int8 (speed only; accuracy gated per model)",
    }
    for name, warm in a["warm"].items():
        targeted = warm.get("target", True)
        rows.append(
            Row(
                f"a.warm_{name}_ratio",
                f"(a) warm {names.get(name, name)} worker, per image",
                f"{_ms(warm['ms'])} = {warm['ratio']:.3f} of original ({warm['speedup']:.1f}×)",
                f"≤ 1/8 of original (≤ {_ms(original * a['target_ratio'])})" if targeted else "-",
                warm["met"] if targeted else None,
                number=warm["ratio"],
            )
        )
    return rows


def rows_b(b: dict) -> list[Row]:
    summary, speed = b["summary"], b["inference_speed"]
    ceiling = summary["ceiling_images_per_s"]
    libraries = summary.get("peak_gflops_by_library") or {}
    rows = [
        Row(
            "b.ceiling",
            "(b) fp32 ceiling: measured peak ÷ GFLOP/image",
            f"{summary['peak_gflops']:.0f} GFLOP/s ÷ {summary['gflop_per_image']:.2f} = "
            f"{ceiling:.1f} images/s",
            "peak: best 4096² sgemm of "
            + ", ".join(f"{name} {value:.0f}" for name, value in libraries.items())
            if libraries
            else "-",
            number=ceiling,
        )
    ]
    for r in speed["results"]:
        rows.append(
            Row(
                f"b.{r['engine']}.{r['batch']}",
                f"(b) {r['engine']} batch {r['batch']}",
                f"{r['images_per_s']:.1f} images/s = {r['fraction_of_peak']:.0%} of ceiling",
                number=r["fraction_of_peak"],
            )
        )
    best = summary["best_batched_fp32"]
    if best is not None:
        rows.append(
            Row(
                "b.best_batched_fp32",
                f"(b) best batched fp32 ({best['engine']}, batch {best['batch']})",
                f"{best['fraction_of_peak']:.0%} of ceiling",
                f"≥ {summary['fp32_target']:.0%} of ceiling",
                summary["best_batched_fp32_met"],
                number=best["fraction_of_peak"],
            )
        )
    best = summary["best_int8"]
    if best is not None:
        rows.append(
            Row(
                "b.best_int8",
                f"(b) best int8 ({best['engine']}, batch {best['batch']})",
                f"{best['fraction_of_peak']:.2f}× ceiling",
                f"≥ {summary['int8_target']:.1f}× ceiling",
                summary["best_int8_met"],
                number=best["fraction_of_peak"],
            )
        )
    layout = b.get("worker_layout") or {}
    cores = layout.get("cores")
    for engine, data in (layout.get("engines") or {}).items():
        many, one = data["layouts"][f"{cores}x1"], data["layouts"][f"1x{cores}"]
        rows.append(
            Row(
                f"b.layout.{engine}",
                f"(b) layout {engine} batch 1: {cores} proc×1 thread vs 1 proc×{cores}",
                f"{many['images_per_s']:.1f} vs {one['images_per_s']:.1f} images/s: "
                f"{data['faster']} faster",
                "which is faster (measured)",
                number=data["ratio"],
            )
        )
    return rows


def rows_c(c: dict) -> list[Row]:
    rows = [
        Row(
            "c.p50_ms",
            f"(c) upload→result p50, {c['uploads']} uploads, backend {c['backend']}",
            _ms(c["p50_ms"]),
            f"≤ {c.get('reference_source', 'inference')} {_ms(c['reference_inference_ms'])} "
            f"+ 150 = {_ms(c['p50_target_ms'])}",
            c["p50_met"],
            number=c["p50_ms"],
        ),
        Row(
            "c.p95_ms",
            "(c) upload→result p95",
            _ms(c["p95_ms"]),
            f"≤ 2× p50 = {_ms(c['p95_target_ms'])}",
            c["p95_met"],
            number=c["p95_ms"],
        ),
        Row(
            "c.worker_inference_ms",
            "(c) worker-side inference_ms p50 (API)",
            _ms(c["worker_inference_p50_ms"]),
            number=c["worker_inference_p50_ms"],
        ),
        Row(
            "c.server_ms",
            "(c) server-side: case created → prediction stored, p50",
            _ms(c["server_p50_ms"]),
            number=c["server_p50_ms"],
        ),
    ]
    layout = f"{c.get('worker_processes', 1)} proc×{c['inference_threads']} thread"
    arrivals = c.get("arrivals")
    if arrivals:
        rows.append(
            Row(
                "c.arrivals_images_per_s",
                f"(c) {arrivals['cases']} uploads sent back to back ({layout})",
                f"{arrivals['images_per_second']:.1f} images/s, uploads included "
                f"({arrivals['batched_passes']} batched passes, {arrivals['all_done_s']:.2f} s)",
                number=arrivals["images_per_second"],
            )
        )
    drain = c.get("drain")
    if drain:
        reference = c.get("drain_reference_images_per_s")
        target = c.get("drain_target_images_per_s")
        rows.append(
            Row(
                "c.drain_images_per_s",
                f"(c) micro-batching: a backlog of {drain['cases']} waiting cases ({layout})",
                f"{drain['images_per_second']:.1f} images/s "
                + (f"= {drain['images_per_second'] / reference:.0%} of (b) " if reference else "")
                + f"({drain['batched_passes']} batched passes, {drain['drain_s']:.2f} s)",
                f"≥ 80% of (b) batch 8 {reference:.1f} = {target:.1f}/s" if reference else "-",
                c.get("drain_met"),
                number=drain["images_per_second"],
            )
        )
    memory = c.get("worker_memory")
    if memory:
        peak = memory["peak_rss_bytes"]
        rows.append(
            Row(
                "c.worker_peak_rss",
                "(c) the stack's Celery worker process, peak RSS",
                f"{peak / MIB:.0f} MiB",
                "< 1 GB",
                peak < 1024**3,
                number=peak / MIB,
            )
        )
    return rows


def rows_d(d: dict) -> list[Row]:
    rows = []
    for r in d["rows"]:
        orientation = r.get("orientation_decode_ms")
        rows.append(
            Row(
                f"d.{r['key'].replace(' ', '.')}",
                f"(d) {r['key'].replace('x', '×')} decode + eval preset",
                f"{_ms(r['decode_ms'])} + {_ms(r['preprocess_torch_ms'])} = "
                f"{_ms(r['total_torch_ms'])}",
                f"(orientation: decode ~{orientation:.0f} ms)" if orientation else "-",
                number=r["total_torch_ms"],
            )
        )
    return rows


def rows_e(e: dict) -> list[Row]:
    rows = []
    names = {"torch": "torch CPU", "onnx": "ONNX Runtime fp32"}
    for backend, r in e["backends"].items():
        torch_note = "" if backend == "torch" else f", torch imported: {r['torch_imported']}"
        met = r["met"] and (backend == "torch" or not r["torch_imported"])
        rows.append(
            Row(
                f"e.{backend}.peak_rss",
                f"(e) {names.get(backend, backend)} worker peak RSS (model loaded)",
                f"{r['peak_rss_bytes'] / MIB:.0f} MiB{torch_note}",
                "< 1 GB" + ("" if backend == "torch" else ", no torch"),
                met,
                number=r["peak_rss_bytes"] / MIB,
            )
        )
        rows.append(
            Row(
                f"e.{backend}.load_s",
                f"(e) {names.get(backend, backend)} model load (import)",
                f"{r['load_s']:.2f} s (import {r['import_s']:.2f} s)",
                number=r["load_s"],
            )
        )
    return rows


ROWS: dict[str, Callable[[dict], list[Row]]] = {
    "a": rows_a,
    "b": rows_b,
    "c": rows_c,
    "d": rows_d,
    "e": rows_e,
}


def table(rows: list[Row], *, compare: bool = False) -> str:
    headers = ["figure", "value", "target", "met"] + (["previous"] if compare else [])

    def cells(row: Row) -> list[str]:
        met = "-" if row.met is None else "yes" if row.met else "NO"
        return [row.figure, row.value, row.target, met] + ([row.previous] if compare else [])

    lines = [cells(row) for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(line.rstrip() for line in out)


def previous_rows(spec: str | None, out_dir: Path) -> dict[str, dict] | None:
    if not spec:
        return None
    if spec == "last":
        runs = sorted(out_dir.glob("bench-*.json"))
        if not runs:
            return {}
        path = runs[-1]
    else:
        path = Path(spec)
    data = json.loads(path.read_text())
    return {row["key"]: row for row in data.get("table", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    parser.add_argument("--skip-stack", action="store_true", help="leave out (c)")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default=None)
    parser.add_argument("--only", default=SECTIONS, help="sections to run, e.g. a,d")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--compare", help="'last' or a bench-*.json: show its values too")
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else FULL
    wanted = {s for s in args.only.replace(",", "") if s in SECTIONS}
    if args.skip_stack:
        wanted.discard("c")
    out_dir = Path(args.out)
    previous = previous_rows(args.compare, out_dir)
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_start = load_average()
    print(f"== make bench: sections {','.join(s for s in SECTIONS if s in wanted)}, ", end="")
    print(f"{'quick' if args.quick else 'full'} settings, {os.cpu_count()} CPUs, ", end="")
    print(f"load average {load_start}", flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    results: dict = {}
    errors: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as work:
        model = None
        if wanted & set("abe"):
            model = make_demo_model(work, backbone=args.backbone, image_size=args.image_size)
            log(f"== demo {args.backbone} model exported to ONNX in {model.export_s:.1f} s")
        for section in ORDER:
            if section not in wanted:
                continue
            section_started = time.perf_counter()
            try:
                results[section] = run_section(section, settings, args, model, results, log)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - report it, run the others
                errors[section] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                log(f"== ({section}) FAILED: {str(exc)[-2000:]}")
            log(f"== ({section}) took {time.perf_counter() - section_started:.0f} s")

    rows: list[Row] = []
    for section in SECTIONS:
        if section in results:
            rows += ROWS[section](results[section])
        elif section in errors:
            message = errors[section].splitlines()[0][:80]
            rows.append(Row(f"{section}.error", f"({section}) did not run", message, met=False))
    if previous is not None:
        for row in rows:
            old = previous.get(row.key)
            row.previous = old["value"] if old else ""
    load_end = load_average()
    duration = time.time() - started
    print()
    print(
        f"== issue #7 figures, {machine().get('cpu_model', '?')}, {os.cpu_count()} CPUs; "
        f"load average {load_start} at the start, {load_end} at the end; {duration:.0f} s"
    )
    print(table(rows, compare=previous is not None))
    missed = [row.figure for row in rows if row.met is False]
    print(f"== targets: {sum(row.met is True for row in rows)} met, {len(missed)} missed")

    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": duration,
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_end},
        "options": {
            "quick": args.quick,
            "skip_stack": args.skip_stack,
            "backend": args.backend,
            "sections": sorted(wanted),
            "backbone": args.backbone,
            "image_size": args.image_size,
            "settings": settings,
        },
        "table": [row.as_dict() for row in rows],
        "errors": errors,
        "results": {section: results[section] for section in sorted(results)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{stamp}.json"
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    print(f"== written to {path}")
    return 1 if errors else 0


ENGINE_OF_BACKEND = {
    "torch": "torch-fp32",
    "onnx": "onnxruntime-fp32",
    "onnx-int8": "onnxruntime-int8",
}


def _layout_for(backend: str, b: dict | None) -> tuple[int, int]:
    """(processes, threads each) for (c)'s worker: the layout (b) measured faster for the
    served engine (int8 follows fp32 ONNX Runtime); N single-threaded processes without (b)."""
    cores = os.cpu_count() or 1
    engine = "torch-fp32" if backend == "torch" else "onnxruntime-fp32"
    layout = ((b or {}).get("worker_layout") or {}).get("engines", {}).get(engine) or {}
    faster = layout.get("faster") or f"{cores}x1"
    processes, threads = (int(part) for part in faster.split("x"))
    return processes, threads


def _batched_figure(backend: str, b: dict | None) -> float | None:
    """(b)'s batch-8 images/s of the served engine (or its largest batch measured)."""
    rows = [
        r
        for r in ((b or {}).get("inference_speed") or {}).get("results", [])
        if r["engine"] == ENGINE_OF_BACKEND[backend] and r["batch"] > 1
    ]
    if not rows:
        return None
    eight = [r for r in rows if r["batch"] == 8]
    return (eight or sorted(rows, key=lambda r: r["batch"]))[-1]["images_per_s"]


def run_section(section: str, settings: dict, args, model, results: dict, log) -> dict:
    if section == "a":
        import original_vs_warm

        return original_vs_warm.run(
            model=model,
            original_repeats=settings["original_repeats"],
            warm_repeats=settings["warm_repeats"],
            int8_calibration=settings["calibration"],
            log=log,
        )
    if section == "b":
        import throughput

        return throughput.run(
            model=model,
            backbone=args.backbone,
            image_size=args.image_size,
            batch_sizes=settings["batch_sizes"],
            seconds=settings["speed_seconds"],
            calibration=settings["calibration"],
            layout_seconds=settings["layout_seconds"],
            layout_rounds=settings["layout_rounds"],
            log=log,
        )
    if section == "c":
        import latency

        warm = (results.get("a") or {}).get("warm") or {}
        backend = args.backend or DEFAULT_BACKEND
        processes, threads = _layout_for(backend, results.get("b"))
        return latency.run(
            uploads=settings["uploads"],
            warmup=settings["warmup_uploads"],
            backend=backend,
            processes=processes,
            inference_threads=threads,
            inference_ms={engine: figures["ms"] for engine, figures in warm.items()},
            batched_images_per_s=_batched_figure(backend, results.get("b")),
            log=log,
        )
    if section == "d":
        import decode

        return decode.run(repeats=settings["decode_repeats"], image_size=args.image_size, log=log)
    if section == "e":
        import worker_memory

        return worker_memory.run(model=model, images=settings["memory_images"], log=log)
    raise ValueError(section)


if __name__ == "__main__":
    sys.exit(main())
