"""Export-friendly modules: one per graph in svsr/contract/graphs.py, built from the reference's components.

Each wrapper holds every operation of its part of the algorithm, so the runtime only moves
buffers. Shapes are derived from tensors (never from Python ints) so one traced graph serves every
resolution through its symbolic dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from svsr.reference.checkpoint import Components


def traceable_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Same maths as svsr.reference.warp.warp, with the grid built from tensor shapes.

    The reference's ``max(W - 1, 1)`` would be frozen into a constant by tracing; here the grid and
    the normaliser come from ``ones_like(flow)`` cumulative sums so they follow the input size.
    """
    ones = torch.ones_like(flow[:, :1])  # (B, 1, H, W)
    grid_x = torch.cumsum(ones, dim=3) - 1.0  # column index
    grid_y = torch.cumsum(ones, dim=2) - 1.0  # row index
    width_minus_1 = grid_x[:, :, :1, -1:].clamp(min=1.0)  # (B, 1, 1, 1)
    height_minus_1 = grid_y[:, :, -1:, :1].clamp(min=1.0)
    moved_x = 2.0 * (grid_x + flow[:, 0:1]) / width_minus_1 - 1.0
    moved_y = 2.0 * (grid_y + flow[:, 1:2]) / height_minus_1 - 1.0
    grid = torch.cat((moved_x, moved_y), dim=1).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class FlowGraph(nn.Module):
    """(frame, previous) LR in [-1, 1] -> flow at 4x mapping frame onto previous (RAFT, last refinement)."""

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.raft = components.flow_model
        self.num_flow_updates = components.num_flow_updates

    def forward(self, frame: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        up_frame = F.interpolate(frame, scale_factor=4.0, mode="bicubic")
        up_previous = F.interpolate(previous, scale_factor=4.0, mode="bicubic")
        return self.raft(up_frame, up_previous, num_flow_updates=self.num_flow_updates)[-1]


class DenoiseGraph(nn.Module):
    """TCM + UNet + one scheduler step (coefficients from svsr/contract/scheduler.py). ``tcm_scale`` 0
    gives exactly the no-TCM prediction (residuals x 0)."""

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.unet = components.unet
        self.controlnet = components.controlnet
        # folded into the graph as a constant: the prompt is embedded once, at export
        self.register_buffer("prompt_embeds", components.prompt_embeds.clone(), persistent=False)
        upsamplers = sum(1 for block in self.unet.up_blocks if getattr(block, "upsamplers", None))
        self.overall_up_factor = 2**upsamplers

    def forward(
        self,
        z: torch.Tensor,
        lr: torch.Tensor,
        guidance: torch.Tensor,
        tcm_scale: torch.Tensor,
        timestep: torch.Tensor,
        step_coeffs: torch.Tensor,
        noise: torch.Tensor,
        x0_history: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = torch.cat([z, lr], dim=1)
        embeds = self.prompt_embeds.expand(z.shape[0], -1, -1)
        down, mid = self.controlnet(
            x_in, timestep, encoder_hidden_states=embeds, controlnet_cond=guidance, conditioning_scale=1.0, return_dict=False
        )
        down = [residual * tcm_scale for residual in down]
        mid = mid * tcm_scale
        model_output = self.unet(
            x_in, timestep, encoder_hidden_states=embeds, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        c = step_coeffs
        x0 = (c[0] * z + c[1] * model_output).clamp(min=-c[5], max=c[5])
        # DDPM uses c[2..4]; DDIM adds the model output (its epsilon), DPM-Solver++ 2M the frame's previous x0
        z_prev = c[2] * x0 + c[3] * z + c[4] * noise + c[6] * model_output + c[7] * x0_history
        return z_prev, x0


class GuideDecodeGraph(nn.Module):
    """x0 -> VAE decode of x0 / scaling_factor, not clamped (the guidance before its warp; runs per tile)."""

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.vae = components.vae
        self.scaling_factor = components.scaling_factor

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(x0 / self.scaling_factor).sample


class WarpGraph(nn.Module):
    """(decoded image, flow) -> the warped guidance, on the whole frame."""

    def __init__(self, components: Components) -> None:
        super().__init__()

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return traceable_warp(image, flow)


class BlendGraph(nn.Module):
    """acc + tile * weight: one tile's share of a whole-frame region (the weights of all tiles sum to one)."""

    def __init__(self, components: Components) -> None:
        super().__init__()

    def forward(self, acc: torch.Tensor, tile: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return acc + tile * weight


class DecodeGraph(nn.Module):
    """z -> clamp(VAE decode(z / scaling_factor) / 2 + 0.5, 0, 1)."""

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.vae = components.vae
        self.scaling_factor = components.scaling_factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.vae.decode(z / self.scaling_factor).sample / 2 + 0.5).clamp(0, 1)


WRAPPERS = {
    "flow": FlowGraph,
    "denoise": DenoiseGraph,
    "guide_decode": GuideDecodeGraph,
    "warp": WarpGraph,
    "decode": DecodeGraph,
    "blend": BlendGraph,
}


def build_wrapper(name: str, components: Components) -> nn.Module:
    return WRAPPERS[name](components).eval()
