"""The bundled sample clip: a slow camera pan over a real photograph that a dependency ships.

The photograph is ``grace_hopper.jpg`` from matplotlib's sample data (Commodore Grace M. Hopper,
U.S. Navy photograph, 1984: a work of the U.S. federal government, public domain). Nothing is
committed or downloaded: the clip is cut from the photo at demo/test time, deterministically.
"""

from __future__ import annotations

import numpy as np

from svsr.contract.errors import MissingDependencyError

SAMPLE_SOURCE = "matplotlib mpl-data/sample_data/grace_hopper.jpg (U.S. Navy photograph, public domain)"


def _photo() -> "np.ndarray":
    try:
        from matplotlib import cbook
    except ImportError:
        raise MissingDependencyError(
            "the sample clip is cut from a photo that matplotlib ships; install svsr[bench] (or matplotlib)."
        ) from None
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return np.asarray(image.convert("RGB"))


def sample_frames(num_frames: int = 16, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Low-resolution frames (height x width x 3, uint8) of a slow diagonal pan over the photo.

    Each frame is a 4*width x 4*height window of the photo, shrunk 4x with a box filter, the way a
    low-resolution camera would see it; the window moves 3 photo pixels per frame.
    """
    from PIL import Image

    photo = _photo()
    window_w, window_h = 4 * width, 4 * height
    max_x, max_y = photo.shape[1] - window_w, photo.shape[0] - window_h
    if max_x < 0 or max_y < 0:
        raise ValueError(f"the sample photo is {photo.shape[1]}x{photo.shape[0]}; ask for at most {photo.shape[1] // 4}x{photo.shape[0] // 4}")
    frames = []
    for i in range(num_frames):
        x = min(max_x, 100 + 3 * i)
        y = min(max_y, 60 + 2 * i)
        window = Image.fromarray(photo[y : y + window_h, x : x + window_w])
        frames.append(np.asarray(window.resize((width, height), Image.Resampling.BOX)))
    return frames


def write_sample_clip(path: str, num_frames: int = 16, fps: int = 8) -> str:
    """Write the sample clip (a video file, or a PNG folder for a path without a video suffix)."""
    from svsr.runtime.video import FrameWriter

    with FrameWriter(path, fps) as writer:
        for frame in sample_frames(num_frames):
            writer.write(frame)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=f"Write the sample clip: a slow pan over {SAMPLE_SOURCE}.")
    parser.add_argument("output", help="video file (e.g. sample.mp4) or folder for PNG frames")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--fps", type=int, default=8)
    args = parser.parse_args()
    print(write_sample_clip(args.output, args.frames, args.fps))
