"""How many frames one chunk holds: bounded memory whatever the video length (torch-free)."""

from __future__ import annotations

from svsr.sizes import PAD_MULTIPLE, SCALE

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of per-frame clip state a chunk may hold
MAX_CHUNK_FRAMES = 64  # longer chunks add little: guidance only flows between neighbours


def bytes_per_frame(height: int, width: int) -> int:
    """Clip state one frame adds (float32): LR frame, 2 latents, 2 flows at 4x, its 4x float and uint8 output."""
    h = -(-height // PAD_MULTIPLE) * PAD_MULTIPLE
    w = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    lr, latents = 3 * h * w * 4, 2 * 4 * h * w * 4
    flows = 2 * 2 * (SCALE * h) * (SCALE * w) * 4
    output = 3 * (SCALE * h) * (SCALE * w) * (4 + 1)
    return lr + latents + flows + output


def default_chunk_frames(height: int, width: int, budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Frames per chunk so that the clip state fits ``budget_bytes`` (at least 1, at most 64)."""
    return max(1, min(MAX_CHUNK_FRAMES, budget_bytes // bytes_per_frame(height, width)))
