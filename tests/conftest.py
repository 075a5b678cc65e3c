"""Shared fixtures: random-weight checkpoints made on the fly; nothing is downloaded."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["SVSR_OFFLINE"] = "1"

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from svsr.reference import write_preset

    return write_preset("tiny", tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_reference(tiny_checkpoint):
    from svsr.reference import StableVSRReference

    return StableVSRReference.from_pretrained(tiny_checkpoint)


def random_frames(num_frames: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num_frames)]


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """The tiny preset exported through the Python API (float32 graphs, no engines)."""
    import svsr

    out = tmp_path_factory.mktemp("api") / "build"
    svsr.export_model("preset:tiny", out, engines=False)
    return out
