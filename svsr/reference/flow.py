"""Optical flow of a clip: bicubic x4 of the LR frames, then RAFT both ways between neighbours."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upscale_bicubic(lr: torch.Tensor) -> torch.Tensor:
    """PyTorch bicubic x4 (align_corners=False, no clamping), as the original does before RAFT."""
    return F.interpolate(lr, scale_factor=4, mode="bicubic")


def raft_flow(flow_model: torch.nn.Module, image1: torch.Tensor, image2: torch.Tensor, num_flow_updates: int) -> torch.Tensor:
    """Flow (B, 2, H, W) in pixels mapping pixels of image1 to image2: RAFT's last refinement."""
    return flow_model(image1, image2, num_flow_updates=num_flow_updates)[-1]


def clip_flows(
    flow_model: torch.nn.Module, up: torch.Tensor, num_flow_updates: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(fwd, bwd) flow lists for 4x frames ``up`` (N, 3, 4h, 4w); each has N-1 tensors (1, 2, 4h, 4w).

    ``fwd[i-1] = RAFT(up[i], up[i-1])``; ``bwd = reversed([RAFT(up[i-1], up[i])])``, so the flow used
    for a frame always maps it onto the frame processed just before it.
    """
    fwd, bwd_pair = [], []
    for i in range(1, up.shape[0]):
        fwd.append(raft_flow(flow_model, up[i : i + 1], up[i - 1 : i], num_flow_updates))
        bwd_pair.append(raft_flow(flow_model, up[i - 1 : i], up[i : i + 1], num_flow_updates))
    return fwd, bwd_pair[::-1]
