"""The report of a ``python -m bench`` run: one ``Row`` per figure (its value, its target from
``bench.targets`` and whether it is met), made from each section's result; the printed table;
the rows of an earlier run's JSON (``--compare``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.targets import gigabytes, target

MIB = 2**20


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


WARM_NAMES = {
    "torch": "torch eager",
    "onnx": "ONNX Runtime fp32",
    "onnx-int8": "ONNX Runtime int8 (speed only; accuracy gated per model)",
}


def rows_a(a: dict) -> list[Row]:
    original = a["original_ms"]
    goal = target("a.warm_ratio")
    rows = [
        Row(
            "a.original_ms",
            "(a) original app, per upload (build+load+decode+forward)",
            _ms(original),
            number=original,
        )
    ]
    for name, warm in a["warm"].items():
        targeted = warm.get("target", True)
        rows.append(
            Row(
                f"a.warm_{name}_ratio",
                f"(a) warm {WARM_NAMES.get(name, name)} worker, per image",
                f"{_ms(warm['ms'])} = {warm['ratio']:.3f} of original ({warm['speedup']:.1f}×)",
                f"{goal.symbol} {goal.fraction()} of original "
                f"({goal.symbol} {_ms(original * a['target_ratio'])})"
                if targeted
                else "-",
                warm["met"] if targeted else None,
                number=warm["ratio"],
            )
        )
    return rows


def _ceiling_row(summary: dict) -> Row:
    ceiling = summary["ceiling_images_per_s"]
    libraries = summary.get("peak_gflops_by_library") or {}
    return Row(
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


def _best_rows(summary: dict) -> list[Row]:
    rows = []
    best = summary["best_batched_fp32"]
    if best is not None:
        rows.append(
            Row(
                "b.best_batched_fp32",
                f"(b) best batched fp32 ({best['engine']}, batch {best['batch']})",
                f"{best['fraction_of_peak']:.0%} of ceiling",
                f"{target('b.best_batched_fp32').symbol} {summary['fp32_target']:.0%} of ceiling",
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
                f"{target('b.best_int8').symbol} {summary['int8_target']:.1f}× ceiling",
                summary["best_int8_met"],
                number=best["fraction_of_peak"],
            )
        )
    return rows


def _layout_rows(layout: dict) -> list[Row]:
    rows = []
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


def rows_b(b: dict) -> list[Row]:
    summary, speed = b["summary"], b["inference_speed"]
    rows = [_ceiling_row(summary)]
    for r in speed["results"]:
        rows.append(
            Row(
                f"b.{r['engine']}.{r['batch']}",
                f"(b) {r['engine']} batch {r['batch']}",
                f"{r['images_per_s']:.1f} images/s = {r['fraction_of_peak']:.0%} of ceiling",
                number=r["fraction_of_peak"],
            )
        )
    return rows + _best_rows(summary) + _layout_rows(b.get("worker_layout") or {})


def _latency_rows(c: dict) -> list[Row]:
    p50, p95 = target("c.p50_ms"), target("c.p95_ms")
    return [
        Row(
            "c.p50_ms",
            f"(c) upload→result p50, {c['uploads']} uploads, backend {c['backend']}",
            _ms(c["p50_ms"]),
            f"{p50.symbol} {c.get('reference_source', 'inference')} "
            f"{_ms(c['reference_inference_ms'])} + {p50.threshold:.0f} = "
            f"{_ms(c['p50_target_ms'])}",
            c["p50_met"],
            number=c["p50_ms"],
        ),
        Row(
            "c.p95_ms",
            "(c) upload→result p95",
            _ms(c["p95_ms"]),
            f"{p95.symbol} {p95.threshold:g}× p50 = {_ms(c['p95_target_ms'])}",
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


def _backlog_rows(c: dict) -> list[Row]:
    rows = []
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
        goal = target("c.drain_images_per_s")
        reference = c.get("drain_reference_images_per_s")
        bound = c.get("drain_target_images_per_s")
        rows.append(
            Row(
                "c.drain_images_per_s",
                f"(c) micro-batching: a backlog of {drain['cases']} waiting cases ({layout})",
                f"{drain['images_per_second']:.1f} images/s "
                + (f"= {drain['images_per_second'] / reference:.0%} of (b) " if reference else "")
                + f"({drain['batched_passes']} batched passes, {drain['drain_s']:.2f} s)",
                f"{goal.symbol} {goal.threshold:.0%} of (b) batch 8 {reference:.1f} = {bound:.1f}/s"
                if reference
                else "-",
                c.get("drain_met"),
                number=drain["images_per_second"],
            )
        )
    return rows


def rows_c(c: dict) -> list[Row]:
    rows = _latency_rows(c) + _backlog_rows(c)
    memory = c.get("worker_memory")
    if memory:
        goal = target("c.worker_peak_rss")
        peak = memory["peak_rss_bytes"]
        rows.append(
            Row(
                "c.worker_peak_rss",
                "(c) the stack's Celery worker process, peak RSS",
                f"{peak / MIB:.0f} MiB",
                f"{goal.symbol} {gigabytes(goal)}",
                goal.met(peak),
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
    goal = target("e.peak_rss")
    names = {"torch": "torch CPU", "onnx": "ONNX Runtime fp32"}
    for backend, r in e["backends"].items():
        torch_note = "" if backend == "torch" else f", torch imported: {r['torch_imported']}"
        met = r["met"] and (backend == "torch" or not r["torch_imported"])
        rows.append(
            Row(
                f"e.{backend}.peak_rss",
                f"(e) {names.get(backend, backend)} worker peak RSS (model loaded)",
                f"{r['peak_rss_bytes'] / MIB:.0f} MiB{torch_note}",
                f"{goal.symbol} {gigabytes(goal)}" + ("" if backend == "torch" else ", no torch"),
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
