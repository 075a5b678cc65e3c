"""Noise sources for the sampler (torch-free; the torch source lives in svsr/device/noise.py).

The sampler asks for noise in the official draw order: first the initial latent of every frame in
frame order, then one draw per (timestep, frame) call in sweep order, only for timesteps > 0.
A source that draws sequentially from one generator (numpy, torch) therefore reproduces that
order; the explicit source looks noise up by (step, frame) instead, and the philox source computes
every value as a pure function of (seed, draw, frame, element index), whatever the call order
(specified bit for bit in docs/noise.md).

Every source has a ``kind`` and a checkpoint state: ``state()`` returns a JSON-serialisable dict
and ``restore(state)`` puts a (fresh) source of the same kind back where it was, so an interrupted
run continues with exactly the draws it would have made.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

Shape = Sequence[int]

NOISE_KINDS = ("philox", "numpy", "torch")
DEFAULT_NOISE = "philox"


class NoiseSource(Protocol):
    """Supplies float32 Gaussian noise to the sampler."""

    kind: str

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        """Initial latent of ``frame`` (called for frames 0..N-1 in order, before any step)."""

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        """Noise for the DDPM step of ``frame`` at timestep index ``step`` (called in sweep order)."""

    def state(self) -> dict:
        """Checkpoint state: a JSON-serialisable dict (ints, strings, lists, dicts)."""

    def restore(self, state: dict) -> None:
        """Continue from a ``state()`` taken earlier (on this or another source of the same kind)."""


def check_kind(state: Any, kind: str) -> None:
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"cannot restore a {kind} noise source from a {found!r} noise state.")


# --------------------------------------------------------------------------------------------
# Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC 2011)

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
TWO_PI = 6.283185307179586  # the float64 nearest 2*pi; docs/noise.md fixes this literal

_MASK32 = 0xFFFFFFFF
_U32 = np.uint64(_MASK32)
_SHIFT32 = np.uint64(32)


def philox4x32_10(counter: Sequence[Any], key: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Raw Philox4x32-10: four counter words (ints or arrays, broadcast together) and a two-word key
    -> the four output words as uint32 arrays (the Random123 ``philox4x32(ctr, key)`` function)."""
    c0, c1, c2, c3 = (np.asarray(word, dtype=np.uint64) & _U32 for word in counter)
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = int(key[0]) & _MASK32, int(key[1]) & _MASK32
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    for round_index in range(PHILOX_ROUNDS):
        if round_index:  # key bumped between rounds (before rounds 2..10)
            k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
        p0 = c0 * m0  # full 64-bit products of 32-bit words: exact in uint64
        p1 = c2 * m1
        c0, c1, c2, c3 = (
            (p1 >> _SHIFT32) ^ c1 ^ np.uint64(k0),
            p1 & _U32,
            (p0 >> _SHIFT32) ^ c3 ^ np.uint64(k1),
            p0 & _U32,
        )
    return tuple(word.astype(np.uint32) for word in (c0, c1, c2, c3))


def _check_index(name: str, value: Any, limit: int = 1 << 32) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < limit:
        raise ValueError(f"philox noise needs an integer {name} in [0, {limit}), got {value!r}.")
    return int(value)


def philox_normal(seed: int, draw: int, frame: int, shape: Shape) -> np.ndarray:
    """float32 standard normals of the philox source for draw index ``draw`` (0 = initial latent,
    step + 1 = step noise) and ``frame``, C order, as specified in docs/noise.md."""
    seed = _check_index("seed", seed, 1 << 64)
    draw = _check_index("draw index", draw)
    frame = _check_index("frame", frame)
    shape = tuple(int(n) for n in shape)
    count = int(np.prod(shape, dtype=np.int64))
    blocks = -(-count // 4)
    if blocks > 1 << 32:
        raise ValueError(f"philox noise supports at most 2**34 elements per tensor, not {count}.")
    x0, x1, x2, x3 = philox4x32_10(
        (np.arange(blocks, dtype=np.uint64), frame, draw, 0), (seed & _MASK32, seed >> 32)
    )
    # pairs (x0, x1) and (x2, x3): u1 from the first word in (0, 1], u2 from the second in [0, 1)
    first = np.stack([x0, x2], axis=-1) >> np.uint32(8)
    second = np.stack([x1, x3], axis=-1) >> np.uint32(8)
    u1 = (first.astype(np.float64) + 1.0) * 2.0**-24
    u2 = second.astype(np.float64) * 2.0**-24
    r = np.sqrt(-2.0 * np.log(u1))
    theta = TWO_PI * u2
    z = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)  # (blocks, pair, z0/z1)
    return z.astype(np.float32).reshape(-1)[:count].reshape(shape)


class PhiloxNoise:
    """Counter-based Gaussian noise: each value is a pure function of (seed, draw, frame, element).

    Draw 0 is a frame's initial latent, draw ``step + 1`` the noise of timestep index ``step``; the
    result does not depend on call order or on earlier calls, so the source is stateless. The
    algorithm (Philox4x32-10 + Box-Muller) is specified bit for bit in docs/noise.md.
    """

    kind = "philox"

    def __init__(self, seed: int = 0) -> None:
        self.seed = self._checked_seed(seed)

    @staticmethod
    def _checked_seed(seed: Any) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 1 << 64:
            raise ValueError(f"the philox noise seed must be an integer in [0, 2**64), got {seed!r}.")
        return int(seed)

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        return philox_normal(self.seed, 0, frame, shape)

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        return philox_normal(self.seed, _check_index("step", step, (1 << 32) - 1) + 1, frame, shape)

    def state(self) -> dict:
        return {"kind": self.kind, "seed": self.seed}

    def restore(self, state: dict) -> None:
        check_kind(state, self.kind)
        self.seed = self._checked_seed(state.get("seed"))


class NumpyNoise:
    """Seeded numpy Gaussian noise (PCG64), drawn sequentially; not the same numbers as torch."""

    kind = "numpy"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        return self._rng.standard_normal(tuple(shape), dtype=np.float32)

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        return self._rng.standard_normal(tuple(shape), dtype=np.float32)

    def state(self) -> dict:
        # PCG64's state is a dict of (Python, arbitrary-size) ints and strings: JSON-serialisable.
        return {"kind": self.kind, "bit_generator": self._rng.bit_generator.state}

    def restore(self, state: dict) -> None:
        check_kind(state, self.kind)
        self._rng.bit_generator.state = state["bit_generator"]
