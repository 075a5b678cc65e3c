"""Tests for the video room (svsr.runtime.video): probe, FrameReader and FrameWriter on small synthetic videos made with PyAV in tmp_path."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from svsr.contract.codecs import CODECS, CONTAINERS
from svsr.contract.errors import InputError
from svsr.contract.sizes import MIN_SIDE
from svsr.runtime.video import (
    VIDEO_SUFFIXES,
    FrameReader,
    FrameWriter,
    VideoInfo,
    available_codecs,
    encoder_available,
    output_path_for,
    probe,
)
from svsr.runtime.video.images import natural_sort_key
from svsr.runtime.video.orientation import rotate_upright
from tests.support.media import (
    VFR_RATE,
    VFR_SOURCES,
    VFR_TIMES,
    H,
    N,
    W,
    add_audio_stream,
    audio_packets,
    audio_times,
    encode_sine,
    gradient_frames,
    listing,
    make_vfr_video,
    make_video,
    noise_frames,
    write_pngs,
)


def corrupt_packets_from(src: Path, dst: Path, first_bad: int) -> Path:
    """Copy src's video packets into dst, replacing every packet from index first_bad with noise."""
    rng = np.random.default_rng(1)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for index, packet in enumerate(p for p in inp.demux(in_stream) if p.size):
            if index >= first_bad:
                bad = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                bad.is_keyframe = packet.is_keyframe
                packet = bad
            packet.stream = out_stream
            out.mux(packet)
    return dst


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- reading -----------------------------------------------------------------------------------


def test_probe_video_reports_size_frames_rate_and_audio(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4", gradient_frames(), audio="aac")
    info = probe(path)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.num_frames, info.fps) == (W, H, N, Fraction(24))
    assert info.has_audio and not info.is_image_sequence
    assert info.rotation == 0
    assert info.time_base is not None and info.time_base > 0


def test_reader_yields_rgb_uint8_frames_and_stops(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mkv", noise_frames(), codec="ffv1", pix_fmt="bgr0")
    with FrameReader(path, queue_size=2) as reader:
        frames = list(reader)
        assert next(reader, None) is None  # exhausted iterators stay exhausted
    assert len(frames) == N
    assert all(f.dtype == np.uint8 and f.shape == (H, W, 3) and f.flags.c_contiguous for f in frames)


def test_reader_converts_other_pixel_formats_to_rgb(tmp_path: Path) -> None:
    src = noise_frames()
    path = make_video(tmp_path / "clip.mkv", src, codec="ffv1", pix_fmt="yuv444p")
    frames = list(FrameReader(path))
    assert frames[0].shape == (H, W, 3)
    # yuv444p keeps full chroma, so only the 8-bit colour-matrix rounding remains (measured max 3).
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(frames, src, strict=True)) <= 4


def decode_threads(path: Path) -> list[threading.Thread]:
    """The live background threads decoding ``path`` (FrameReader names them after the file)."""
    return [thread for thread in threading.enumerate() if thread.name == f"FrameReader({path.name})"]


def test_close_early_stops_the_decode_thread(tmp_path: Path) -> None:
    path = make_video(tmp_path / "close-early.mkv", noise_frames(), codec="ffv1", pix_fmt="bgr0")
    reader = FrameReader(path, queue_size=1)
    first = next(reader)
    assert len(decode_threads(path)) == 1  # waiting on the full queue, 11 frames still to decode
    reader.close()
    assert first.shape == (H, W, 3)
    assert decode_threads(path) == []
    assert next(reader, None) is None


def test_abandoned_reader_stops_its_thread(tmp_path: Path) -> None:
    path = make_video(tmp_path / "abandoned.mkv", noise_frames(), codec="ffv1", pix_fmt="bgr0")
    reader = FrameReader(path, queue_size=1)
    assert next(reader).shape == (H, W, 3)
    [thread] = decode_threads(path)
    del reader
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


# --- roundtrips --------------------------------------------------------------------------------


def test_mp4_h264_roundtrip_keeps_count_size_rate_and_pixels(tmp_path: Path, out_dir: Path) -> None:
    src = gradient_frames()
    fps = Fraction(30000, 1001)
    out = out_dir / "clip_x4.mp4"
    with FrameWriter(out, fps) as writer:
        for frame in src:
            writer.write(frame)
    assert listing(out_dir) == ["clip_x4.mp4"]
    info = probe(out)
    assert (info.width, info.height, info.num_frames, info.fps) == (W, H, N, fps)
    back = np.stack(list(FrameReader(out))).astype(int)
    err = np.abs(back - np.stack(src))
    # h264 crf 18 with 4:2:0 chroma on this 48x40 gradient: measured mean 1.61, max 13.
    assert err.mean() < 2.5
    assert err.max() <= 20


def test_yuv420_output_is_tagged_bt709(out_dir: Path) -> None:
    out = out_dir / "clip.mp4"
    with FrameWriter(out, 24) as writer:
        writer.write(gradient_frames(n=1)[0])
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
    assert (frame.colorspace, frame.color_primaries, frame.color_trc, frame.color_range) == (1, 1, 1, 1)


def test_h265_mp4_roundtrip_is_tagged_hvc1(out_dir: Path) -> None:
    src = gradient_frames(n=6, width=64, height=64)
    out = out_dir / "clip.mp4"
    with FrameWriter(out, 24, codec="h265") as writer:
        for frame in src:
            writer.write(frame)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc"
        assert stream.codec_tag == "hvc1"
    back = np.stack(list(FrameReader(out))).astype(int)
    # measured mean 1.58, max 12 for this gradient at crf 18.
    assert np.abs(back - np.stack(src)).mean() < 2.5


def test_ffv1_mkv_is_lossless(tmp_path: Path, out_dir: Path) -> None:
    src = noise_frames()
    made = make_video(tmp_path / "src.mkv", src, codec="ffv1", pix_fmt="bgr0")
    read = list(FrameReader(made))
    assert all(np.array_equal(a, b) for a, b in zip(read, src, strict=True)) and len(read) == N
    out = out_dir / "lossless.mkv"
    with FrameWriter(out, 24, codec="ffv1") as writer:
        for frame in read:
            writer.write(frame)
    back = list(FrameReader(out))
    assert len(back) == N
    assert all(np.array_equal(a, b) for a, b in zip(back, src, strict=True))


def test_vp9_webm_roundtrip(out_dir: Path) -> None:
    src = gradient_frames(n=4)
    out = out_dir / "clip.webm"
    with FrameWriter(out, 24, codec="vp9") as writer:
        for frame in src:
            writer.write(frame)
    info = probe(out)
    assert (info.width, info.height, info.num_frames) == (W, H, 4)
    back = np.stack(list(FrameReader(out))).astype(int)
    assert np.abs(back - np.stack(src)).mean() < 3  # measured 1.64


def test_writer_time_base_is_used(out_dir: Path) -> None:
    out = out_dir / "tb.mp4"
    with FrameWriter(out, 24, time_base=Fraction(1, 12288)) as writer:
        for frame in gradient_frames(n=4):
            writer.write(frame)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 12288)
        assert sorted(p.pts for p in container.demux(stream) if p.size) == [0, 512, 1024, 1536]


def test_png_folder_in_and_out_is_exact(tmp_path: Path, out_dir: Path) -> None:
    src = noise_frames(n=5)
    folder = write_pngs(tmp_path / "frames", src)
    info = probe(folder, fps=Fraction(25))
    assert (info.width, info.height, info.num_frames, info.fps) == (W, H, 5, Fraction(25))
    assert info.is_image_sequence and not info.has_audio and info.time_base is None
    assert probe(folder).fps == 24
    read = list(FrameReader(folder))
    assert all(np.array_equal(a, b) for a, b in zip(read, src, strict=True)) and len(read) == 5

    out = out_dir / "frames_x4"
    with FrameWriter(out, 24) as writer:
        for frame in read:
            writer.write(frame)
    assert listing(out_dir) == ["frames_x4"]
    assert listing(out) == [f"frame_{i:06d}.png" for i in range(5)]
    back = list(FrameReader(out))
    assert all(np.array_equal(a, b) for a, b in zip(back, src, strict=True))


def test_trailing_slash_means_png_folder_even_with_video_suffix(out_dir: Path) -> None:
    out = str(out_dir / "looks_like.mp4") + "/"
    with FrameWriter(out, 24) as writer:
        writer.write(noise_frames(n=1)[0])
    assert (out_dir / "looks_like.mp4").is_dir()
    assert listing(out_dir / "looks_like.mp4") == ["frame_000000.png"]


def test_folder_frames_are_naturally_sorted(tmp_path: Path) -> None:
    names = ["frame10.png", "frame2.jpg", "frame1.png", "Frame3.PNG"]
    # A distinct flat value per frame identifies the order (JPEG keeps flat colours almost exact).
    values = {"frame1.png": 10, "frame2.jpg": 60, "Frame3.PNG": 110, "frame10.png": 160}
    frames = [np.full((H, W, 3), values[n], np.uint8) for n in names]
    folder = write_pngs(tmp_path / "frames", frames, names)
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"")
    got = [int(round(f.mean())) for f in FrameReader(folder)]
    assert got == [10, 60, 110, 160]
    assert sorted(["a10", "a2", "a1", "b"], key=natural_sort_key) == ["a1", "a2", "a10", "b"]


def test_folder_exif_orientation_is_applied(tmp_path: Path) -> None:
    src = noise_frames(n=1)[0]
    folder = tmp_path / "frames"
    folder.mkdir()
    image = Image.fromarray(src)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(folder / "f1.png", exif=exif)
    info = probe(folder)
    assert (info.width, info.height) == (H, W)
    (frame,) = list(FrameReader(folder))
    assert np.array_equal(frame, np.rot90(src, -1))


# --- audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_name", "audio", "out_name"), [("a.mp4", "aac", "o.mp4"), ("a.mkv", "libopus", "o.mkv")]
)
def test_audio_is_copied_packet_for_packet(
    tmp_path: Path, out_dir: Path, src_name: str, audio: str, out_name: str
) -> None:
    src = make_video(tmp_path / src_name, gradient_frames(), audio=audio)
    out = out_dir / out_name
    with FrameReader(src) as reader, FrameWriter(out, probe(src).fps, audio_from=src) as writer:
        for frame in reader:
            writer.write(frame)
    codec_in, packets_in, duration_in = audio_packets(src)
    codec_out, packets_out, duration_out = audio_packets(out)
    assert codec_out == codec_in
    assert packets_out == packets_in  # identical payloads: remuxed, not re-encoded
    assert duration_out == pytest.approx(duration_in, abs=0.05)
    assert duration_out == pytest.approx(N / 24, abs=0.1)
    assert len(list(FrameReader(out))) == N
    assert listing(out_dir) == [out_name]


@pytest.mark.parametrize(
    ("src_name", "audio", "out_name", "codec"),
    [("a.mkv", "libopus", "o.mov", "h264"), ("a.mp4", "aac", "o.webm", "vp9")],
)
def test_audio_the_container_cannot_hold_is_dropped_with_a_warning(
    tmp_path: Path, out_dir: Path, src_name: str, audio: str, out_name: str, codec: str
) -> None:
    src = make_video(tmp_path / src_name, gradient_frames(n=4), audio=audio)
    out = out_dir / out_name
    with pytest.warns(UserWarning, match="cannot hold the .* audio"):
        with FrameWriter(out, 24, codec=codec, audio_from=src) as writer:
            for frame in FrameReader(src):
                writer.write(frame)
    info = probe(out)
    assert not info.has_audio and info.num_frames == 4
    assert listing(out_dir) == [out_name]


def test_png_folder_output_warns_that_audio_is_not_copied(tmp_path: Path, out_dir: Path) -> None:
    src = make_video(tmp_path / "a.mp4", gradient_frames(n=2), audio="aac")
    with pytest.warns(UserWarning, match="PNG folder cannot hold the audio"):
        with FrameWriter(out_dir / "frames", 24, audio_from=src) as writer:
            for frame in FrameReader(src):
                writer.write(frame)
    assert listing(out_dir / "frames") == ["frame_000000.png", "frame_000001.png"]


def test_audio_from_a_silent_video_writes_video_only(tmp_path: Path, out_dir: Path) -> None:
    src = make_video(tmp_path / "silent.mp4", gradient_frames(n=3))
    out = out_dir / "o.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with FrameWriter(out, 24, audio_from=src) as writer:
            for frame in FrameReader(src):
                writer.write(frame)
    assert not probe(out).has_audio and probe(out).num_frames == 3


# --- rotation ----------------------------------------------------------------------------------


ORIENTATIONS = [(r, h, v) for r in (0, 90, 180, 270) for h in (False, True) for v in (False, True)]


@pytest.mark.parametrize(("rotation", "hflip", "vflip"), ORIENTATIONS)
def test_display_matrix_is_honoured(tmp_path: Path, rotation: int, hflip: bool, vflip: bool) -> None:
    src = noise_frames(n=2)
    path = make_video(
        tmp_path / "rot.mkv", src, codec="ffv1", pix_fmt="bgr0", rotation=rotation, hflip=hflip, vflip=vflip
    )
    # PyAV documents set_display_rotation as: turn counter-clockwise, then mirror.
    expected = [np.rot90(f, rotation // 90) for f in src]
    expected = [e[:, ::-1] if hflip else e for e in expected]
    expected = [e[::-1] if vflip else e for e in expected]
    info = probe(path)
    assert (info.height, info.width) == expected[0].shape[:2]
    frames = list(FrameReader(path))
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True)) and len(frames) == 2


def test_rotate_upright_helper() -> None:
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(rotate_upright(frame, 0), frame)
    assert np.array_equal(rotate_upright(frame, 90), np.rot90(frame, 1))
    assert np.array_equal(rotate_upright(frame, -90), np.rot90(frame, -1))
    assert np.array_equal(rotate_upright(frame, 180), frame[::-1, ::-1])
    # FFmpeg display matrices (16.16 fixed point): pure horizontal mirror and a 90 degree CCW turn.
    one = 1 << 16
    assert np.array_equal(rotate_upright(frame, 180, [-one, 0, 0, 0, one, 0, 0, 0, 1 << 30]), frame[:, ::-1])
    assert np.array_equal(
        rotate_upright(frame, 90, [0, -one, 0, one, 0, 0, 0, 0, 1 << 30]), np.rot90(frame, 1)
    )
    assert rotate_upright(frame, 90).flags.c_contiguous


# --- chunks ------------------------------------------------------------------------------------


def test_start_and_count_read_a_video_in_chunks(tmp_path: Path) -> None:
    src = noise_frames()
    path = make_video(tmp_path / "clip.mkv", src, codec="ffv1", pix_fmt="bgr0")
    chunk = list(FrameReader(path, start=4, count=5))
    assert len(chunk) == 5
    assert all(np.array_equal(a, b) for a, b in zip(chunk, src[4:9], strict=True))
    assert FrameReader(path, start=4, count=5).num_frames == 5
    assert FrameReader(path, start=10, count=5).num_frames == 2
    assert list(FrameReader(path, start=N)) == []
    assert list(FrameReader(path, count=0)) == []

    pieces = []
    for start in range(0, N, 5):
        with FrameReader(path, start=start, count=5) as reader:
            pieces.append(list(reader))
    assert [len(p) for p in pieces] == [5, 5, 2]
    assert all(np.array_equal(a, b) for a, b in zip([f for p in pieces for f in p], src, strict=True))

    with FrameReader(path) as reader:
        sizes = [len(reader.read(5)) for _ in range(4)]
    assert sizes == [5, 5, 2, 0]


def test_start_and_count_on_a_folder(tmp_path: Path) -> None:
    src = noise_frames(n=6)
    folder = write_pngs(tmp_path / "frames", src)
    chunk = list(FrameReader(folder, start=2, count=3))
    assert len(chunk) == 3
    assert all(np.array_equal(a, b) for a, b in zip(chunk, src[2:5], strict=True))


def test_start_and_count_must_not_be_negative(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4", gradient_frames(n=2))
    with pytest.raises(ValueError, match="start and count"):
        FrameReader(path, start=-1)


# --- timestamps (variable frame rate) ----------------------------------------------------------

def timed_copy(src: Path, out: Path, codec: str, **kwargs: object) -> tuple[list[Fraction], FrameWriter]:
    """Copy src to out passing every frame's time through; return the input times and the writer."""
    info = probe(src)
    times = []
    writer = FrameWriter(out, info.fps, codec=codec, **kwargs)  # type: ignore[arg-type]
    with FrameReader(src) as reader, writer:
        for frame, time in reader.timed():
            times.append(time)
            writer.write(frame, time)
    return times, writer


@pytest.mark.parametrize(
    ("src_name", "out_name", "codec"),
    [
        ("h264-aac.mp4", "o.mp4", "h264"),
        ("h264-aac.mp4", "o.mkv", "h264"),
        ("h264-aac.mp4", "o.mov", "h264"),
        ("ffv1-aac.mkv", "o.mkv", "ffv1"),
        ("ffv1-aac.mkv", "o.mp4", "h264"),
        ("ffv1-opus.mkv", "o.webm", "vp9"),
    ],
)
def test_vfr_frame_times_and_audio_survive_a_timed_copy(
    tmp_path: Path, out_dir: Path, src_name: str, out_name: str, codec: str
) -> None:
    src = make_vfr_video(tmp_path / src_name, *VFR_SOURCES[src_name])
    info = probe(src)
    times, writer = timed_copy(src, out_dir / out_name, codec, audio_from=src, time_base=info.time_base)
    assert times == VFR_TIMES  # the reader gives each frame's own time, from 0
    out = out_dir / out_name
    with av.open(str(out)) as container:
        assert container.streams.video[0].time_base == writer.output_time_base
    tick = writer.output_time_base
    # Matroska stores milliseconds; MP4/MOV keep the input's 1/90000, or double 1/1000 up to 1/16000.
    expected_tick = Fraction(1, 90000) if src.suffix == ".mp4" else Fraction(1, 16000)
    assert tick == (Fraction(1, 1000) if out.suffix in (".mkv", ".webm") else expected_tick)
    with FrameReader(out) as reader:
        back = reader.read_timed(100)
    assert len(back) == len(times)
    assert all(abs(t_out - t_in) <= tick for (_, t_out), t_in in zip(back, times, strict=True))
    # Audio packets keep their times relative to the video (measured: identical, or 1/3 ms off
    # where Matroska rounds AAC's 1/48000 s times to milliseconds), so audio and video stay in sync.
    starts_in, end_in = audio_times(src)
    starts_out, end_out = audio_times(out)
    assert len(starts_out) == len(starts_in)
    assert max(abs(a - b) for a, b in zip(starts_in, starts_out, strict=True)) <= Fraction(1, 1000)
    # Matroska keeps no shorter duration for the last AAC packet: 13 ms more there, under a frame.
    assert abs(end_out - end_in) <= 1 / info.fps


def test_constant_rate_times_are_kept(tmp_path: Path, out_dir: Path) -> None:
    src = make_video(tmp_path / "cfr.mp4", gradient_frames(), fps=Fraction(30000, 1001), audio="aac")
    times, writer = timed_copy(src, out_dir / "o.mp4", "h264", audio_from=src, time_base=probe(src).time_base)
    assert times == [i * Fraction(1001, 30000) for i in range(N)]
    back = [t for _, t in FrameReader(out_dir / "o.mp4").timed()]
    assert back == times  # the input's time base (1/30000) is kept, so the times are exact
    assert writer.output_time_base == probe(src).time_base
    # an h264 AVI (no presentation times, B-frames decoded late) still gives i / fps
    with FrameWriter(out_dir / "o.avi", 24) as avi:
        for frame in gradient_frames():
            avi.write(frame)
    assert [t for _, t in FrameReader(out_dir / "o.avi").timed()] == [Fraction(i, 24) for i in range(N)]


def test_timed_reading_of_folders_and_chunks(tmp_path: Path) -> None:
    folder = write_pngs(tmp_path / "frames", noise_frames(n=6))
    assert [t for _, t in FrameReader(folder, fps=25).timed()] == [Fraction(i, 25) for i in range(6)]
    assert [t for _, t in FrameReader(folder, start=2, count=3).read_timed(10)] == [
        Fraction(i, 24) for i in (2, 3, 4)
    ]
    src = make_vfr_video(tmp_path / "v.mkv", *VFR_SOURCES["ffv1-aac.mkv"])
    with FrameReader(src, start=5, count=4) as reader:
        first = next(reader)  # plain iteration and timed reading share one queue
        rest = reader.read_timed(10)
        assert reader.read_timed(1) == []
    assert [t for _, t in rest] == VFR_TIMES[6:9]  # times stay those of the whole video
    assert first.shape == (48, 64, 3)


def test_timed_pts_round_to_ticks_and_always_increase(out_dir: Path) -> None:
    out = out_dir / "o.mkv"
    times = [0, Fraction(4, 10000), Fraction(4, 10000), Fraction(1, 100), Fraction(99, 10000), 0.5]
    with FrameWriter(out, 24, codec="ffv1") as writer:
        for frame, time in zip(noise_frames(n=6), times, strict=True):
            writer.write(frame, time)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 1000)  # Matroska stores milliseconds
        # 0.4 ms rounds to 0 and 9.9 ms to 10, which repeat: each is moved one tick later
        assert [p.pts for p in container.demux(stream) if p.size] == [0, 1, 2, 10, 11, 500]


def test_timed_writer_defaults_and_mixing(out_dir: Path) -> None:
    with FrameWriter(out_dir / "a.mp4", 24) as writer:
        writer.write(gradient_frames(n=1)[0], Fraction(0))
        writer.write(gradient_frames(n=1)[0])  # no time after timed frames: previous + 1/fps
        writer.write(gradient_frames(n=1)[0], 0.25)
    assert writer.timed and writer.output_time_base == Fraction(1, 90000)
    assert [t for _, t in FrameReader(out_dir / "a.mp4").timed()] == [0, Fraction(1, 24), Fraction(1, 4)]
    with pytest.raises(ValueError, match="pass a time with every frame or with none"):
        with FrameWriter(out_dir / "b.mp4", 24) as writer:
            writer.write(gradient_frames(n=1)[0])
            writer.write(gradient_frames(n=1)[0], 0.1)
    assert listing(out_dir) == ["a.mp4"]


@pytest.mark.parametrize("out_name", ["o.avi", "frames"])
def test_outputs_without_frame_times_warn_when_times_are_lost(out_dir: Path, out_name: str) -> None:
    frames = noise_frames(n=len(VFR_TIMES), width=64, height=48)
    codec = "ffv1"
    with pytest.warns(UserWarning, match=r"no per-frame times, .* up to 0\.\d+ s away from their times"):
        with FrameWriter(out_dir / out_name, VFR_RATE, codec=codec) as writer:
            for frame, time in zip(frames, VFR_TIMES, strict=True):
                writer.write(frame, time)
    assert probe(out_dir / out_name).num_frames == len(VFR_TIMES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # times on the constant-rate grid lose nothing: no warning
        with FrameWriter(out_dir / f"cfr_{out_name}", 24, codec=codec) as writer:
            for i, frame in enumerate(frames):
                writer.write(frame, Fraction(i, 24))


# --- output names ------------------------------------------------------------------------------


def test_output_path_for(tmp_path: Path) -> None:
    assert output_path_for("clip.mp4") == Path("clip_x4.mp4")
    assert output_path_for("a/b/clip.MKV") == Path("a/b/clip_x4.MKV")
    (tmp_path / "frames").mkdir()
    assert output_path_for(tmp_path / "frames") == tmp_path / "frames_x4"
    assert output_path_for(str(tmp_path / "frames") + "/") == tmp_path / "frames_x4"


# --- input errors ------------------------------------------------------------------------------


def _assert_input_error(path: Path, phrase: str, **kwargs: object) -> InputError:
    parent = path.parent
    before = listing(parent)
    with pytest.raises(InputError, match=phrase) as probe_error:
        probe(path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=phrase):
        FrameReader(path, **kwargs)  # type: ignore[arg-type]
    assert listing(parent) == before
    message = str(probe_error.value)
    assert message.endswith(".") and "; " in message  # one sentence: problem; fix.
    return probe_error.value


def test_error_missing_path(tmp_path: Path) -> None:
    _assert_input_error(tmp_path / "nope.mp4", "does not exist")


def test_error_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    _assert_input_error(tmp_path / "empty.mp4", r"is empty \(0 bytes\)")


def test_error_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    _assert_input_error(tmp_path / "in.mp4", "is not a video file PyAV can decode")


def test_error_text_file_is_not_a_video(tmp_path: Path) -> None:
    # FFmpeg's tty demuxer would otherwise "decode" any text file as a video.
    (tmp_path / "notes.txt").write_text("hello\n" * 200)
    _assert_input_error(tmp_path / "notes.txt", "is not a video file PyAV can decode")


def test_error_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        encode_sine(container, add_audio_stream(container, "aac"), 0.2)
    _assert_input_error(path, "has no video stream")


def test_error_zero_decodable_frames(tmp_path: Path) -> None:
    # A Matroska file keeps an empty video track next to the audio.
    path = make_video(tmp_path / "empty_video.mkv", [], audio="aac")
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1
    _assert_input_error(path, "no decodable frames")


def test_error_corrupt_before_the_first_frame(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", gradient_frames())
    bad = corrupt_packets_from(good, tmp_path / "bad.mkv", first_bad=0)
    _assert_input_error(bad, "decoding failed before the first frame")


@pytest.mark.parametrize("codec", ["libx264", "ffv1"])
def test_corrupt_after_some_frames_keeps_them_and_warns(tmp_path: Path, codec: str) -> None:
    src = noise_frames()
    good = make_video(
        tmp_path / "good.mkv", src, codec=codec, pix_fmt="yuv420p" if codec == "libx264" else "bgr0"
    )
    bad = corrupt_packets_from(good, tmp_path / "bad.mkv", first_bad=5)
    assert probe(bad).num_frames in (N - 1, N)  # estimated from the Matroska duration
    with pytest.warns(UserWarning, match="read 5 frames"):
        frames = list(FrameReader(bad))
    # h264 reorders frames, so the decoder's buffered frames must be drained after the error.
    assert len(frames) == 5
    if codec == "ffv1":
        assert all(np.array_equal(a, b) for a, b in zip(frames, src[:5], strict=True))


def test_truncated_file_warns_with_the_count(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mkv", noise_frames(), codec="ffv1", pix_fmt="bgr0")
    data = good.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.warns(UserWarning, match=r"ended early: read \d+ of about 12 frames") as record:
        frames = list(FrameReader(cut))
    assert 0 < len(frames) < N
    assert f"read {len(frames)} of" in str(record[0].message)


def test_error_video_frames_too_small(tmp_path: Path) -> None:
    path = make_video(tmp_path / "tiny.mp4", gradient_frames(n=2, width=MIN_SIDE - 8, height=40))
    _assert_input_error(path, f"at least {MIN_SIDE} px")


def test_error_folder_frames_too_small(tmp_path: Path) -> None:
    folder = write_pngs(tmp_path / "frames", noise_frames(n=2, width=48, height=20))
    _assert_input_error(folder, f"at least {MIN_SIDE} px")


def test_error_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    _assert_input_error(tmp_path / "frames", "contains no PNG/JPEG frames")


def test_error_folder_without_png_or_jpeg(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    Image.fromarray(noise_frames(n=1)[0]).save(folder / "a.bmp")
    _assert_input_error(folder, "contains no PNG/JPEG frames")


def test_error_folder_size_mismatch_names_file_and_sizes(tmp_path: Path) -> None:
    folder = write_pngs(tmp_path / "frames", noise_frames(n=3), ["f1.png", "f2.png", "f10.png"])
    Image.fromarray(noise_frames(n=1, width=50)[0]).save(folder / "f3.png")
    Image.fromarray(noise_frames(n=1, width=52)[0]).save(folder / "f4.png")
    error = _assert_input_error(folder, "f3.png is 50x40 but the first frame f1.png is 48x40")
    assert "same size" in str(error)


def test_unreadable_frame_error_is_raised_in_the_consumer(tmp_path: Path) -> None:
    src = noise_frames(n=4)
    folder = write_pngs(tmp_path / "frames", src, ["f1.png", "f2.png", "f3.png", "f4.png"])
    data = (folder / "f3.png").read_bytes()
    (folder / "f3.png").write_bytes(data[:60])  # header intact (probe passes), pixel data cut off
    reader = FrameReader(folder)
    assert np.array_equal(next(reader), src[0])
    assert np.array_equal(next(reader), src[1])
    with pytest.raises(InputError, match="f3.png is not a readable PNG/JPEG image"):
        next(reader)
    reader.close()


# --- output errors and atomic writes -----------------------------------------------------------


def _assert_writer_error(out_dir: Path, phrase: str, make, frames=()) -> None:  # noqa: ANN001
    before = listing(out_dir)
    with pytest.raises(InputError, match=phrase) as error:
        with make() as writer:
            for frame in frames:
                writer.write(frame)
    assert listing(out_dir) == before  # neither the output nor a temporary file is left behind
    message = str(error.value)
    assert message.endswith(".") and "; " in message


def test_error_odd_size_for_yuv420(out_dir: Path) -> None:
    odd = noise_frames(n=2, width=47, height=40)
    _assert_writer_error(out_dir, "odd side.*ffv1", lambda: FrameWriter(out_dir / "o.mp4", 24), odd)
    with FrameWriter(out_dir / "odd.mkv", 24, codec="ffv1") as writer:  # the suggested fix works
        for frame in odd:
            writer.write(frame)
    assert probe(out_dir / "odd.mkv").width == 47


def test_error_ffv1_needs_mkv_or_avi(out_dir: Path) -> None:
    _assert_writer_error(
        out_dir, r"cannot hold ffv1 video; use a \.mkv/\.avi output", lambda: FrameWriter(out_dir / "o.mp4", 24, codec="ffv1")
    )


def test_error_h264_in_webm_and_unknown_codec(out_dir: Path) -> None:
    _assert_writer_error(
        out_dir, r"cannot hold h264 video; use a \.mp4/\.mkv/\.mov/\.avi output or codec='vp9'", lambda: FrameWriter(out_dir / "o.webm", 24)
    )
    _assert_writer_error(
        out_dir, "unknown codec codec='av2'; use one of h264, h265, ffv1, vp9", lambda: FrameWriter(out_dir / "o.mkv", 24, codec="av2")
    )


def test_error_crf_outside_the_codec_range(out_dir: Path) -> None:
    _assert_writer_error(
        out_dir, r"crf=60 is outside 0\.\.51 for h265", lambda: FrameWriter(out_dir / "o.mp4", 24, codec="h265", crf=60)
    )


def test_writer_takes_exactly_the_containers_of_the_codec_table(out_dir: Path) -> None:
    assert VIDEO_SUFFIXES == tuple(CONTAINERS)
    for name, codec in CODECS.items():
        for suffix in VIDEO_SUFFIXES:
            if suffix in codec.containers:
                FrameWriter(out_dir / f"o{suffix}", 24, codec=name).abort()
            else:
                with pytest.raises(InputError, match=f"a \\{suffix} file cannot hold {name} video"):
                    FrameWriter(out_dir / f"o{suffix}", 24, codec=name)
    assert listing(out_dir) == []


def test_available_codecs_are_the_table_codecs_pyav_encodes() -> None:
    assert available_codecs() == [name for name in CODECS if encoder_available(name)]
    assert "h264" in available_codecs()  # every roundtrip above encodes with libx264
    assert not encoder_available("av2")


def test_a_missing_encoder_leaves_its_codec_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real_codec = av.codec.Codec

    def codec_without_libx265(name: str, mode: str = "r") -> av.codec.Codec:  # double: an FFmpeg built without x265
        if name == "libx265":
            raise ValueError(f"unknown codec {name}")
        return real_codec(name, mode)

    monkeypatch.setattr(av.codec, "Codec", codec_without_libx265)
    encoder_available.cache_clear()
    try:
        assert not encoder_available("h265")
        assert available_codecs() == [name for name in CODECS if name != "h265"]
    finally:
        encoder_available.cache_clear()  # the next caller asks the real PyAV again


def test_error_h265_frames_too_small(out_dir: Path) -> None:
    # libx265 in the PyAV 18.1 wheel aborts the process on some frames under 64 px.
    frames = gradient_frames(n=1)
    _assert_writer_error(
        out_dir, "too small for h265", lambda: FrameWriter(out_dir / "o.mp4", 24, codec="h265"), frames
    )


def test_error_output_is_the_input(tmp_path: Path) -> None:
    src = make_video(tmp_path / "clip.mp4", gradient_frames(n=2))
    before = src.read_bytes()
    _assert_writer_error(tmp_path, "is the input file itself", lambda: FrameWriter(src, 24, audio_from=src))
    alias = tmp_path / "sub" / ".." / "clip.mp4"
    (tmp_path / "sub").mkdir()
    _assert_writer_error(tmp_path, "is the input file itself", lambda: FrameWriter(alias, 24, audio_from=src))
    assert src.read_bytes() == before


def test_error_missing_audio_source(out_dir: Path) -> None:
    _assert_writer_error(
        out_dir, "does not exist", lambda: FrameWriter(out_dir / "o.mp4", 24, audio_from=out_dir / "gone.mp4")
    )


def test_error_output_parent_missing_or_not_writable(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _assert_writer_error(
        out_dir, "does not exist or is not a folder", lambda: FrameWriter(out_dir / "no" / "o.mp4", 24)
    )
    # Tests may run as root, which ignores permission bits, so fake the access check.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == out_dir else real_access(p, mode)
    )
    _assert_writer_error(out_dir, "is not writable", lambda: FrameWriter(out_dir / "o.mp4", 24))
    _assert_writer_error(out_dir, "is not writable", lambda: FrameWriter(out_dir / "frames", 24))


def test_error_output_folder_not_empty(out_dir: Path) -> None:
    (out_dir / "frames").mkdir()
    (out_dir / "frames" / "keep.txt").write_text("x")
    _assert_writer_error(out_dir, "is not empty", lambda: FrameWriter(out_dir / "frames", 24))
    assert listing(out_dir / "frames") == ["keep.txt"]


def test_empty_output_folder_is_reused(out_dir: Path) -> None:
    (out_dir / "frames").mkdir()
    with FrameWriter(out_dir / "frames", 24) as writer:
        writer.write(noise_frames(n=1)[0])
    assert listing(out_dir / "frames") == ["frame_000000.png"]


def test_error_no_frames_written(out_dir: Path) -> None:
    _assert_writer_error(out_dir, "no frames were written", lambda: FrameWriter(out_dir / "o.mp4", 24))
    _assert_writer_error(out_dir, "no frames were written", lambda: FrameWriter(out_dir / "frames", 24))


def test_error_frame_size_changes(out_dir: Path) -> None:
    frames = [noise_frames(n=1)[0], noise_frames(n=1, width=50)[0]]
    _assert_writer_error(
        out_dir,
        "frame 1 is 50x40 but the first frame was 48x40",
        lambda: FrameWriter(out_dir / "o.mkv", 24, codec="ffv1"),
        frames,
    )


@pytest.mark.parametrize("name", ["o.mp4", "o.mkv", "frames"])
def test_exception_inside_with_leaves_nothing_and_keeps_the_old_output(out_dir: Path, name: str) -> None:
    target = out_dir / name
    if name != "frames":
        target.write_bytes(b"previous result")
    before = listing(out_dir)
    with pytest.raises(RuntimeError, match="boom"):
        with FrameWriter(target, 24, codec="ffv1" if name == "o.mkv" else "h264") as writer:
            for frame in gradient_frames(n=3):
                writer.write(frame)
            # the temporary output exists while writing, under a hidden name next to the target
            assert any(n.startswith(f".{name}.partial-") for n in listing(out_dir))
            raise RuntimeError("boom")
    assert listing(out_dir) == before
    if name != "frames":
        assert target.read_bytes() == b"previous result"


def test_existing_output_file_is_replaced_on_success(out_dir: Path) -> None:
    target = out_dir / "o.mkv"
    target.write_bytes(b"previous result")
    with FrameWriter(target, 24, codec="ffv1") as writer:
        writer.write(noise_frames(n=1)[0])
    assert probe(target).num_frames == 1
    assert listing(out_dir) == ["o.mkv"]


def test_runtime_video_does_not_import_torch() -> None:
    code = (
        "import sys, svsr.runtime.video; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
