"""Export-friendly modules: one per graph in svsr/contract/graphs.py, built from the reference's components.

Each wrapper holds every operation of its part of the algorithm, so the runtime only moves
buffers. Shapes are derived from tensors (never from Python ints) so one traced graph serves every
resolution through its symbolic dims.

The networks of ``denoise`` / ``denoise_stats`` (TCM + UNet) and of ``guide_decode`` / ``decode`` /
``decode_stats`` (VAE decoder) run on copies of the reference's modules in which every
``nn.GroupNorm`` is a :class:`SharedGroupNorm` (the copies share the reference's weights; the
reference's own modules stay plain torch GroupNorms, the ground truth).
"""

from __future__ import annotations

import copy
import itertools
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from svsr.contract.graphs import NORM_STATS_STRIDE
from svsr.contract.sizes import SCALE
from svsr.reference.checkpoint import Components
from svsr.reference.flow import RAFT_MULTIPLE


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


# -- GroupNorm statistics shared across tiles --------------------------------------------------------
class NormStats:
    """What the SharedGroupNorms of one wrapper do during one forward, and where they are in it.

    ``off``: plain GroupNorm maths (own statistics). ``record``: own statistics, each call's per-group
    mean and variance appended to ``recorded``. ``apply``: statistics mixed with the given ones,
    ``own + mix * (given - own)``, read from ``given`` (B, S) at ``offset`` in call order.
    """

    def __init__(self) -> None:
        self.mode = "off"
        self.recorded: list[torch.Tensor] = []
        self.given: torch.Tensor | None = None
        self.mix: torch.Tensor | None = None
        self.offset = 0

    @contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """Record every GroupNorm call's statistics: the yielded list gets (B, 2G) per call, in call order."""
        self.mode, self.recorded = "record", []
        try:
            yield self.recorded
        finally:
            self.mode = "off"

    @contextmanager
    def applying(self, given: torch.Tensor, mix: torch.Tensor) -> Iterator[None]:
        """Mix ``given`` (B, S) into every GroupNorm call by ``mix`` (1,); checks S against the calls made."""
        self.mode, self.given, self.mix, self.offset = "apply", given, mix, 0
        try:
            yield
            if not torch.jit.is_tracing() and self.offset != given.shape[1]:
                raise ValueError(f"norm_stats has {given.shape[1]} values per clip but the GroupNorm calls read {self.offset}")
        finally:
            self.mode, self.given, self.mix = "off", None, None

    def take(self, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next call's given (mean, variance), each (B, G, 1)."""
        assert self.given is not None
        start, self.offset = self.offset, self.offset + 2 * groups
        means = self.given[:, start : start + groups]
        variances = self.given[:, start + groups : start + 2 * groups]
        return means.unsqueeze(-1), variances.unsqueeze(-1)


class SharedGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose statistics a :class:`NormStats` can record or replace (the contract in
    svsr/contract/graphs.py): ``mean = own + mix * (given - own)``, the same for the biased variance,
    then ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Takes (B, C, *) inputs: (B, C, H, W) in resnets, (B, C, L) in the attention blocks' group_norm.
    The variance is ``mean((x - mean)**2)``, not ``E[x**2] - mean**2``, which cancels badly in fp16 graphs.
    """

    def __init__(self, source: nn.GroupNorm, stats: NormStats) -> None:
        super().__init__(source.num_groups, source.num_channels, eps=source.eps, affine=source.affine)
        self.weight, self.bias = source.weight, source.bias  # the reference's parameters, shared
        self.stats = stats  # plain attribute: one NormStats for every GroupNorm of a wrapper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.reshape(x.shape[0], self.num_groups, -1)
        mean = groups.mean(dim=2, keepdim=True)
        centred = groups - mean
        var = (centred * centred).mean(dim=2, keepdim=True)
        stats = self.stats
        if stats.mode == "record":
            stats.recorded.append(torch.cat([mean.squeeze(-1), var.squeeze(-1)], dim=1))
        elif stats.mode == "apply":
            given_mean, given_var = stats.take(self.num_groups)
            mean = mean + stats.mix * (given_mean - mean)
            var = var + stats.mix * (given_var - var)
            centred = groups - mean
        out = (centred / torch.sqrt(var + self.eps)).reshape_as(x)
        if self.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def with_shared_norms(network: nn.Module, stats: NormStats) -> nn.Module:
    """A copy of ``network`` sharing its parameters and buffers, every nn.GroupNorm a SharedGroupNorm on ``stats``."""
    memo = {id(t): t for t in itertools.chain(network.parameters(), network.buffers())}
    twin = copy.deepcopy(network, memo)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm) and not isinstance(child, SharedGroupNorm):
                setattr(parent, name, SharedGroupNorm(child, stats))
    return twin


def stats_vector(recorded: list[torch.Tensor]) -> torch.Tensor:
    """(B, S): every GroupNorm call's G means then G variances, in call order."""
    return torch.cat(recorded, dim=1)


# -- the graphs ---------------------------------------------------------------------------------------
class FlowGraph(nn.Module):
    """(frame, previous) LR in [-1, 1] -> flow at 4x mapping frame onto previous (RAFT, last refinement).

    ``scale`` is what RAFT sees: 4 the bicubic x4 frames (graph ``flow``), 2 the bicubic x2 ones
    (``flow_x2``), 1 the frames edge-padded to a multiple of 8 (``flow_x1``); below 4 the flow is
    upsampled bilinearly to 4x and multiplied by 4 / scale (svsr/reference/flow.py, same maths).
    """

    def __init__(self, components: Components, scale: int = SCALE) -> None:
        super().__init__()
        self.raft = components.flow_model
        self.num_flow_updates = components.num_flow_updates
        self.scale = scale

    def forward(self, frame: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        if self.scale == SCALE:
            up_frame = F.interpolate(frame, scale_factor=4.0, mode="bicubic")
            up_previous = F.interpolate(previous, scale_factor=4.0, mode="bicubic")
            return self.raft(up_frame, up_previous, num_flow_updates=self.num_flow_updates)[-1]
        if self.scale == 2:
            first = F.interpolate(frame, scale_factor=2.0, mode="bicubic")
            second = F.interpolate(previous, scale_factor=2.0, mode="bicubic")
            flow = self.raft(first, second, num_flow_updates=self.num_flow_updates)[-1]
        else:
            first, second = pad_to_multiple(frame, RAFT_MULTIPLE), pad_to_multiple(previous, RAFT_MULTIPLE)
            flow = self.raft(first, second, num_flow_updates=self.num_flow_updates)[-1]
            flow = crop_like(flow, frame)
        factor = float(SCALE // self.scale)
        return F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False) * factor


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Edge-pad the bottom and right of (B, C, H, W) up to a multiple of ``multiple``.

    The amounts are computed from the traced shape (all non-negative: ``(m - H % m) % m``), so the
    graph's Pad follows the input size instead of freezing the trace size's padding.
    """
    height, width = x.shape[2], x.shape[3]
    return F.pad(x, (0, (multiple - width % multiple) % multiple, 0, (multiple - height % multiple) % multiple), mode="replicate")


def crop_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The top-left (H, W) of ``x`` where ``like`` is (.., H, W), traced with the input size."""
    return x[:, :, : like.shape[2], : like.shape[3]]


class _TcmUnet(nn.Module):
    """TCM + UNet on shared-norm copies of the reference's networks (ControlNet called first, then the UNet)."""

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.norms = NormStats()
        self.controlnet = with_shared_norms(components.controlnet, self.norms)
        self.unet = with_shared_norms(components.unet, self.norms)
        # folded into the graph as a constant: the prompt is embedded once, at export
        self.register_buffer("prompt_embeds", components.prompt_embeds.clone(), persistent=False)

    def predict(self, z: torch.Tensor, lr: torch.Tensor, guidance: torch.Tensor, tcm_scale: torch.Tensor,
                timestep: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The UNet's output; ``tcm_scale`` 0 gives exactly the no-TCM prediction (residuals x 0)."""
        x_in = torch.cat([z, lr], dim=1)
        embeds = self.prompt_embeds.expand(z.shape[0], -1, -1)
        down, mid = self.controlnet(
            x_in, timestep, encoder_hidden_states=embeds, controlnet_cond=guidance, conditioning_scale=1.0, return_dict=False
        )
        down = [residual * tcm_scale for residual in down]
        mid = mid * tcm_scale
        return self.unet(
            x_in, timestep, encoder_hidden_states=embeds, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample


class DenoiseGraph(_TcmUnet):
    """TCM + UNet + one scheduler step (coefficients from svsr/contract/scheduler.py), the GroupNorms
    mixing in ``norm_stats`` by ``shared_norm`` (0: their own statistics, the untiled graph)."""

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
        norm_stats: torch.Tensor,
        shared_norm: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with self.norms.applying(norm_stats, shared_norm):
            model_output = self.predict(z, lr, guidance, tcm_scale, timestep)
        c = step_coeffs
        x0 = (c[0] * z + c[1] * model_output).clamp(min=-c[5], max=c[5])
        # DDPM uses c[2..4]; DDIM adds the model output (its epsilon), DPM-Solver++ 2M the frame's previous x0
        z_prev = c[2] * x0 + c[3] * z + c[4] * noise + c[6] * model_output + c[7] * x0_history
        return z_prev, x0


def subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Every ``stride``-th row and column (from the first): a small frame with the pixels' own spread, which
    average pooling would shrink (noise and fine texture are what the GroupNorms measure)."""
    return x[:, :, ::stride, ::stride]


class DenoiseStatsGraph(_TcmUnet):
    """Every NORM_STATS_STRIDE-th row and column of the whole frame's z, lr (and guidance, 4x) -> every
    GroupNorm's per-group mean and variance of the TCM + UNet, in call order (B, S)."""

    stride = NORM_STATS_STRIDE["denoise_stats"]

    def forward(self, z: torch.Tensor, lr: torch.Tensor, guidance: torch.Tensor, tcm_scale: torch.Tensor,
                timestep: torch.Tensor) -> torch.Tensor:  # fmt: skip
        with self.norms.recording() as recorded:
            self.predict(subsample(z, self.stride), subsample(lr, self.stride), subsample(guidance, self.stride), tcm_scale, timestep)
        return stats_vector(recorded)


class _VaeDecoder(nn.Module):
    """``vae.decode(latent / scaling_factor)`` on a shared-norm copy of the reference's VAE."""

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.norms = NormStats()
        self.vae = with_shared_norms(components.vae, self.norms)
        self.scaling_factor = components.scaling_factor

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scaling_factor).sample


class GuideDecodeGraph(_VaeDecoder):
    """x0 -> VAE decode of x0 / scaling_factor, not clamped (the guidance before its warp; runs per tile)."""

    def forward(self, x0: torch.Tensor, norm_stats: torch.Tensor, shared_norm: torch.Tensor) -> torch.Tensor:
        with self.norms.applying(norm_stats, shared_norm):
            return self.decode(x0)


class DecodeStatsGraph(_VaeDecoder):
    """Every NORM_STATS_STRIDE-th row and column of the whole frame's latent -> every GroupNorm's per-group
    mean and variance of the VAE decoder, in call order (B, S)."""

    stride = NORM_STATS_STRIDE["decode_stats"]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        with self.norms.recording() as recorded:
            self.decode(subsample(latent, self.stride))
        return stats_vector(recorded)


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


class DecodeGraph(_VaeDecoder):
    """z -> clamp(VAE decode(z / scaling_factor) / 2 + 0.5, 0, 1)."""

    def forward(self, z: torch.Tensor, norm_stats: torch.Tensor, shared_norm: torch.Tensor) -> torch.Tensor:
        with self.norms.applying(norm_stats, shared_norm):
            return (self.decode(z) / 2 + 0.5).clamp(0, 1)


WRAPPERS = {
    "flow": FlowGraph,
    "flow_x2": lambda components: FlowGraph(components, scale=2),
    "flow_x1": lambda components: FlowGraph(components, scale=1),
    "denoise": DenoiseGraph,
    "denoise_stats": DenoiseStatsGraph,
    "guide_decode": GuideDecodeGraph,
    "decode_stats": DecodeStatsGraph,
    "warp": WarpGraph,
    "decode": DecodeGraph,
    "blend": BlendGraph,
}


def build_wrapper(name: str, components: Components) -> nn.Module:
    return WRAPPERS[name](components).eval()

