"""Where an output goes: its default name, video file or PNG folder, the checks before writing, its temporary name.

Shared by the writer and the stitch, which both write under a hidden name beside the target and
rename it into place only when everything succeeded.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from svsr.contract.codecs import CONTAINERS
from svsr.contract.errors import InputError

__all__ = ["VIDEO_SUFFIXES", "cannot_write", "check_output", "is_video_path", "output_path_for", "temp_name"]

VIDEO_SUFFIXES = tuple(CONTAINERS)
"""Suffixes of the video files svsr reads and writes (the codec table's containers)."""


def output_path_for(input_path: str | os.PathLike[str]) -> Path:
    """Default output name next to the input.

    ``clip.mp4`` -> ``clip_x4.mp4``, folder ``frames/`` -> ``frames_x4`` (a PNG folder).
    """
    path = Path(input_path)
    if path.is_dir() or path.suffix.lower() not in VIDEO_SUFFIXES:
        return path.with_name(f"{path.name}_x4")
    return path.with_name(f"{path.stem}_x4{path.suffix}")


def is_video_path(raw: str) -> bool:
    """Whether an output path names a video file (a known suffix, no trailing '/') or a PNG folder."""
    return Path(raw).suffix.lower() in VIDEO_SUFFIXES and not raw.endswith(("/", os.sep))


def temp_name(path: Path) -> Path:
    """The hidden name an output is written under until it is complete."""
    return path.parent / f".{path.name}.partial-{secrets.token_hex(4)}"


def check_output(path: Path, is_video: bool, audio_from: Path | None) -> None:
    """Refuse an output that is the input, has no writable folder, or would overwrite the wrong thing."""
    if audio_from is not None and path.resolve() == audio_from.resolve():
        raise InputError(
            f"the output {path} is the input file itself; choose another output name such as "
            f"{output_path_for(audio_from)}."
        )
    parent = path.resolve().parent
    if not parent.is_dir():
        raise InputError(f"the output folder {parent} does not exist or is not a folder; create it first.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"the output folder {parent} is not writable; choose an output path in a writable folder."
        )
    if is_video and path.is_dir():
        raise InputError(f"{path} is an existing folder; choose a file name for the output video.")
    if not is_video:
        if path.exists() and not path.is_dir():
            raise InputError(
                f"{path} is an existing file but a frame folder was requested; "
                "choose a folder name or a video suffix such as .mp4."
            )
        if path.is_dir() and any(path.iterdir()):
            raise InputError(
                f"the output folder {path} is not empty; remove it or choose another output path."
            )


def cannot_write(path: Path, exc: OSError) -> InputError:
    """The error for an output the file system refused (root passes ``os.access``; a read-only mount does not)."""
    return InputError(
        f"cannot write to {path.resolve().parent} ({exc.strerror or exc}); "
        "choose an output path in a writable folder."
    )
