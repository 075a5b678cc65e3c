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
    """The tiny preset exported once for the whole test run (float32 graphs, no engines).

    Its weights are ``tiny_checkpoint``'s (preset tiny, seed 0), so outputs compare with
    ``tiny_reference``. Shared by every test: copy it (shutil.copytree) before changing anything in it.
    """
    import svsr

    out = tmp_path_factory.mktemp("api") / "build"
    svsr.export_model("preset:tiny", out, engines=False)
    return out


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def svsr_run(*args: str, env: dict | None = None, crash_at: str | None = None, timeout: float = 600):
    """svsr-run in a child process; ``crash_at`` sets the job's SIGKILL test hook (SVSR_TEST_CRASH_AT)."""
    import subprocess
    import sys

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SVSR_TEST_")}
    full_env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
    if crash_at:
        full_env["SVSR_TEST_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", "import sys; from svsr.cli import run_main; sys.exit(run_main())", *args],
        capture_output=True, text=True, env=full_env, cwd=REPO, timeout=timeout,
    )  # fmt: skip


def write_png_folder(folder, frames):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{i:04d}.png")
    return folder


def read_png_folder(folder) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]
