"""Frame folders: listing PNG/JPEG frames in order, reading their size and pixels upright (Pillow).

EXIF orientation is honoured, damaged files are refused in one sentence (Pillow's own warnings and
decompression-bomb guard included), and 16-bit greyscale keeps its top 8 bits.
"""

from __future__ import annotations

import contextlib
import re
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from svsr.contract.errors import InputError
from svsr.contract.frames import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "image_files", "image_size", "natural_sort_key", "read_image"]

_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# What Pillow raises for damaged files: the exceptions its own fuzz tests accept (OSError, which
# includes UnidentifiedImageError and "image file is truncated", SyntaxError from chunk checks,
# ValueError, EOFError, NotImplementedError, OverflowError, DecompressionBombError for absurd sizes),
# plus struct.error and IndexError from short header fields.
_IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    NotImplementedError,
    OverflowError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)


def natural_sort_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value, so ``frame2`` sorts before ``frame10``."""
    parts = re.split(r"(\d+)", name)
    # re.split alternates text and digit runs, so positions always compare str with str, int with int.
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts))


def image_files(folder: Path) -> list[Path]:
    """The PNG/JPEG frames of ``folder`` in natural order; refuse a folder without any."""
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder} cannot be listed ({exc.strerror}); check its permissions.") from exc
    files = [
        p
        for p in entries
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise InputError(
            f"{folder} contains no PNG/JPEG frames; "
            "put frames named like frame_0001.png in it or give a video file."
        )
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def image_size(path: Path) -> tuple[int, int]:
    """Width and height of an image after its EXIF orientation, read from the header only."""
    try:
        with _quiet_pillow(), Image.open(path) as image:
            width, height = image.size
            if _exif_orientation(image) in (5, 6, 7, 8):  # these include a quarter turn
                return height, width
            return width, height
    except _IMAGE_ERRORS as exc:
        raise _unreadable_image(path, exc) from exc


def read_image(path: Path) -> np.ndarray:
    """An image file's pixels as an upright HxWx3 uint8 RGB array."""
    try:
        with _quiet_pillow(), Image.open(path) as image:
            method = _EXIF_TRANSPOSE.get(_exif_orientation(image))
            image.load()
            return _pil_to_rgb(image.transpose(method) if method is not None else image)
    except _IMAGE_ERRORS as exc:
        raise _unreadable_image(path, exc) from exc


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of letting convert("RGB") clip to white.
        grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def _exif_orientation(image: Image.Image) -> int:
    """EXIF orientation tag (1 = upright) read from the header only.

    A damaged EXIF block, or an orientation that is not one of the eight defined values, counts as
    upright: the orientation is a hint, and the pixels themselves may still be fine.
    """
    try:
        if image.format == "PNG":
            # Pillow's PNG getexif() decodes the whole image; the eXIf chunk before IDAT is already parsed.
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = image.getexif()
        value = exif.get(_EXIF_ORIENTATION, 1)
    except _IMAGE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _unreadable_image(path: Path, exc: BaseException | None = None) -> InputError:
    if isinstance(exc, Image.DecompressionBombError):
        return InputError(
            f"{path} claims an image size far beyond any video frame (Pillow refuses it as a possible "
            "decompression bomb), so it is damaged; re-export it or remove it from the folder."
        )
    return InputError(f"{path} is not a readable PNG/JPEG image; re-export it or remove it from the folder.")


@contextlib.contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Silence Pillow's own warnings while a frame is opened and read.

    A damaged frame makes Pillow warn (about EXIF tags pointing past the end of the file, or a
    claimed size past its decompression-bomb warning limit) before the frame is refused or its
    orientation ignored; the user gets svsr's one sentence, not Pillow's warnings. (The warning
    filters are process-wide, so a warning another thread issues from Pillow meanwhile is lost too.)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
