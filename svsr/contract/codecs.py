"""The one codec and container table: which encoders svsr writes with, into which containers, at which CRF.

Pure data and rules (no PyAV): the video writer encodes with it, :class:`VideoOptions` validates
against it, the CLI's ``choices`` and the doctor's encoder check are read from it. Whether this
machine's FFmpeg has an encoder is asked by the video room (``svsr.runtime.video``).
"""

from __future__ import annotations

from dataclasses import dataclass

from svsr.contract.errors import InputError

__all__ = ["CODECS", "CONTAINERS", "DEFAULT_CODEC", "DEFAULT_CRF", "TIMED_SUFFIXES", "Codec", "check_codec", "codec_problem"]


@dataclass(frozen=True)
class Codec:
    """One output codec: the FFmpeg encoder, its pixel format, the containers that hold it, the CRF range."""

    name: str
    encoder: str
    pixel_format: str
    containers: tuple[str, ...]  # output suffixes, lower case with the dot
    crf_range: tuple[int, int]
    lossless: bool = False  # CRF is accepted but ignored


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("h264", "libx264", "yuv420p", (".mp4", ".mkv", ".mov", ".avi"), (0, 51)),
        Codec("h265", "libx265", "yuv420p", (".mp4", ".mkv", ".mov"), (0, 51)),
        Codec("ffv1", "ffv1", "bgr0", (".mkv", ".avi"), (0, 63), lossless=True),
        Codec("vp9", "libvpx-vp9", "yuv420p", (".webm", ".mkv", ".mp4"), (0, 63)),
    )
}
# output suffix -> FFmpeg muxer name
CONTAINERS: dict[str, str] = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}
# Outputs that store a presentation time per frame; AVI and PNG folders only have a frame rate.
TIMED_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
DEFAULT_CODEC = "h264"
DEFAULT_CRF = 18


def codec_problem(codec: str, crf: int | None = None, suffix: str | None = None, *, spell=lambda name, value: f"{name}={value!r}") -> str | None:
    """The sentence saying why ``codec`` (at ``crf``, into a ``suffix`` file) cannot be written, or None.

    ``spell(name, value)`` writes an option the way the caller's user wrote it: the API's keyword
    (``codec='vp9'``) by default, the CLI passes one that writes ``--codec vp9``.
    """
    if codec not in CODECS:
        return f"unknown codec {spell('codec', codec)}; use one of {', '.join(CODECS)}."
    entry = CODECS[codec]
    if crf is not None:
        low, high = entry.crf_range
        if isinstance(crf, bool) or not isinstance(crf, int) or not low <= crf <= high:
            return f"{spell('crf', crf)} is outside {low}..{high} for {codec}; lower is better quality (default {DEFAULT_CRF})."
    if suffix is not None and suffix.lower() in CONTAINERS and suffix.lower() not in entry.containers:
        fits = [name for name, other in CODECS.items() if suffix.lower() in other.containers]
        return (
            f"a {suffix} file cannot hold {codec} video; use a {'/'.join(entry.containers)} output"
            f" or {spell('codec', fits[0]) if fits else 'another codec'}."
        )
    return None


def check_codec(codec: str, crf: int | None = None, suffix: str | None = None, **kwargs) -> None:
    """Raise :class:`InputError` with :func:`codec_problem`'s sentence, if there is one."""
    problem = codec_problem(codec, crf, suffix, **kwargs)
    if problem:
        raise InputError(problem)
