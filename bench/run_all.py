"""``python -m bench`` (``make bench``): every figure with its target and whether it is met.

Sections (a) ``original_vs_warm``, (b) ``throughput``, (c) ``latency``, (d) ``decode``,
(e) ``worker_memory`` (docs/testing.md says what each measures), in one run on this machine; the
results are also written as JSON (``var/bench/bench-<time>.json``) so that ``--compare last|FILE``
adds an earlier run's values. The exit status is 1 when a section failed to run (a missed target
is reported, not an error). The targets are ``bench.targets``; the sections ``bench.sections``;
the table ``bench.report``::

    .venv/bin/python -m bench [--quick] [--skip-stack] [--backend torch|onnx|onnx-int8]
        [--only a,b,c,d,e] [--out var/bench] [--compare last|FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import ROOT, add_model_arguments, load_average, machine, make_demo_model
from bench.report import ROWS, Row, previous_rows, table
from bench.sections import FULL, ORDER, QUICK, SECTIONS, run_section


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    parser.add_argument("--skip-stack", action="store_true", help="leave out (c)")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default=None)
    parser.add_argument("--only", default=SECTIONS, help="sections to run, e.g. a,d")
    add_model_arguments(parser)
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--compare", help="'last' or a bench-*.json: show its values too")
    return parser.parse_args(argv)


def log(line: str) -> None:
    print(line, flush=True)


def run_sections(wanted: set[str], settings: dict, args) -> tuple[dict, dict]:
    """Each wanted section in ``ORDER`` on one demo model; (results, errors) by section."""
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
    return results, errors


def report_rows(results: dict, errors: dict, previous: dict | None) -> list[Row]:
    """The table's rows in section order (a section that failed: one row saying so)."""
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
    return rows


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    print(f"== written to {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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

    results, errors = run_sections(wanted, settings, args)
    rows = report_rows(results, errors, previous)
    load_end = load_average()
    duration = time.time() - started
    print()
    print(
        f"== benchmark figures, {machine().get('cpu_model', '?')}, {os.cpu_count()} CPUs; "
        f"load average {load_start} at the start, {load_end} at the end; {duration:.0f} s"
    )
    print(table(rows, compare=previous is not None))
    missed = [row.figure for row in rows if row.met is False]
    print(f"== targets: {sum(row.met is True for row in rows)} met, {len(missed)} missed")

    options = {
        "quick": args.quick,
        "skip_stack": args.skip_stack,
        "backend": args.backend,
        "sections": sorted(wanted),
        "backbone": args.backbone,
        "image_size": args.image_size,
        "settings": settings,
    }
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": duration,
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_end},
        "options": options,
        "table": [row.as_dict() for row in rows],
        "errors": errors,
        "results": {section: results[section] for section in sorted(results)},
    }
    write_report(out_dir / f"bench-{stamp}.json", report)
    return 1 if errors else 0
