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


# -- options and backends as data ---------------------------------------------------------------------
def test_video_options_are_frozen_checked_and_exported_from_svsr():
    from dataclasses import FrozenInstanceError

    from svsr.contract.video_options import VideoOptions

    assert svsr.VideoOptions is VideoOptions
    options = svsr.VideoOptions(num_inference_steps=4, host_memory="8G", fps=29.97, work_dir="w")
    assert options.host_memory == 8 * 2**30 and options.fps.numerator == 2997 and options.work_dir == Path("w")
    with pytest.raises(FrozenInstanceError):
        options.codec = "vp9"
    assert options.with_overrides(codec="ffv1").codec == "ffv1" and options.codec == "h264"
    with pytest.raises(InputError, match=r"unknown video option 'chunk'"):
        options.with_overrides(chunk=8)
    with pytest.raises(InputError, match=r"^flows='cache' is not one of store or recompute\.$"):
        svsr.VideoOptions(flows="cache")


def test_open_takes_backend_options_beside_names(tiny_build):
    assert (svsr.ORT, svsr.TRT, svsr.Reference) == (svsr.api.ORT, svsr.api.TRT, svsr.api.Reference)
    with svsr.Upscaler.open(tiny_build, backend=svsr.ORT(threads=1)) as upscaler:
        assert upscaler.backend == "ort" and upscaler.label == f"ort-{upscaler.pipeline.backend.device}"
        assert upscaler.pipeline.backend.name == "ort"
    with pytest.raises(InputError, match="--weights"):
        svsr.Upscaler.open(backend=svsr.Reference())


def test_the_reference_runs_the_same_video_job_and_refuses_what_it_cannot_honour(tiny_build, tmp_path):
    from tests.conftest import read_png_folder, write_png_folder

    frames = random_frames(3, 32, 36, seed=9)
    source = write_png_folder(tmp_path / "in", frames)
    with svsr.Upscaler.open(backend=svsr.Reference(weights=tiny_build / "checkpoint")) as reference:
        with pytest.raises(InputError, match=r"^the reference backend holds each shot in memory, so host_memory=1048576 cannot bound it"):
            reference.upscale_video(source, tmp_path / "refused", num_inference_steps=1, host_memory="1M")
        with pytest.raises(InputError, match=r"flows='recompute' cannot apply"):
            reference.upscale_video(source, tmp_path / "refused", num_inference_steps=1, flows="recompute")
        assert not (tmp_path / "refused").exists()
        out = reference.upscale_video(source, tmp_path / "ref", num_inference_steps=2, noise="torch", seed=1, work_dir=tmp_path / "work")
        want = reference.upscale(frames, num_inference_steps=2, noise="torch", seed=1)
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        streamed = upscaler.upscale_video(source, tmp_path / "ort", num_inference_steps=2, noise="torch", seed=1)
    got = read_png_folder(out)
    assert len(got) == 3 and not (tmp_path / "work").exists()  # the job's work folder, removed after success
    assert max(np.abs(g.astype(np.float32) / 255 - w).max() for g, w in zip(got, want)) <= 1 / 255
    assert max(np.abs(a.astype(np.int16) - b).max() for a, b in zip(got, read_png_folder(streamed))) <= 1


def test_upscale_video_is_upscale_videos_with_one_input(tiny_build, tmp_path):
    from svsr.runtime.video import FrameReader
    from svsr.sample_clip import write_sample_clip

    clip = write_sample_clip(str(tmp_path / "clip.mp4"), num_frames=2)
    options = svsr.VideoOptions(num_inference_steps=1, codec="ffv1")
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        results = upscaler.upscale_videos([clip], output=tmp_path / "many.mkv", options=options)
        one = upscaler.upscale_video(clip, tmp_path / "one.mkv", options)
    assert [r.status for r in results] == ["done"] and results[0].backend == upscaler.label and results[0].frames == 2
    assert one == tmp_path / "one.mkv"
    with FrameReader(results[0].output) as many_frames, FrameReader(one) as one_frames:
        assert all(np.array_equal(a, b) for a, b in zip(many_frames, one_frames))


def test_the_job_reads_latent_channels_from_the_manifest(tiny_build, tmp_path):
    """The clip store's latent planes take the manifest's latent_channels (the sampler's), never a constant."""
    from svsr.runtime.jobs import ShotJob, noise_factory, plan_input
    from tests.conftest import write_png_folder

    source = write_png_folder(tmp_path / "in", random_frames(2, 32, 36))
    options = svsr.VideoOptions(num_inference_steps=1, scene_split=False)
    plan = plan_input(source, tmp_path / "out", options)
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        sampler = upscaler.pipeline
        assert sampler.latent_channels == sampler.manifest.get("latent_channels", 4)
        sampler.latent_channels = 6  # as a build with a 6-channel latent would say
        job = ShotJob(sampler, plan, plan.shots[0], noise_factory(options), options, build_dir=tiny_build)
        assert job.layout(2).latent_shape == (1, 6, 32, 36)
