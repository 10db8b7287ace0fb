"""``make bench`` stays runnable: its sections on a tiny model with a few samples (no real stack;
the stack's own rows are checked on a made-up result)."""

import json
import os

import pytest

from bench import run_all, sections
from bench.common import make_demo_model
from bench.report import previous_rows, rows_b, rows_c, table
from bench.targets import TARGETS


def test_run_all_quick_without_the_stack(tmp_path, capsys):
    status = run_all.main(
        ["--quick", "--skip-stack", "--only", "a,d,e", "--backbone", "resnet18"]
        + ["--image-size", "64", "--out", str(tmp_path)]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    (report_path,) = tmp_path.glob("bench-*.json")
    report = json.loads(report_path.read_text())
    assert report["errors"] == {}
    assert sorted(report["results"]) == ["a", "d", "e"]
    keys = {row["key"] for row in report["table"]}
    assert {"a.original_ms", "a.warm_torch_ratio", "a.warm_onnx_ratio"} <= keys
    table = {row["key"]: row for row in report["table"]}
    # int8's warm time is reported for its speed; its accuracy is gated per model, not here.
    assert table["a.warm_onnx-int8_ratio"]["met"] is None
    assert table["a.warm_onnx_ratio"]["met"] in (True, False)
    assert {"d.600x450.full", "d.4000x3000.draft", "e.torch.peak_rss", "e.onnx.peak_rss"} <= keys
    for row in report["table"]:
        assert row["value"]
        assert row["target"]
        assert row["met"] in (True, False, None)
    # The ONNX Runtime worker never imports torch; draft mode decodes a 4000×3000 JPEG smaller.
    assert report["results"]["e"]["backends"]["onnx"]["torch_imported"] is False
    assert report["results"]["e"]["backends"]["onnx"]["peak_rss_bytes"] > 0
    rows = {r["key"]: r for r in report["results"]["d"]["rows"]}
    assert rows["4000x3000 draft"]["decoded_size"][0] < 4000
    assert rows["4000x3000 full"]["decoded_size"] == [4000, 3000]
    assert "benchmark figures" in printed
    assert "met" in printed

    # A later run can be compared with this one.
    previous = previous_rows("last", tmp_path)
    assert previous["a.original_ms"]["number"] > 0


def test_throughput_and_worker_layout(tmp_path):
    from bench import throughput

    model = make_demo_model(tmp_path, backbone="resnet18", image_size=32)
    result = throughput.run(
        model=model,
        backbone="resnet18",
        image_size=32,
        batch_sizes=(1, 2),
        seconds=0.05,
        calibration=1,
        layouts=throughput.Layouts(seconds=0.2, engines=("onnxruntime-fp32",)),
        log=lambda _: None,
    )
    summary = result["summary"]
    assert summary["ceiling_images_per_s"] > 0
    # The peak is the best sgemm of every BLAS here (one library can be far below the machine).
    libraries = summary["peak_gflops_by_library"]
    assert set(libraries) == {"torch", "numpy", "onnxruntime"}
    assert summary["peak_gflops"] == max(libraries.values()) > 0
    assert summary["best_batched_fp32"]["batch"] == 2
    assert summary["best_int8"]["engine"] == "onnxruntime-int8"
    cores = result["worker_layout"]["cores"]
    layout = result["worker_layout"]["engines"]["onnxruntime-fp32"]
    assert layout["faster"] in (f"{cores}x1", f"1x{cores}")
    assert layout["layouts"][f"{cores}x1"]["images_per_s"] > 0
    rows = rows_b(result)
    assert [r.key for r in rows if r.met is not None] == ["b.best_batched_fp32", "b.best_int8"]
    assert "layout onnxruntime-fp32" in table(rows)


def test_latency_rows_from_a_result():
    result = {
        "backend": "onnx",
        "uploads": 20,
        "p50_ms": 180.0,
        "p95_ms": 400.0,
        "reference_inference_ms": 40.0,
        "reference_source": "(a) warm onnx",
        "p50_target_ms": 190.0,
        "p50_met": True,
        "p95_target_ms": 360.0,
        "p95_met": False,
        "worker_inference_p50_ms": 35.0,
        "server_p50_ms": 90.0,
        "worker_memory": {"peak_rss_bytes": 500 * 2**20},
        "inference_threads": 1,
        "worker_processes": 2,
        "arrivals": {
            "cases": 16,
            "images_per_second": 15.0,
            "batched_passes": 3,
            "all_done_s": 1.07,
        },
        "drain": {"cases": 16, "images_per_second": 30.0, "batched_passes": 2, "drain_s": 0.53},
        "drain_reference_images_per_s": 40.0,
        "drain_target_images_per_s": 32.0,
        "drain_met": False,
    }
    rows = rows_c(result)
    assert [(r.key, r.met) for r in rows if r.met is not None] == [
        ("c.p50_ms", True),
        ("c.p95_ms", False),
        ("c.drain_images_per_s", False),
        ("c.worker_peak_rss", True),
    ]
    text = table(rows)
    assert "≤ (a) warm onnx 40.0 ms + 150 = 190 ms" in text
    assert "NO" in text
    assert "30.0 images/s = 75% of (b)" in text
    assert "≥ 80% of (b) batch 8 40.0 = 32.0/s" in text
    assert "(2 proc×1 thread)" in text


def test_stack_layout_and_reference_follow_b():
    b = {
        "worker_layout": {
            "engines": {
                "onnxruntime-fp32": {"faster": "1x2"},
                "torch-fp32": {"faster": "2x1"},
            }
        },
        "inference_speed": {
            "results": [
                {"engine": "onnxruntime-fp32", "batch": 1, "images_per_s": 40.0},
                {"engine": "onnxruntime-fp32", "batch": 8, "images_per_s": 45.0},
                {"engine": "onnxruntime-fp32", "batch": 32, "images_per_s": 46.0},
                {"engine": "onnxruntime-int8", "batch": 8, "images_per_s": 120.0},
                {"engine": "torch-fp32", "batch": 2, "images_per_s": 20.0},
            ]
        },
    }
    assert sections.layout_for("onnx", b) == (1, 2)
    assert sections.layout_for("onnx-int8", b) == (1, 2)  # int8 runs in ONNX Runtime too
    assert sections.layout_for("torch", b) == (2, 1)
    cores = os.cpu_count()
    assert sections.layout_for("onnx", None) == (cores, 1)
    assert sections.batched_figure("onnx", b) == 45.0
    assert sections.batched_figure("onnx-int8", b) == 120.0
    assert sections.batched_figure("torch", b) == 20.0  # no batch 8: the largest measured
    assert sections.batched_figure("onnx", None) is None


def test_stack_errors_end_a_script_like_sys_exit():
    from bench.stack import StackError, json_line

    with pytest.raises(SystemExit, match="no SETUP-JSON"):
        json_line("nothing here", "SETUP-JSON ")
    assert issubclass(StackError, SystemExit)


def test_targets_are_data_and_every_targeted_row_has_one():
    """Each row with a target (met yes/NO) names one entry of ``bench.targets``; the
    thresholds the sections compare with are those entries'."""
    from bench import latency, original_vs_warm, throughput, worker_memory

    assert original_vs_warm.TARGET_RATIO == TARGETS["a.warm_ratio"].threshold == 1 / 8
    assert throughput.FP32_TARGET == TARGETS["b.best_batched_fp32"].threshold == 0.8
    assert throughput.INT8_TARGET == TARGETS["b.best_int8"].threshold == 2.0
    assert latency.P50.bound(40.0) == 190.0
    assert latency.P95.bound(180.0) == 360.0
    assert latency.DRAIN.met(32.0, 40.0)
    assert not latency.DRAIN.met(31.9, 40.0)
    assert worker_memory.TARGET_BYTES == TARGETS["e.peak_rss"].threshold == 1024**3
    assert not TARGETS["c.worker_peak_rss"].met(1024**3)
    for target in TARGETS.values():
        assert target.comparison in ("<=", "<", ">=")
        assert target.unit
        assert target.description
