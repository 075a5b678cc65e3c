"""Timestamps are data: svsr-run keeps every input frame's time (VFR included) and the audio in sync, end to end."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import pytest

from svsr.cli import run_main
from svsr.runtime.video import FrameReader
from tests.support.media import VFR_SOURCES, VFR_TIMES, audio_times, gradient_frames, make_vfr_video, write_pngs
from tests.test_shots import scene


def stream_tick(path: Path) -> Fraction:
    with av.open(str(path)) as container:
        return Fraction(container.streams.video[0].time_base)


@pytest.mark.parametrize(
    "src_name, out_name, extra",
    [
        ("h264-aac.mp4", "out.mp4", ["--no-scene-split"]),
        ("ffv1-aac.mkv", "out.mkv", ["--codec", "ffv1", "--no-scene-split"]),
        ("two-scenes.mp4", "shots.mp4", []),  # a cut: two shots stitched from segments
    ],
)
def test_vfr_frame_times_and_audio_survive_svsr_run(tiny_build, tmp_path, capsys, src_name, out_name, extra):
    if src_name == "two-scenes.mp4":  # a hard cut at frame 16: two shots
        src = make_vfr_video(tmp_path / src_name, *VFR_SOURCES["h264-aac.mp4"], frames=scene(1, 16, 48, 64) + scene(2, 4, 48, 64))
    else:
        src = make_vfr_video(tmp_path / src_name, *VFR_SOURCES[src_name])
    out = tmp_path / out_name
    report = tmp_path / "report.json"
    assert run_main([str(src), "-o", str(out), "--model", str(tiny_build), "--steps", "1", "--quiet", "--report", str(report), *extra]) == 0
    shots = json.loads(report.read_text())["inputs"][0]["shots"]
    assert shots == ([[0, 15], [16, 19]] if src_name == "two-scenes.mp4" else [[0, 19]])
    tick = stream_tick(out)
    with FrameReader(out) as reader:
        back = reader.read_timed(100)
    assert len(back) == len(VFR_TIMES)
    drift = max(abs(t_out - t_in) for (_, t_out), t_in in zip(back, VFR_TIMES, strict=True))
    assert drift <= tick
    starts_in, end_in = audio_times(src)
    starts_out, end_out = audio_times(out)
    audio_drift = max(abs(a - b) for a, b in zip(starts_in, starts_out, strict=True))
    print(f"{src_name} -> {out_name} ({len(shots)} shots): frame time drift {float(drift) * 1e3:.3f} ms, audio packet drift {float(audio_drift) * 1e3:.3f} ms")
    assert len(starts_out) == len(starts_in) and audio_drift <= Fraction(1, 1000)
    assert abs(end_out - end_in) <= Fraction(1, 10)  # within one frame of the slowest step (85 ms)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src_name, out_name, "report.json"])


def test_frame_folders_get_the_stated_constant_rate(tiny_build, tmp_path, capsys):
    folder = write_pngs(tmp_path / "frames", gradient_frames(n=4, width=32, height=32))
    out = tmp_path / "out.mkv"
    assert run_main([str(folder), "-o", str(out), "--model", str(tiny_build), "--steps", "1", "--fps", "30000/1001", "--codec", "ffv1"]) == 0
    assert "30000/1001 fps" in capsys.readouterr().err
    with FrameReader(out) as reader:
        times = [t for _, t in reader.read_timed(10)]
    tick = stream_tick(out)
    assert len(times) == 4 and all(abs(t - i * Fraction(1001, 30000)) <= tick for i, t in enumerate(times))
