"""Tests for svsr.runtime.video.stitch: shot segments written by FrameWriter(segment=True), joined by remuxing."""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from svsr.contract.errors import InputError
from svsr.runtime.video import FrameReader, FrameWriter, probe, stitch_segments
from tests.support.media import (
    VFR_RATE,
    VFR_SOURCES,
    VFR_TIMES,
    audio_packets,
    audio_times,
    gradient_frames,
    listing,
    make_vfr_video,
)

RUNS = (7, 1, 12)  # shot lengths of the 20-frame VFR clip, with a one-frame shot in the middle


def read_timed(path: Path) -> list[tuple[np.ndarray, Fraction]]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "ended early": the container's frame count must be right
        with FrameReader(path) as reader:
            return list(reader.timed())


def decoded(path: Path) -> list[np.ndarray]:
    """A video's frames decoded with PyAV directly, as FrameReader converts them (for segments)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def write_segments(
    src: Path, folder: Path, suffix: str, codec: str, runs: tuple[int, ...] = RUNS
) -> tuple[list[Path], list[tuple[np.ndarray, Fraction]]]:
    """Split src's frames into runs and write each as a segment carrying the frames' absolute times."""
    info = probe(src)
    pairs = read_timed(src)
    assert sum(runs) == len(pairs)
    folder.mkdir(exist_ok=True)
    segments, start = [], 0
    for k, count in enumerate(runs):
        path = folder / f"shot{k:05d}{suffix}"
        with warnings.catch_warnings():
            # AVI and PNG segments keep no times, as the stitched output will not: VFR is lost there
            warnings.filterwarnings("ignore", "(AVI files|a PNG folder) holds? no per-frame times")
            with FrameWriter(path, info.fps, codec=codec, time_base=info.time_base, segment=True) as writer:
                for frame, time in pairs[start : start + count]:
                    writer.write(frame, time)
        segments.append(path)
        start += count
    return segments, pairs


def no_partials(*folders: Path) -> bool:
    return not any(".partial-" in name for folder in folders for name in os.listdir(folder))


def stream_packets(path: Path) -> list[tuple[int | None, int | None, bool]]:
    with av.open(str(path)) as container:
        return [(p.pts, p.dts, p.is_keyframe) for p in container.demux(video=0) if p.size]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- the segments FrameWriter writes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "size"),
    [
        ("s.mp4", "h264", (64, 48)),
        ("s.mkv", "h264", (64, 48)),
        ("s.mp4", "h265", (64, 64)),  # x265 needs 64 px sides
        ("s.webm", "vp9", (64, 48)),
        ("s.mkv", "ffv1", (64, 48)),
    ],
)
def test_segment_writer_starts_on_a_keyframe_at_its_absolute_time(
    out_dir: Path, name: str, codec: str, size: tuple[int, int]
) -> None:
    frames = gradient_frames(n=12, width=size[0], height=size[1])
    times = [Fraction(5) + Fraction(40 * i + (i % 3) * 7, 1000) for i in range(12)]  # absolute, VFR
    with FrameWriter(out_dir / name, 25, codec=codec, segment=True) as writer:
        for frame, time in zip(frames, times, strict=True):
            writer.write(frame, time)
    packets = stream_packets(out_dir / name)
    assert len(packets) == 12 and packets[0][2]
    pts = [p for p, _, _ in packets]
    assert pts[0] == min(pts)  # closed GOP: nothing shown before the first keyframe
    with av.open(str(out_dir / name)) as container:
        tick = container.streams.video[0].time_base
    assert abs(pts[0] * tick - 5) <= tick  # the absolute time is kept, not moved to 0
    if codec in ("h264", "h265"):
        assert pts != sorted(pts)  # B-frames are kept: the stitch handles their decode delay


@pytest.mark.parametrize("name", ["s.avi", "frames"])
def test_timeless_segments_measure_drift_from_their_first_frame(out_dir: Path, name: str) -> None:
    frames = gradient_frames(n=6, width=64, height=48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant-rate shot starting at 5 s loses no time
        with FrameWriter(out_dir / name, 25, codec="ffv1", segment=True) as writer:
            for i, frame in enumerate(frames):
                writer.write(frame, 5 + Fraction(i, 25))
    with pytest.warns(UserWarning, match=r"no per-frame times, .* up to 0\.040 s away"):
        with FrameWriter(out_dir / f"vfr_{name}", 25, codec="ffv1", segment=True) as writer:
            for i, frame in enumerate(frames):
                writer.write(frame, 5 + Fraction(i, 25) + Fraction(i // 3, 25))  # a skipped frame


def test_segment_writer_refuses_audio(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mp4", *VFR_SOURCES["h264-aac.mp4"])
    with pytest.raises(ValueError, match="a segment holds no audio"):
        FrameWriter(out_dir / "s.mp4", 24, audio_from=src, segment=True)


# --- stitching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_name", "out_name", "codec"),
    [
        ("h264-aac.mp4", "o.mp4", "h264"),
        ("h264-aac.mp4", "o.mkv", "h264"),
        ("h264-aac.mp4", "o.mov", "h264"),
        ("ffv1-aac.mkv", "o.mkv", "ffv1"),
        ("ffv1-aac.mkv", "o.mp4", "h264"),
        ("ffv1-opus.mkv", "o.webm", "vp9"),  # WebM cannot hold AAC: Opus there
    ],
)
def test_stitched_video_has_the_segments_frames_at_the_input_times_and_the_audio(
    tmp_path: Path, out_dir: Path, src_name: str, out_name: str, codec: str
) -> None:
    src = make_vfr_video(tmp_path / src_name, *VFR_SOURCES[src_name])
    info = probe(src)
    segments, pairs = write_segments(src, tmp_path / "segments", Path(out_name).suffix, codec)
    out = out_dir / out_name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stitch_segments(segments, out, audio_from=src, fps=info.fps) == out
    assert listing(out_dir) == [out_name] and no_partials(tmp_path / "segments")

    back = read_timed(out)
    assert len(back) == len(pairs) == len(VFR_TIMES)
    with av.open(str(out)) as container:
        tick = container.streams.video[0].time_base
    assert all(abs(t_out - t_in) <= tick for (_, t_out), (_, t_in) in zip(back, pairs, strict=True))
    # remuxed, not re-encoded: bit for bit the frames the segments decode to
    from_segments = [frame for segment in segments for frame in decoded(segment)]
    assert all(np.array_equal(a, b) for (a, _), b in zip(back, from_segments, strict=True))
    if codec == "ffv1":
        assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(back, pairs, strict=True))
    # the whole audio track, packet for packet, still in sync with the video
    codec_in, payloads_in, _ = audio_packets(src)
    codec_out, payloads_out, _ = audio_packets(out)
    assert codec_out == codec_in and payloads_out == payloads_in
    starts_in, end_in = audio_times(src)
    starts_out, end_out = audio_times(out)
    assert max(abs(a - b) for a, b in zip(starts_in, starts_out, strict=True)) <= Fraction(1, 1000)
    assert abs(end_out - end_in) <= 1 / info.fps


@pytest.mark.parametrize(("name", "codec"), [("o.mp4", "h264"), ("o.mkv", "h264"), ("o.mkv", "h265")])
def test_b_frame_segments_join_with_increasing_decode_times(
    tmp_path: Path, out_dir: Path, name: str, codec: str
) -> None:
    """x264/x265 start a segment's decoding a few frames before its first frame is shown."""
    frames = gradient_frames(n=20, width=64, height=64)
    segments, start = [], 0
    for k, count in enumerate((1, 6, 1, 12)):  # single-frame shots first and before the last
        segments.append(tmp_path / f"s{k}{Path(name).suffix}")
        options = {"codec": codec, "time_base": Fraction(1, 90000), "segment": True}
        with FrameWriter(segments[-1], VFR_RATE, **options) as writer:  # type: ignore[arg-type]
            for i in range(start, start + count):
                writer.write(frames[i], VFR_TIMES[i])
        start += count
    if name.endswith(".mp4"):  # the last shot starts decoding before the shot before it is shown
        assert stream_packets(segments[3])[0][1] < stream_packets(segments[2])[0][1]
    stitch_segments(segments, out_dir / name, audio_from=None, fps=VFR_RATE)
    packets = stream_packets(out_dir / name)
    dts = [d for _, d, _ in packets if d is not None]
    assert dts == sorted(set(dts)) and all(d is None or d <= p for p, d, _ in packets)
    back = read_timed(out_dir / name)
    with av.open(str(out_dir / name)) as container:
        tick = container.streams.video[0].time_base
    assert all(abs(t - u) <= tick for (_, t), u in zip(back, VFR_TIMES, strict=True))
    from_segments = [frame for segment in segments for frame in decoded(segment)]
    assert len(back) == 20
    assert all(np.array_equal(a, b) for (a, _), b in zip(back, from_segments, strict=True))


def test_one_segment_is_a_whole_video(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mp4", *VFR_SOURCES["h264-aac.mp4"])
    segments, pairs = write_segments(src, tmp_path / "segments", ".mp4", "h264", runs=(20,))
    stitch_segments(segments, out_dir / "o.mp4", audio_from=src, fps=probe(src).fps)
    back = read_timed(out_dir / "o.mp4")
    assert [t for _, t in back] == [t for _, t in pairs] == VFR_TIMES  # 1/90000 kept: exact
    assert all(np.array_equal(a, b) for (a, _), b in zip(back, decoded(segments[0]), strict=True))
    assert audio_packets(out_dir / "o.mp4")[1] == audio_packets(src)[1]


def test_h265_mp4_stitch_keeps_the_hvc1_tag(tmp_path: Path, out_dir: Path) -> None:
    frames = gradient_frames(n=8, width=64, height=64)
    segments = []
    for k, run in enumerate((range(0, 3), range(3, 8))):
        segments.append(tmp_path / f"s{k}.mp4")
        with FrameWriter(segments[-1], 24, codec="h265", segment=True) as writer:
            for i in run:
                writer.write(frames[i], Fraction(i, 24))
    stitch_segments(segments, out_dir / "o.mp4", audio_from=None, fps=24)
    with av.open(str(out_dir / "o.mp4")) as container:
        assert container.streams.video[0].codec_tag == "hvc1"
    back = read_timed(out_dir / "o.mp4")
    assert [t for _, t in back] == [Fraction(i, 24) for i in range(8)]
    from_segments = [frame for segment in segments for frame in decoded(segment)]
    assert all(np.array_equal(a, b) for (a, _), b in zip(back, from_segments, strict=True))


@pytest.mark.parametrize("codec", ["h264", "ffv1"])
def test_avi_segments_are_concatenated(tmp_path: Path, out_dir: Path, codec: str) -> None:
    src = make_vfr_video(tmp_path / "in.mkv", *VFR_SOURCES["ffv1-aac.mkv"])
    info = probe(src)
    segments, pairs = write_segments(src, tmp_path / "segments", ".avi", codec)
    stitch_segments(segments, out_dir / "o.avi", audio_from=None, fps=info.fps)
    back = read_timed(out_dir / "o.avi")
    assert [t for _, t in back] == [i / info.fps for i in range(len(pairs))]  # AVI: frame i at i / fps
    from_segments = [frame for segment in segments for frame in decoded(segment)]
    assert all(np.array_equal(a, b) for (a, _), b in zip(back, from_segments, strict=True))
    assert len(back) == len(pairs) and listing(out_dir) == ["o.avi"]


def test_png_folder_segments_are_moved_into_one_folder(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mp4", *VFR_SOURCES["h264-aac.mp4"])
    segments, pairs = write_segments(src, tmp_path / "segments", "", "h264")
    assert listing(segments[1]) == ["frame_000000.png"]
    out = out_dir / "frames_x4"
    with pytest.warns(UserWarning, match="PNG folder cannot hold the audio"):
        stitch_segments(segments, out, audio_from=src, fps=probe(src).fps)
    assert listing(out) == [f"frame_{i:06d}.png" for i in range(20)]
    assert listing(out_dir) == ["frames_x4"]
    assert all(listing(segment) == [] for segment in segments)  # moved, not copied
    back = read_timed(out)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(back, pairs, strict=True))
    assert len(back) == len(pairs)


def test_png_stitch_that_fails_midway_puts_every_file_back(
    tmp_path: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_vfr_video(tmp_path / "in.mkv", *VFR_SOURCES["ffv1-aac.mkv"])
    segments, _ = write_segments(src, tmp_path / "segments", "", "ffv1")
    before = [listing(segment) for segment in segments]
    real_rename = os.rename
    calls = []

    def failing_rename(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        calls.append(a)
        if len(calls) == 10:
            raise PermissionError(13, "Permission denied")
        real_rename(a, b)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(PermissionError):
        stitch_segments(segments, out_dir / "frames", audio_from=None, fps=24)
    assert [listing(segment) for segment in segments] == before
    assert listing(out_dir) == []


# --- refusals ----------------------------------------------------------------------------------


def assert_refused(segments: list[Path], out: Path, phrase: str, **kwargs: object) -> None:
    """An InputError of one sentence naming the problem, and nothing written."""
    before = set(os.listdir(out.parent))
    with pytest.raises(InputError) as caught:
        stitch_segments(segments, out, **{"audio_from": None, "fps": 24, **kwargs})  # type: ignore[arg-type]
    message = str(caught.value)
    assert phrase in message
    assert message.endswith(".") and "\n" not in message and message.count("; ") == 1
    assert set(os.listdir(out.parent)) == before  # no output, no temporary file


def test_missing_segment_is_refused(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mp4", *VFR_SOURCES["h264-aac.mp4"])
    segments, _ = write_segments(src, tmp_path / "segments", ".mp4", "h264")
    segments[1].unlink()
    assert_refused(segments, out_dir / "o.mp4", "segment 2 of 3", audio_from=src)
    assert_refused(segments, out_dir / "o.mp4", "does not exist")
    assert_refused([], out_dir / "o.mp4", "no segments were given")


def test_segment_without_a_keyframe_first_is_refused(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mkv", *VFR_SOURCES["ffv1-aac.mkv"])
    segments, _ = write_segments(src, tmp_path / "segments", ".mkv", "ffv1")
    cut = tmp_path / "cut.mkv"  # the third segment without its first packet
    with av.open(str(segments[2])) as inp, av.open(str(cut), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in [p for p in inp.demux(video=0) if p.size][1:]:
            packet.stream = stream
            out.mux(packet)
    (out_dir / "o.mkv").write_bytes(b"old")
    assert_refused([segments[0], segments[1], cut], out_dir / "o.mkv", "does not start with a keyframe")
    assert (out_dir / "o.mkv").read_bytes() == b"old"  # an existing output is kept


def test_joint_with_no_room_for_the_b_frame_delay_is_refused(tmp_path: Path, out_dir: Path) -> None:
    # Frames 1 ms apart in Matroska (1 ms ticks) leave no tick between shots for x264's B-frame delay.
    frames = gradient_frames(n=24, width=64, height=48)
    segments = [tmp_path / "s0.mkv", tmp_path / "s1.mkv"]
    for segment, numbers in zip(segments, (range(12), range(12, 24)), strict=True):
        with FrameWriter(segment, 1000, codec="h264", segment=True) as writer:
            for i in numbers:
                writer.write(frames[i], Fraction(i, 1000))
    assert_refused(segments, out_dir / "o.mkv", "leaves too little room for its B-frame delay", fps=1000)


def test_segments_out_of_order_or_mismatched_are_refused(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mkv", *VFR_SOURCES["ffv1-aac.mkv"])
    segments, _ = write_segments(src, tmp_path / "segments", ".mkv", "ffv1")
    out = out_dir / "o.mkv"
    assert_refused([segments[0], segments[2], segments[1]], out, "segment 3 of 3")
    assert_refused([segments[0], segments[0]], out, "not after the previous segment's last frame")
    small = tmp_path / "small.mkv"
    with FrameWriter(small, 24, codec="ffv1", segment=True) as writer:
        writer.write(gradient_frames(n=1)[0], Fraction(10))
    assert_refused([segments[0], small], out, "48x40 frames where segment 1 has 64x48")
    other = tmp_path / "h264.mkv"
    with FrameWriter(other, 24, codec="h264", segment=True) as writer:
        writer.write(gradient_frames(n=1, width=64, height=48)[0], Fraction(10))
    assert_refused([segments[0], other], out, "h264 video where segment 1 has ffv1")
    assert_refused(segments, out_dir / "o.mp4", "is a .mkv file but the output is a .mp4 file")
    assert_refused(segments, out_dir / "frames", "is a file but the output is a folder of PNG frames")
    assert_refused(segments, segments[1], "is also segment 2 of 3")


def test_corrupt_segment_is_refused(tmp_path: Path, out_dir: Path) -> None:
    src = make_vfr_video(tmp_path / "in.mkv", *VFR_SOURCES["ffv1-aac.mkv"])
    segments, _ = write_segments(src, tmp_path / "segments", ".mkv", "ffv1")
    segments[2].write_bytes(os.urandom(2000))
    assert_refused(segments, out_dir / "o.mkv", "segment 3 of 3", audio_from=src)
    segments[2].write_bytes(b"")
    assert_refused(segments, out_dir / "o.mkv", "cannot be read as a video")


@pytest.mark.parametrize(
    ("src_name", "out_name", "codec"), [("ffv1-opus.mkv", "o.mov", "h264"), ("h264-aac.mp4", "o.webm", "vp9")]
)
def test_audio_the_container_cannot_hold_is_dropped_with_a_warning(
    tmp_path: Path, out_dir: Path, src_name: str, out_name: str, codec: str
) -> None:
    src = make_vfr_video(tmp_path / src_name, *VFR_SOURCES[src_name])
    segments, pairs = write_segments(src, tmp_path / "segments", Path(out_name).suffix, codec)
    with pytest.warns(UserWarning, match="cannot hold the .* audio"):
        stitch_segments(segments, out_dir / out_name, audio_from=src, fps=probe(src).fps)
    assert not probe(out_dir / out_name).has_audio
    assert len(read_timed(out_dir / out_name)) == len(pairs) and listing(out_dir) == [out_name]
