"""Frame-size rules shared by every layer (torch-free).

StableVSR's latent has the low-resolution size and the VAE upsamples 4x. The official image
processor silently resizes sides that are not multiples of 4; we pad instead (edge replication on
the bottom/right), run, and crop the 4x output back, so the output size is always exactly 4h x 4w.
Sizes that are already multiples of 4 are not padded, which keeps them exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from svsr.contract.errors import InputError

SCALE = 4
MIN_SIDE = 32  # RAFT needs the 4x frames to be >= 128 px on each side
PAD_MULTIPLE = 4


@dataclass(frozen=True)
class PaddingPlan:
    """How one clip's low-resolution frames are padded before, and cropped after, upscaling."""

    height: int
    width: int
    padded_height: int
    padded_width: int

    @property
    def pad_bottom(self) -> int:
        return self.padded_height - self.height

    @property
    def pad_right(self) -> int:
        return self.padded_width - self.width

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the cropped 4x output."""
        return self.height * SCALE, self.width * SCALE


def check_frame_size(height: int, width: int) -> None:
    """Raise InputError when a frame is too small for StableVSR's optical flow."""
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(
            f"frames of {width}x{height} px are too small: StableVSR needs at least "
            f"{MIN_SIDE} px on each side (RAFT works on the 4x frames), so upscale or pad the input first."
        )


def padding_plan(height: int, width: int) -> PaddingPlan:
    """Validate a frame size and say how it is padded to a multiple of 4."""
    check_frame_size(height, width)

    def up(n: int) -> int:
        return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE

    return PaddingPlan(height, width, up(height), up(width))


# -- flow scale: RAFT on x4 (the original), x2 or x1 frames -------------------------------------------
RAFT_MIN_SIDE = 128  # RAFT's 4-level correlation pyramid needs >= 16 px feature maps (1/8 of its input)
FLOW_SCALE_CHOICES = (4, 2, 1)


def flow_scale_min_side(scale: int) -> int:
    """The smallest padded LR side RAFT accepts at ``scale`` (32 at x4, 64 at x2, 128 at x1)."""
    return -(-RAFT_MIN_SIDE // scale)


def flow_scale_problem(scale: int, height: int, width: int, option: str = "--flow-scale") -> str | None:
    """One sentence when padded LR frames of ``height`` x ``width`` are too small for RAFT at ``scale``, else None."""
    need = flow_scale_min_side(scale)
    if height >= need and width >= need:
        return None
    fits = [s for s in FLOW_SCALE_CHOICES if height >= flow_scale_min_side(s) and width >= flow_scale_min_side(s)]
    return (f"{option} {scale} needs frames of at least {need} px per side (RAFT sees them at x{scale}), "
            f"but these are {width}x{height}; use {option} {max(fits)}.")  # fmt: skip
