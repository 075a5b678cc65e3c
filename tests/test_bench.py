"""svsr-bench produces JSON, a markdown table and a chart with the reference and ORT side by side."""

from __future__ import annotations

import json
import math

from svsr.cli import bench_main


def test_bench_reference_and_ort_side_by_side(tiny_build, tmp_path, capsys):
    build = tiny_build  # read only: the session's tiny build (its checkpoint is the reference's baseline)
    out_json, out_png, out_md = tmp_path / "b.json", tmp_path / "b.png", tmp_path / "b.md"
    code = bench_main([
        "--model", str(build), "--backend", "reference", "--backend", "ort", "--resolution", "40x32",
        "--frames", "2", "--steps", "1", "--warmup", "1", "--repeats", "2", "--long-clip", "12", "--host-memory", "1M",
        "--json", str(out_json), "--plot", str(out_png), "--markdown", str(out_md),
    ])
    assert code == 0
    data = json.loads(out_json.read_text())
    assert [r["backend"] for r in data["rows"]] == ["reference", "ort-cpu"]
    for row in data["rows"]:
        for name in ("flow", "denoise", "guide_decode", "warp", "decode", "blend"):
            stats = row["graphs"][name]
            assert 0 < stats["median_ms"] <= stats["p90_ms"]
            # FLOPs are the convolutions and matmuls the exporter counted: the warp and the blend have none
            assert stats["tflops"] > 0 if name not in ("warp", "blend") else stats["tflops"] >= 0
        g = row["graphs"]
        # 2 frames: the second frame of each sweep needs guidance (guide_decode, then warp)
        want = g["denoise"]["median_ms"] + (g["guide_decode"]["median_ms"] + g["warp"]["median_ms"]) / 2
        assert abs(row["frame_step_from_graphs_ms"] - want) < 1e-9
        assert row["frame_step_ms"] > 0 and row["output_frame_ms"] > 0
        assert row["peak_host_mib"] > 50
    reference, ort = data["rows"]
    assert reference["speedup_vs_reference"] == {"end_to_end": None, "from_graphs": None}
    assert ort["speedup_vs_reference"]["end_to_end"] == reference["end_to_end_s"] / ort["end_to_end_s"]
    assert ort["speedup_vs_reference"]["from_graphs"] == reference["frame_step_from_graphs_ms"] / ort["frame_step_from_graphs_ms"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = out_md.read_text()
    assert "| reference |" in table and "| ort-cpu |" in table
    assert all(row["steps"] == 1 for row in data["rows"]) and "| backend | precision | steps |" in table
    assert "| speed-up vs reference, end to end | speed-up vs reference, from graph medians |" in table
    ort_line = next(line for line in table.splitlines() if line.startswith("| ort-cpu |"))
    ratios = ort_line.rstrip(" |").split(" | ")[-2:]
    assert ratios == [f"{ort['speedup_vs_reference'][k]:.2f}x" for k in ("end_to_end", "from_graphs")]
    long_clip = data["rows"][1]["long_clip"]
    assert long_clip["frames"] == 12 and long_clip["synchronous"]
    assert 0 < long_clip["graph_s"] < long_clip["end_to_end_s"] and long_clip["host_overhead_pct"] > 0
    assert "| long clip |" in table and "| ort-cpu fp32 | 12 x 1 | 1 MiB |" in table
    # issue 21: the clip store's checksums are a row of the host-overhead table, measured within the run
    checksums = long_clip["checksums"]
    assert checksums["calls"] >= 12  # every frame's latent of the step is written to a file, with its CRC-32
    for key in ("seconds", "ms_per_frame_step", "share_of_frame_step", "pct_of_graph_time"):
        assert math.isfinite(checksums[key]) and checksums[key] >= 0, key
    assert checksums["share_of_frame_step"] <= 1
    assert abs(checksums["ms_per_frame_step"] / long_clip["frame_step_ms"] - checksums["share_of_frame_step"]) < 1e-9
    row = next(line for line in table.splitlines() if "clip-store checksums" in line)
    assert row.startswith(f"| ort-cpu fp32: clip-store checksums ({checksums['calls']} CRC-32s) | 12 x 1 | 1 MiB | ")
    assert f"({100 * checksums['share_of_frame_step']:.3g}% of the frame-step)" in row


def test_bench_rejects_bad_resolution(tmp_path, capsys):
    assert bench_main(["--model", str(tmp_path), "--resolution", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_before_any_measurement(tiny_build, monkeypatch, capsys):
    import importlib.util

    import svsr.bench

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))

    def measured(*_args, **_kwargs):
        raise AssertionError("the benchmark ran before --plot was checked")

    monkeypatch.setattr(svsr.bench, "run_bench", measured)
    code = bench_main(["--model", str(tiny_build), "--backend", "ort", "--resolution", "40x32", "--steps", "1", "--plot", "x.png"])
    assert code != 0
    assert "needs matplotlib" in capsys.readouterr().err


def test_store_checksum_time_counts_the_clip_stores_crcs_and_keeps_them_zlibs(tmp_path):
    import zlib

    import numpy as np

    from svsr.api import store_checksum_time
    from svsr.runtime.sampling import clip_store

    array = clip_store.FileFrameArray(tmp_path / "latents0.f32", 3, (2, 4))
    try:
        seconds, calls = store_checksum_time()
        for k in range(3):
            array.write(k, np.full((2, 4), k, np.float32))
        later_seconds, later_calls = store_checksum_time()
        assert later_calls - calls == 3 and math.isfinite(later_seconds) and later_seconds >= seconds
        # the timed calls are zlib's own: the records a checkpoint stores are unchanged
        want = [zlib.crc32(np.full(8, v, np.float32).tobytes()) for v in (0, 1, 2)]
        assert array.record()["crc32"] == want
    finally:
        array.close()


def test_graphs_whose_flow_scale_does_not_fit_are_not_measured():
    from svsr.bench import runnable_graphs

    assert [n for n in runnable_graphs(32, 40) if n.startswith("flow")] == ["flow"]
    assert [n for n in runnable_graphs(64, 96) if n.startswith("flow")] == ["flow", "flow_x2"]
    assert [n for n in runnable_graphs(128, 128) if n.startswith("flow")] == ["flow", "flow_x2", "flow_x1"]
    assert "denoise_stats" in runnable_graphs(32, 40) and "decode_stats" in runnable_graphs(32, 40)
