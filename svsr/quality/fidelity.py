"""Per-frame fidelity: PSNR and SSIM on RGB and on luma, in numpy (torch-free).

Conventions (the super-resolution papers', BasicSR's and StableVSR's evaluation): frames are uint8
RGB; luma is ITU-R BT.601 Y as MATLAB's ``rgb2ycbcr`` computes it (Y = 16 + 65.481 R + 128.553 G +
24.966 B with R, G, B in [0, 1], so Y lies in [16, 235]; not rounded); every metric uses a data
range of 255. SSIM is Wang et al.'s: an 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03,
population (co)variances, the map's mean over the pixels whose window lies inside the frame, and on
RGB the mean of the three channels' SSIM. ``crop_border`` pixels are dropped from every side first
(0: none). scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)`` compute the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DATA_RANGE", "FIDELITY_CONVENTION", "luma", "psnr", "ssim"]

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scipy's default truncation, so an 11-tap window
FIDELITY_CONVENTION = (
    "PSNR/SSIM on uint8 RGB and on luma Y (ITU-R BT.601, MATLAB rgb2ycbcr: 16 + 65.481 R + 128.553 G + 24.966 B), "
    "data range 255; SSIM: Gaussian window 11x11, sigma 1.5 (Wang et al.); PSNR per frame, means are over frames"
)


def luma(frame: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float64 BT.601 Y in [16, 235] (MATLAB ``rgb2ycbcr``, not rounded)."""
    rgb = frame.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def _cropped(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def psnr(output: np.ndarray, reference: np.ndarray, crop_border: int = 0) -> float:
    """PSNR in dB of ``output`` against ``reference`` (same shape, values in [0, 255]); inf when equal."""
    diff = _cropped(output, crop_border).astype(np.float64) - _cropped(reference, crop_border).astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def _gaussian_window() -> np.ndarray:
    taps = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filter over the pixels whose whole window lies inside ``image`` (HxW float64)."""
    size = window.size
    rows = sum(w * image[i : image.shape[0] - size + 1 + i] for i, w in enumerate(window))
    return sum(w * rows[:, i : rows.shape[1] - size + 1 + i] for i, w in enumerate(window))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    window = _gaussian_window()
    if min(x.shape) < window.size:
        raise ValueError(f"SSIM needs frames of at least {window.size}x{window.size} px, got {x.shape[1]}x{x.shape[0]}.")
    mean_x, mean_y = _filter_valid(x, window), _filter_valid(y, window)
    var_x = _filter_valid(x * x, window) - mean_x * mean_x
    var_y = _filter_valid(y * y, window) - mean_y * mean_y
    cov = _filter_valid(x * y, window) - mean_x * mean_y
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def ssim(output: np.ndarray, reference: np.ndarray, crop_border: int = 0) -> float:
    """SSIM of ``output`` against ``reference``: HxW (one plane) or HxWxC (mean over channels)."""
    x = _cropped(output, crop_border).astype(np.float64)
    y = _cropped(reference, crop_border).astype(np.float64)
    if x.ndim == 2:
        return _ssim_plane(x, y)
    return float(np.mean([_ssim_plane(x[..., c], y[..., c]) for c in range(x.shape[-1])]))
