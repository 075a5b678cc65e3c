"""The Python API the command-line tools mirror: export_model and Upscaler."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

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
    assert sorted(manifest["graphs"]) == sorted(["flow", "flow_x2", "flow_x1", "denoise", "denoise_stats", "guide_decode", "decode_stats", "warp",
                                                 "decode", "blend"])  # fmt: skip


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


# -- tiles and schedulers through the API ---------------------------------------------------------------
class SamplerDouble:
    """Test double of a Sampler for the tile choice: only what choose_tiles reads."""

    manifest: dict = {}
    backend = SimpleNamespace(name="ort")


def test_the_tile_option_resolves_to_whole_frames_or_a_layout_with_one_line_saying_so():
    from svsr.contract.video_options import VideoOptions
    from svsr.runtime.jobs import choose_tiles

    sampler, spell = SamplerDouble(), VideoOptions.cli_spelling
    off = choose_tiles(sampler, "off", 16, 180, 320, spell=spell)
    assert off.tile is None and off.slot_tiles is None and off.text == "off" and off.sentence == "tiles: off (--tile off): whole 320x180 frames"
    covering = choose_tiles(sampler, (192, 320), 16, 180, 320, spell=spell)
    assert covering.tile is None and covering.layout.single and covering.text == "off"
    assert covering.sentence == "tiles: off (a 192x320 tile covers the whole 320x180 frame; as asked (--tile 192x320))"
    tiled = choose_tiles(sampler, (96, 128), 16, 176, 320, spell=spell)
    assert tiled.tile == (96, 128) and tiled.text == "96x128" and tiled.slot_tiles is tiled.layout and len(tiled.layout.tiles) == 6
    assert tiled.sentence == "tiles: 6 tiles of 96x128 (2 rows), overlap 16 per 320x176 frame (as asked (--tile 96x128))"
    # auto keeps the choice an interrupted run recorded, whatever memory says now
    kept = choose_tiles(sampler, "auto", 16, 180, 320, spell=spell, recorded=(96, 128))
    assert kept.text == "96x128" and kept.sentence.endswith("(as the interrupted run chose)")
    assert choose_tiles(sampler, "auto", 16, 180, 320, recorded="off").tile is None


def test_auto_tiles_follow_the_memory_plan_and_refuse_an_overlap_its_tile_cannot_hold(monkeypatch):
    import svsr.runtime.sampling as sampling
    from svsr.contract.video_options import VideoOptions
    from svsr.runtime.jobs import choose_tiles

    asked = []

    def choose_tile_double(manifest, height, width, available_bytes, **keywords):  # test double of the memory plan's choice
        asked.append((height, width, keywords["backend"], keywords["overlap"], keywords["history"]))
        assert available_bytes >= 0
        if width > 320:
            return SimpleNamespace(tile=(64, 64), reason="tiles of 64x64: 2.0 GiB of 12.0 GiB memory budget; untiled would need 30.0 GiB")
        return SimpleNamespace(tile=None, reason=f"untiled {width}x{height}: needs 1.0 GiB of 12.0 GiB memory budget")

    monkeypatch.setattr(sampling, "choose_tile", choose_tile_double, raising=False)
    sampler, spell = SamplerDouble(), VideoOptions.cli_spelling
    small = choose_tiles(sampler, "auto", 16, 180, 320, spell=spell, store_bytes=2**20)
    assert small.tile is None and small.sentence == "tiles: off (untiled 320x180: needs 1.0 GiB of 12.0 GiB memory budget)"
    big = choose_tiles(sampler, "auto", 8, 540, 960, spell=spell, history=True)
    assert big.tile == (64, 64) and big.layout.tile_shape == (64, 64) and big.layout.overlap == 8
    assert big.sentence == "tiles: tiles of 64x64: 2.0 GiB of 12.0 GiB memory budget; untiled would need 30.0 GiB"
    assert asked == [(180, 320, "ort", 16, False), (540, 960, "ort", 8, True)]
    with pytest.raises(InputError) as refused:
        choose_tiles(sampler, "auto", 40, 540, 960, spell=spell)
    assert str(refused.value).startswith("--tile auto chose 64x64 tiles for 960x540 frames, and --tile-overlap 40 is half a tile or more")


def test_upscale_plumbs_scheduler_and_tiles_to_the_sampler(tiny_build):
    frames = random_frames(2, 32, 36, seed=4)
    said: list[str] = []
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        whole = upscaler.upscale(frames, num_inference_steps=2, tile="off")
        covering = upscaler.upscale(frames, num_inference_steps=2, tile=(32, 36), tile_overlap=8, report=said.append)
        ddim = upscaler.upscale(frames, num_inference_steps=2, scheduler="ddim")
        with pytest.raises(InputError, match=r"^unknown scheduler scheduler='euler'; use one of ddpm, ddim, dpmpp-2m\.$"):
            upscaler.upscale(frames, scheduler="euler")
        with pytest.raises(InputError, match=r"^tile='8x8' is below the smallest tile"):
            upscaler.upscale(frames, tile="8x8")
    assert said == ["tiles: off (a 32x36 tile covers the whole 36x32 frame; as asked (tile='32x36'))"]
    assert all(np.array_equal(a, b) for a, b in zip(whole, covering))  # a tile covering the frame is the untiled path, bit for bit
    assert all(d.shape == w.shape for d, w in zip(ddim, whole)) and any(not np.array_equal(d, w) for d, w in zip(ddim, whole))


class InterruptingProgress:
    """Test double of a progress bar: Ctrl-C (KeyboardInterrupt) once ``after`` frame-steps are done."""

    def __init__(self, after: int) -> None:
        self.after, self.done = after, 0

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.done > self.after:
            raise KeyboardInterrupt


def test_an_interrupted_auto_run_resumes_at_the_flow_scale_it_chose(tiny_build, tmp_path, monkeypatch):
    """flow_scale auto is recorded in the checkpoint like the tile: a rerun keeps it where the memory plan now says otherwise,
    a rerun asking another scale is another job, and the resumed output is the uninterrupted one's bit for bit."""
    import json

    import svsr.runtime.sampling as sampling
    from svsr.runtime.jobs import CHECKPOINT_NAME, Interrupted
    from tests.conftest import read_png_folder, write_png_folder

    plan_says = {"flow_scale": 2}

    def choose_flow_scale_double(manifest, height, width, available_bytes, *, tile, overlap, **keywords):  # test double of the memory plan's choice
        return SimpleNamespace(tile=None, reason=f"untiled {width}x{height}: fits (test double)", flow_scale=plan_says["flow_scale"],
                               flow_reason="RAFT at x4 does not fit (test double)")  # fmt: skip

    monkeypatch.setattr(sampling, "choose_flow_scale", choose_flow_scale_double, raising=False)
    source = write_png_folder(tmp_path / "in", random_frames(3, 64, 64, seed=5))
    options = svsr.VideoOptions(num_inference_steps=2, noise="philox", seed=3, scene_split=False)
    out, said = tmp_path / "out", []
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        with pytest.raises(Interrupted):
            upscaler.upscale_video(source, out, options, progress=InterruptingProgress(after=4), report=said.append)
        assert "svsr-run: in: flow scale: 2 (flow_scale='auto': RAFT at x4 does not fit (test double))" in said
        (checkpoint,) = (out.parent / f".{out.name}.svsr-work").glob(f"shot*/{CHECKPOINT_NAME}")
        recorded = json.loads(checkpoint.read_text())
        assert recorded["options"]["flow_scale"] == 2 and recorded["steps_done"] == 1
        with pytest.raises(InputError, match=r"holds an interrupted run of another job \(different flow_scale 2 -> 4\)"):
            upscaler.upscale_video(source, out, options, flow_scale=4)
        plan_says["flow_scale"] = 4  # memory changed: a fresh auto run would now choose 4
        said.clear()
        upscaler.upscale_video(source, out, options, report=said.append)
        assert "svsr-run: in: flow scale: 2 (as the interrupted run chose)" in said and any(line.startswith("svsr-run: resuming from step 1 of 2") for line in said)
        uninterrupted = upscaler.upscale_video(source, tmp_path / "whole", options, flow_scale=2)
    assert all(np.array_equal(a, b) for a, b in zip(read_png_folder(out), read_png_folder(uninterrupted)))
    assert len(read_png_folder(out)) == 3


def test_flow_scale_reaches_both_backends_and_a_too_small_frame_is_one_sentence(tiny_build):
    """flow_scale=2 runs the flow_x2 graph on ONNX Runtime and the same maths in the reference; frames too small for a scale
    are refused in the same sentence by both."""
    frames = random_frames(2, 64, 68, seed=6)
    said: list[str] = []
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        got = upscaler.upscale(frames, num_inference_steps=1, seed=2, noise="torch", flow_scale=2, report=said.append)
        with pytest.raises(InputError) as from_ort:
            upscaler.upscale(frames, num_inference_steps=1, flow_scale=1)
    with svsr.Upscaler.open(backend="reference", weights=tiny_build / "checkpoint") as reference:
        want = reference.upscale(frames, num_inference_steps=1, seed=2, noise="torch", flow_scale=2)
        with pytest.raises(InputError) as from_reference:
            reference.upscale(frames, num_inference_steps=1, flow_scale=1)
    assert "flow scale: 2 (as asked (flow_scale=2))" in said
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, want)) < 1e-4
    sentence = "flow_scale=1 needs frames of at least 128 px per side (RAFT sees them at x1), but these are 68x64; use flow_scale=4."
    assert str(from_ort.value) == str(from_reference.value) == sentence


def test_the_reference_takes_auto_as_the_original_flow_scale_and_refuses_a_scale_too_large_in_the_callers_spelling():
    """The reference has no memory plan: auto is 4; an explicit scale is checked against the frames before any is read."""
    from svsr.contract.video_options import VideoOptions
    from svsr.runtime.jobs import whole_clip_flow_scale

    assert whole_clip_flow_scale(VideoOptions(), 32, 32) == 4
    assert whole_clip_flow_scale(VideoOptions(flow_scale=2), 64, 68) == 2
    with pytest.raises(InputError) as refused:
        whole_clip_flow_scale(VideoOptions.spelled(VideoOptions.cli_spelling, flow_scale="1"), 64, 68)
    assert str(refused.value) == ("--flow-scale 1 needs frames of at least 128 px per side (RAFT sees them at x1), but these are 68x64; "
                                  "use --flow-scale 4.")  # fmt: skip
