"""Optical flow of a clip: RAFT both ways between neighbours, on the LR frames seen at x4 (the
original's bicubic x4), x2 (bicubic x2) or x1 (the frames themselves).

At x2 and x1 RAFT's flow is upsampled bilinearly to the 4x grid and multiplied by 4 / scale, so the
flow always maps 4x pixels; the exported ``flow_x2`` / ``flow_x1`` graphs do the same maths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from svsr.contract.errors import InputError
from svsr.contract.graphs import DEFAULT_FLOW_SCALE, FLOW_SCALES
from svsr.contract.sizes import SCALE, flow_scale_problem

RAFT_MULTIPLE = 8  # torchvision's RAFT takes sides that are multiples of 8


def upscale_bicubic(lr: torch.Tensor, scale: int = SCALE) -> torch.Tensor:
    """PyTorch bicubic x``scale`` (align_corners=False, no clamping), as the original does (x4) before RAFT."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic")


def raft_flow(flow_model: torch.nn.Module, image1: torch.Tensor, image2: torch.Tensor, num_flow_updates: int) -> torch.Tensor:
    """Flow (B, 2, H, W) in pixels mapping pixels of image1 to image2: RAFT's last refinement."""
    return flow_model(image1, image2, num_flow_updates=num_flow_updates)[-1]


def check_flow_scale(scale: int, height: int | None = None, width: int | None = None) -> None:
    """Refuse (InputError, one sentence) a flow scale that is not 4, 2 or 1, or (given a size) padded LR
    frames too small for it."""
    if isinstance(scale, bool) or scale not in FLOW_SCALES:
        raise InputError(f"flow_scale {scale!r} is not a flow scale; use 4 (the original), 2 or 1.")
    problem = flow_scale_problem(scale, height, width, option="flow_scale") if height is not None and width is not None else None
    if problem:
        raise InputError(problem)


def scaled_flow(flow_model: torch.nn.Module, frame: torch.Tensor, previous: torch.Tensor, num_flow_updates: int,
                scale: int = DEFAULT_FLOW_SCALE) -> torch.Tensor:  # fmt: skip
    """Flow (B, 2, 4h, 4w) on the 4x grid mapping pixels of LR ``frame`` onto LR ``previous`` (B, 3, h, w).

    x4: RAFT on the bicubic x4 frames (the original). x2: RAFT on the bicubic x2 frames. x1: RAFT on
    the frames edge-padded to a multiple of 8, its flow cropped back. Below x4 the flow is upsampled
    bilinearly (align_corners=False) to (4h, 4w) and multiplied by 4 / scale (pixels of the 4x grid).
    """
    if scale == SCALE:
        return raft_flow(flow_model, upscale_bicubic(frame), upscale_bicubic(previous), num_flow_updates)
    if scale == 2:
        flow = raft_flow(flow_model, upscale_bicubic(frame, 2), upscale_bicubic(previous, 2), num_flow_updates)
    else:
        height, width = frame.shape[2], frame.shape[3]
        pad = (0, -width % RAFT_MULTIPLE, 0, -height % RAFT_MULTIPLE)
        padded = [F.pad(x, pad, mode="replicate") for x in (frame, previous)]
        flow = raft_flow(flow_model, padded[0], padded[1], num_flow_updates)[:, :, :height, :width]
    factor = SCALE // scale
    return F.interpolate(flow, scale_factor=float(factor), mode="bilinear", align_corners=False) * float(factor)


def clip_flows(
    flow_model: torch.nn.Module, lr: torch.Tensor, num_flow_updates: int, scale: int = DEFAULT_FLOW_SCALE
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(fwd, bwd) flow lists for LR frames ``lr`` (N, 3, h, w); each has N-1 tensors (1, 2, 4h, 4w).

    ``fwd[i-1] = flow(lr[i], lr[i-1])``; ``bwd = reversed([flow(lr[i-1], lr[i])])``, so the flow used
    for a frame always maps it onto the frame processed just before it.
    """
    fwd, bwd_pair = [], []
    for i in range(1, lr.shape[0]):
        fwd.append(scaled_flow(flow_model, lr[i : i + 1], lr[i - 1 : i], num_flow_updates, scale))
        bwd_pair.append(scaled_flow(flow_model, lr[i - 1 : i], lr[i : i + 1], num_flow_updates, scale))
    return fwd, bwd_pair[::-1]
