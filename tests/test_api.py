"""The Python API the command-line tools mirror: export_model and Upscaler."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import svsr
from svsr.contract.errors import InputError
from tests.conftest import random_frames

README = Path(__file__).resolve().parents[1] / "README.md"


def test_export_model_returns_the_loaded_manifest(tiny_build):
    from svsr.contract.manifest import load_manifest

    manifest = svsr.export_model("preset:tiny", tiny_build, engines=False)  # everything reused
    assert manifest == load_manifest(tiny_build)
    assert manifest["checkpoint"]["preset"] == "tiny"
    assert sorted(manifest["graphs"]) == ["decode", "denoise", "flow", "guide"]


def test_export_model_refuses_auto_precision_and_unknown_presets(tmp_path):
    with pytest.raises(InputError, match="fixed precision"):
        svsr.export_model("preset:tiny", tmp_path / "b", precision="auto", engines=False)
    with pytest.raises(InputError, match="unknown preset 'huge'"):
        svsr.export_model("preset:huge", tmp_path / "b", engines=False)


def test_engines_true_without_tensorrt_keeps_the_graphs_and_says_why(tiny_build, tmp_path):
    from svsr.api import EnginesNotBuiltError

    build = tmp_path / "build"
    shutil.copytree(tiny_build, build)
    with pytest.raises(EnginesNotBuiltError, match="TensorRT engines were not built") as info:
        svsr.export_model("preset:tiny", build, engines=True)
    assert info.value.exit_code == 1
    assert (build / "manifest.json").exists() and (build / "denoise.onnx").exists()


def test_ort_and_reference_are_backends_of_one_call(tiny_build):
    frames = random_frames(3, 32, 36, seed=4)
    with svsr.Upscaler.open(tiny_build, backend="ort") as ort_upscaler:
        assert ort_upscaler.backend == "ort"
        got = ort_upscaler.upscale(frames, num_inference_steps=2, seed=3, noise="torch")
    with svsr.Upscaler.open(backend="reference", weights=tiny_build / "checkpoint") as reference:
        assert reference.backend == "reference"
        want = reference.upscale(frames, num_inference_steps=2, seed=3, noise="torch")
    assert len(got) == 3 and got[0].shape == (128, 144, 3)
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, want)) < 1e-4


def test_a_closed_upscaler_refuses_work_and_closing_twice_is_fine(tiny_build):
    upscaler = svsr.Upscaler.open(tiny_build, backend="ort")
    upscaler.close()
    upscaler.close()
    with pytest.raises(InputError, match="closed"):
        upscaler.upscale(random_frames(1, 32, 32), num_inference_steps=1)


def test_upscaler_closes_its_backend(tiny_build):
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        backend = upscaler.pipeline.backend
        assert backend.sessions
    assert backend.sessions == {}


def test_open_refuses_bad_backends_and_missing_arguments(tiny_build):
    with pytest.raises(InputError, match="unknown backend 'cuda'"):
        svsr.Upscaler.open(tiny_build, backend="cuda")
    with pytest.raises(InputError, match="--weights"):
        svsr.Upscaler.open(backend="reference")
    with pytest.raises(InputError, match="--model"):
        svsr.Upscaler.open(None, backend="ort")


def test_upscale_video_writes_the_output(tiny_build, tmp_path):
    from svsr.runtime.video.read import FrameReader
    from svsr.sample_clip import write_sample_clip

    clip = write_sample_clip(str(tmp_path / "clip.mp4"), num_frames=3)
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        out = upscaler.upscale_video(clip, tmp_path / "clip_x4.mkv", num_inference_steps=1, codec="ffv1")
    with FrameReader(out) as reader:
        frames = list(reader)
    assert len(frames) == 3 and frames[0].shape == (4 * 48, 4 * 64, 3)


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    return blocks[0]


def test_the_readme_python_example_runs(tiny_build, tmp_path, monkeypatch):
    """The README's Python example, executed as written (in a scratch folder, reusing the tiny export)."""
    shutil.copytree(tiny_build, tmp_path / "build" / "tiny")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_python_example(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert Path("build/sample_x4.mp4").exists()
    assert namespace["frames_x4"][0].shape == (4 * 48, 4 * 64, 3)
