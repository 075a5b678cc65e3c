"""Media makers shared by the video, stitch, timing and fuzz tests: synthetic frames, clips (VFR too), audio, PNG folders.

Clips are encoded with PyAV directly, independent of svsr's FrameWriter, so the reader and writer
are tested against files they did not make.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

W, H, N = 48, 40, 12
"""The default clip: 48x40 (even sides, at least svsr's minimum), 12 frames."""


def gradient_frames(n: int = N, width: int = W, height: int = H) -> list[np.ndarray]:
    """A smooth gradient that moves a little each frame (smooth so lossy codecs stay close)."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.stack([40 + 3 * (x % 48) + 2 * i, 30 + 2 * (y % 64), 100 + (x % 48) + (y % 40) + i], -1).astype(
            np.uint8
        )
        for i in range(n)
    ]


def noise_frames(n: int = N, width: int = W, height: int = H, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def add_audio_stream(container: av.container.OutputContainer, codec: str) -> av.audio.stream.AudioStream:
    """A mono 48 kHz audio stream of ``codec`` (aac, libopus...) in an output container."""
    stream = container.add_stream(codec, rate=48000)
    stream.layout = "mono"
    return stream


def encode_sine(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    """Encode ``seconds`` of a 440 Hz sine into ``stream`` and flush it."""
    fmt = stream.codec_context.format.name
    frame_size = stream.codec_context.frame_size or 1024
    total = int(48000 * seconds)
    for start in range(0, total, frame_size):
        t = np.arange(start, min(start + frame_size, total)) / 48000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        if fmt.startswith("s16"):
            samples = (samples * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        frame.sample_rate = 48000
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: Fraction | int = 24,
    audio: str | None = None,
    rotation: int | None = None,
    hflip: bool = False,
    vflip: bool = False,
) -> Path:
    """Encode frames at a constant rate (and a sine as long as them, if ``audio`` names a codec)."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames[0].shape[:2] if frames else (H, W)
    stream.pix_fmt = pix_fmt
    if rotation is not None:
        stream.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
    audio_stream = add_audio_stream(container, audio) if audio is not None else None
    for i, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    if audio_stream is not None:
        encode_sine(container, audio_stream, max(len(frames), 1) / float(fps))
    container.close()
    return path


# 20 frames at irregular times (steps from 17 to 85 ms, whole milliseconds so every container
# stores them exactly), as phone and screen recordings have.
VFR_STEPS = [Fraction(ms, 1000) for ms in (40, 85, 25, 33, 50, 17, 80, 41)]
VFR_TIMES = [sum(VFR_STEPS[: i % 8], Fraction(0)) + (i // 8) * sum(VFR_STEPS) for i in range(20)]
VFR_END = VFR_TIMES[-1] + VFR_STEPS[19 % 8]
VFR_RATE = len(VFR_TIMES) / VFR_END  # the average rate, as a VFR file's header gives it

# file name -> make_vfr_video's (codec, pix_fmt, time_base, audio)
VFR_SOURCES = {
    "h264-aac.mp4": ("libx264", "yuv420p", Fraction(1, 90000), "aac"),
    "ffv1-aac.mkv": ("ffv1", "bgr0", Fraction(1, 1000), "aac"),
    "ffv1-opus.mkv": ("ffv1", "bgr0", Fraction(1, 1000), "libopus"),
}


def make_vfr_video(
    path: Path, codec: str, pix_fmt: str, time_base: Fraction, audio: str, frames: list[np.ndarray] | None = None
) -> Path:
    """VFR video (VFR_TIMES, 64x48: ``frames`` or a gradient) with a sine audio track lasting until the last frame ends."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=VFR_RATE)
    stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
    stream.codec_context.time_base = stream.time_base = time_base
    audio_stream = add_audio_stream(container, audio)
    for array, time in zip(frames if frames is not None else gradient_frames(n=20, width=64, height=48), VFR_TIMES, strict=True):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = round(time / time_base), time_base
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    encode_sine(container, audio_stream, float(VFR_END))
    container.close()
    return path


def write_pngs(folder: Path, frames: list[np.ndarray], names: list[str] | None = None) -> Path:
    """Save frames as PNG files in ``folder`` (named ``img_0000.png``... unless ``names`` are given)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"img_{i:04d}.png" for i in range(len(frames))]
    for name, array in zip(names, frames, strict=True):
        Image.fromarray(array).save(folder / name)
    return folder


def audio_packets(path: Path) -> tuple[str, list[bytes], float]:
    """Codec name, packet payloads and total duration in seconds of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        duration = float(sum(p.duration for p in packets) * stream.time_base)
        return stream.codec_context.name, [bytes(p) for p in packets], duration


def audio_times(path: Path) -> tuple[list[Fraction], Fraction]:
    """Start time of every audio packet and the end of the last, in seconds from the video's start."""
    with av.open(str(path)) as container:
        video_stream = container.streams.video[0]
        origin = (video_stream.start_time or 0) * video_stream.time_base
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        starts = [p.pts * stream.time_base - origin for p in packets]
        return starts, (packets[-1].pts + packets[-1].duration) * stream.time_base - origin


def listing(folder: Path) -> list[str]:
    """The names in ``folder``, sorted (hidden temporary outputs included)."""
    return sorted(os.listdir(folder))
