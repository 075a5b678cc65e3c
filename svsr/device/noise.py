"""Noise sources by name, the torch one included (torch is imported only when that source is made).

The counter-based ``philox`` and sequential ``numpy`` sources are contract types
(svsr/contract/noise.py); ``torch`` reproduces the reference's seeded draws and needs PyTorch, so it
lives on this device floor, where the runtime may ask for it without importing torch at import time.
"""

from __future__ import annotations

import base64

import numpy as np

from svsr.contract.errors import MissingDependencyError
from svsr.contract.noise import NOISE_KINDS, NoiseSource, NumpyNoise, PhiloxNoise, Shape, check_kind

__all__ = ["TorchNoise", "make_noise"]


class TorchNoise:
    """Draws from ``torch.Generator("cpu").manual_seed(seed)`` exactly as the original pipeline does.

    torch is imported only when this source is created, so the runtime stays torch-free otherwise.
    """

    kind = "torch"

    def __init__(self, seed: int = 0) -> None:
        try:
            import torch
        except ImportError:
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

    def state(self) -> dict:
        raw = self._generator.get_state().numpy().tobytes()
        return {"kind": self.kind, "generator": base64.b64encode(raw).decode("ascii")}

    def restore(self, state: dict) -> None:
        check_kind(state, self.kind)
        raw = bytearray(base64.b64decode(state["generator"]))
        self._generator.set_state(self._torch.frombuffer(raw, dtype=self._torch.uint8).clone())


def make_noise(kind: str, seed: int) -> NoiseSource:
    """Noise source by name: ``philox`` (counter-based, order-free, specified in docs/noise.md),
    ``numpy`` (sequential PCG64) or ``torch`` (reproduces the reference's seeded draws)."""
    if kind == "philox":
        return PhiloxNoise(seed)
    if kind == "numpy":
        return NumpyNoise(seed)
    if kind == "torch":
        return TorchNoise(seed)
    raise ValueError(f"unknown noise source {kind!r}; use one of {', '.join(NOISE_KINDS)}.")
