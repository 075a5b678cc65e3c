"""Noise sources for the sampler (torch-free; the torch source imports torch lazily).

The sampler asks for noise in the official draw order: first the initial latent of every frame in
frame order, then one draw per (timestep, frame) call in sweep order, only for timesteps > 0.
A source that draws sequentially from one generator (numpy, torch) therefore reproduces that
order; the explicit source looks noise up by (step, frame) instead.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

Shape = Sequence[int]


class NoiseSource(Protocol):
    """Supplies float32 Gaussian noise to the sampler."""

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        """Initial latent of ``frame`` (called for frames 0..N-1 in order, before any step)."""

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        """Noise for the DDPM step of ``frame`` at timestep index ``step`` (called in sweep order)."""


class NumpyNoise:
    """Seeded numpy Gaussian noise (PCG64): the runtime's default; not the same numbers as torch."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        return self._rng.standard_normal(tuple(shape), dtype=np.float32)

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        return self._rng.standard_normal(tuple(shape), dtype=np.float32)


class TorchNoise:
    """Draws from ``torch.Generator("cpu").manual_seed(seed)`` exactly as the original pipeline does.

    torch is imported only when this source is created, so the runtime stays torch-free otherwise.
    """

    def __init__(self, seed: int = 0) -> None:
        try:
            import torch
        except ImportError:
            from svsr.errors import MissingDependencyError

            raise MissingDependencyError(
                "the torch noise source needs PyTorch; install svsr[export] or use --noise numpy."
            ) from None
        self._torch = torch
        self._generator = torch.Generator("cpu").manual_seed(seed)

    def _draw(self, shape: Shape) -> np.ndarray:
        return self._torch.randn(tuple(shape), generator=self._generator, dtype=self._torch.float32).numpy()

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        return self._draw(shape)

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        return self._draw(shape)


class ExplicitNoise:
    """Noise supplied by the caller: ``initial`` (N, *shape) and ``steps`` (S, N, *shape), indexed by frame."""

    def __init__(self, initial: np.ndarray, steps: np.ndarray) -> None:
        self.initial = np.asarray(initial, dtype=np.float32)
        self.steps = np.asarray(steps, dtype=np.float32)

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        return self._checked(self.initial[frame], shape)

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        return self._checked(self.steps[step, frame], shape)

    @staticmethod
    def _checked(array: np.ndarray, shape: Shape) -> np.ndarray:
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"explicit noise has shape {array.shape}, the sampler needs {tuple(shape)}")
        return array


class RecordingNoise:
    """Wraps a source and keeps every array it hands out, so a second pipeline can replay them."""

    def __init__(self, inner: NoiseSource) -> None:
        self.inner = inner
        self.initial: dict[int, np.ndarray] = {}
        self.steps: dict[tuple[int, int], np.ndarray] = {}

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        self.initial[frame] = self.inner.initial_latent(frame, shape)
        return self.initial[frame]

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        self.steps[step, frame] = self.inner.step_noise(step, frame, shape)
        return self.steps[step, frame]

    def as_explicit(self, num_steps: int) -> ExplicitNoise:
        """The recorded draws as an ExplicitNoise (steps without noise, t == 0, are zeros)."""
        frames = sorted(self.initial)
        initial = np.stack([self.initial[k] for k in frames])
        steps = np.zeros((num_steps, len(frames), *initial.shape[1:]), dtype=np.float32)
        for (step, frame), array in self.steps.items():
            steps[step, frame] = array
        return ExplicitNoise(initial, steps)


def make_noise(kind: str, seed: int) -> NoiseSource:
    """Noise source by name: ``numpy`` (default) or ``torch`` (reproduces the reference's seeded draws)."""
    if kind == "numpy":
        return NumpyNoise(seed)
    if kind == "torch":
        return TorchNoise(seed)
    raise ValueError(f"unknown noise source {kind!r}; use numpy or torch")
