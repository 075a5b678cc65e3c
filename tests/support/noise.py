"""Noise test doubles: explicit arrays and a recorder that replays what a source handed out."""

from __future__ import annotations

import numpy as np

from svsr.contract.noise import NoiseSource, Shape, check_kind




class ExplicitNoise:
    """Noise supplied by the caller: ``initial`` (N, *shape) and ``steps`` (S, N, *shape), indexed by frame."""

    kind = "explicit"

    def __init__(self, initial: np.ndarray, steps: np.ndarray) -> None:
        self.initial = np.asarray(initial, dtype=np.float32)
        self.steps = np.asarray(steps, dtype=np.float32)

    def initial_latent(self, frame: int, shape: Shape) -> np.ndarray:
        return self._checked(self.initial[frame], shape)

    def step_noise(self, step: int, frame: int, shape: Shape) -> np.ndarray:
        return self._checked(self.steps[step, frame], shape)

    def state(self) -> dict:
        """Stateless (noise is looked up by index); the arrays themselves are not part of the state."""
        return {"kind": self.kind}

    def restore(self, state: dict) -> None:
        check_kind(state, self.kind)

    @staticmethod
    def _checked(array: np.ndarray, shape: Shape) -> np.ndarray:
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"explicit noise has shape {array.shape}, the sampler needs {tuple(shape)}")
        return array


class RecordingNoise:
    """Wraps a source and keeps every array it hands out, so a second pipeline can replay them.

    ``kind``, ``state()`` and ``restore()`` are the wrapped source's; the recordings are not state.
    """

    def __init__(self, inner: NoiseSource) -> None:
        self.inner = inner
        self.initial: dict[int, np.ndarray] = {}
        self.steps: dict[tuple[int, int], np.ndarray] = {}

    @property
    def kind(self) -> str:
        return self.inner.kind

    def state(self) -> dict:
        return self.inner.state()

    def restore(self, state: dict) -> None:
        self.inner.restore(state)

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
