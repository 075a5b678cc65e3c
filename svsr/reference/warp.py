"""Temporal Texture Guidance alignment: StableVSR's warp, normalisation quirk included."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp ``x`` (B, C, H, W) by ``flow`` (B, 2, H, W) in pixels (x then y).

    The grid is normalised as for ``align_corners=True`` (``2 v / max(W-1, 1) - 1``) but sampled
    with ``align_corners=False``. The original does this and the TCM was trained with it, so we keep
    it: as a consequence a zero flow is not the identity.
    """
    _, _, height, width = x.shape
    grid_y, grid_x = torch.meshgrid(
        torch.arange(height, dtype=x.dtype, device=x.device),
        torch.arange(width, dtype=x.dtype, device=x.device),
        indexing="ij",
    )
    grid = torch.stack((grid_x, grid_y), dim=2)  # (H, W, 2)
    moved = grid + flow.permute(0, 2, 3, 1)
    moved_x = 2.0 * moved[..., 0] / max(width - 1, 1) - 1.0
    moved_y = 2.0 * moved[..., 1] / max(height - 1, 1) - 1.0
    return F.grid_sample(
        x, torch.stack((moved_x, moved_y), dim=3), mode="bilinear", padding_mode="zeros", align_corners=False
    )
