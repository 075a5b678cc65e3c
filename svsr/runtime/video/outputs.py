"""Where an output goes: the one output rule, video file, PNG image or PNG folder, the checks before writing, its temporary name.

The output rule (:func:`output_rule`, a pure function of the input's kind, how many inputs, the
``-o`` form and :class:`VideoOptions`): a video gives a video (container from ``-o``'s suffix, which
must hold the codec), a single image gives a PNG image, a frame folder gives a frame folder (or a
video where ``-o`` names one); ``-o DIR/`` (or an existing folder, or several inputs) puts
``DIR/<name>_x4.<ext>`` there. The writer and the stitch both write under a hidden name beside the
target and rename it into place only when everything succeeded.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from svsr.contract.codecs import CODECS, CONTAINERS, codec_problem
from svsr.contract.errors import InputError
from svsr.contract.frames import IMAGE_SUFFIXES
from svsr.contract.video_options import VideoOptions

__all__ = ["VIDEO_SUFFIXES", "InputKind", "OutputTarget", "cannot_write", "check_output", "input_kind", "is_video_path", "output_kind",
           "output_path_for", "output_rule", "temp_name"]  # fmt: skip

VIDEO_SUFFIXES = tuple(CONTAINERS)
"""Suffixes of the video files svsr reads and writes (the codec table's containers)."""
IMAGE_OUTPUT_SUFFIX = ".png"  # upscaled images are written losslessly
InputKind = Literal["video", "image", "frames"]


@dataclass(frozen=True)
class OutputTarget:
    """Where one input's output goes and what it is: a ``video`` file, a PNG ``image`` or a ``frames`` folder."""

    path: Path
    kind: InputKind


def input_kind(path: str | os.PathLike[str]) -> InputKind:
    """``frames`` for a folder, ``image`` for one PNG/JPEG file, ``video`` for anything else (FFmpeg reads it)."""
    path = Path(path)
    if path.is_dir():
        return "frames"
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def output_kind(path: str | os.PathLike[str]) -> InputKind:
    """What an output path names by its suffix: a video file, a PNG image, or else a frame folder."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES and not str(path).endswith(("/", os.sep)):
        return "video"
    return "image" if suffix == IMAGE_OUTPUT_SUFFIX else "frames"


def default_output_name(input_path: Path, kind: InputKind, options: VideoOptions) -> str:
    """``clip_x4.mp4`` (the input's container when it holds the codec, else the codec's first), ``img_x4.png``, ``frames_x4``.

    A part of the input (``frames="10:50"``) is named after it, ``clip_x4_frames10-50.mp4``, so it never takes the whole run's name.
    """
    part = "" if options.frames is None else "_frames" + options.frames.strip().replace(":", "-").replace(".", "_")
    if kind == "frames":
        return f"{input_path.name}_x4{part}"
    if kind == "image":
        return f"{input_path.stem}_x4{part}{IMAGE_OUTPUT_SUFFIX}"
    containers = CODECS[options.codec].containers
    suffix = input_path.suffix if input_path.suffix.lower() in containers else containers[0]
    return f"{input_path.stem}_x4{part}{suffix}"


def output_rule(input_path: str | os.PathLike[str], kind: InputKind, output: str | os.PathLike[str] | None, *, many: bool,
                output_is_folder: bool, options: VideoOptions) -> OutputTarget:  # fmt: skip
    """The one output rule: where ``input_path`` (of ``kind``) goes for the ``-o`` value ``output``.

    ``many``: the input is one of several (a glob or several paths), so ``output`` is the folder the
    outputs go to; ``output_is_folder``: ``output`` exists as a folder. Pure: the caller looks at the
    file system. A form the rule does not serve is refused in one sentence spelled as the options'
    user writes options (``-o x.gif`` or ``output='x.gif'``).
    """
    source = Path(input_path)
    name = default_output_name(source, kind, options)
    default_kind: InputKind = kind
    if output is None:
        if many:
            raise InputError(f"several inputs need an output folder; add {options.spell('output', 'DIR/')} (one output per input goes there).")
        return OutputTarget(source.with_name(name), default_kind)
    raw = os.fspath(output)
    spelled = options.spell("output", raw)
    if many or output_is_folder or raw.endswith(("/", os.sep)):
        return OutputTarget(Path(raw) / name, default_kind)
    path, suffix = Path(raw), Path(raw).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        problem = codec_problem(options.codec, None, suffix, spell=options.spell)
        if problem:
            raise InputError(problem)
        return OutputTarget(path, "video")
    fits = "/".join(CODECS[options.codec].containers)
    if kind == "video":
        return _refuse(f"{spelled} is not a video file a {options.codec} video goes into; a video gives a video: name a {fits} file "
                       f"such as {path.with_suffix(CODECS[options.codec].containers[0])}, or {raw.rstrip('/')}/ to put {name} inside that folder.")  # fmt: skip
    if kind == "image":
        if suffix == IMAGE_OUTPUT_SUFFIX:
            return OutputTarget(path, "image")
        return _refuse(f"{spelled} is not a PNG file; an image gives a PNG image: name a .png file such as {path.with_suffix('.png')}, "
                       f"or {raw.rstrip('/')}/ to put {name} inside that folder.")  # fmt: skip
    if suffix in IMAGE_SUFFIXES:
        return _refuse(f"{spelled} names an image, but a frame folder gives a frame folder; name a folder such as {path.with_suffix('')}, "
                       f"or a {fits} video.")  # fmt: skip
    return OutputTarget(path, "frames")


def _refuse(sentence: str) -> OutputTarget:
    raise InputError(sentence)


def output_path_for(input_path: str | os.PathLike[str]) -> Path:
    """Default output name next to the input.

    ``clip.mp4`` -> ``clip_x4.mp4``, folder ``frames/`` -> ``frames_x4`` (a PNG folder).
    """
    path = Path(input_path)
    if path.is_dir() or path.suffix.lower() not in VIDEO_SUFFIXES:
        return path.with_name(f"{path.name}_x4")
    return path.with_name(f"{path.stem}_x4{path.suffix}")  # the output rule's default_output_name decides per kind and codec


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
