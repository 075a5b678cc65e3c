"""Real videos at scale: scene cuts split shots, many inputs in one run, resume per input, Ray workers."""

from __future__ import annotations

import importlib.util
import json
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import svsr
from svsr.runtime.sampling import Backend
from svsr.runtime.sampling.sampler import to_model_input
from svsr.runtime.jobs.shots import CutDetector, shots_from_cuts
from svsr.runtime.video.read import FrameReader
from svsr.runtime.video.write import FrameWriter
from svsr.contract.sizes import padding_plan

from tests.conftest import svsr_run

REPO = Path(__file__).resolve().parents[1]
CUT = 20


def scene(seed: int, num_frames: int, height: int = 32, width: int = 48) -> list[np.ndarray]:
    """A slow pan over a smooth random picture of its own colours: one shot."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 4, width // 4 + num_frames + 4, 3)).astype(np.float32)
    big = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((base.shape[1] * 4, base.shape[0] * 4), Image.Resampling.BICUBIC))
    tint = np.array(rng.integers(0, 256, 3), np.float32)
    frames = []
    for i in range(num_frames):
        crop = big[:height, i : i + width].astype(np.float32)
        frames.append(np.clip(0.5 * crop + 0.5 * tint, 0, 255).astype(np.uint8))
    return frames


def two_scene_frames(first: int = CUT, second: int = 16) -> list[np.ndarray]:
    return scene(1, first) + scene(2, second)


def write_video(path: Path, frames, fps: int = 12) -> Path:
    with FrameWriter(path, fps, codec="ffv1") as writer:
        for frame in frames:
            writer.write(frame)
    return path


def decode(path: Path) -> list[np.ndarray]:
    with FrameReader(path) as reader:
        return list(reader)


def test_exactly_the_hard_cut_is_found():
    frames = two_scene_frames()
    detector = CutDetector(Fraction(12))
    for frame in frames:
        detector.add(frame)
    assert detector.cuts() == [CUT]
    shots = shots_from_cuts(Path("x.mkv"), len(frames), [CUT])
    assert [s.as_range() for s in shots] == [[0, CUT - 1], [CUT, len(frames) - 1]]


def test_one_scene_has_no_cut():
    detector = CutDetector(Fraction(12))
    for frame in scene(3, 30):
        detector.add(frame)
    assert detector.cuts() == []


class FlowRecorderDouble(Backend):
    """Test double around a real backend: notes which LR frames each flow run compares (prepare and launch: the base's defaults)."""

    def __init__(self, inner):
        self.inner, self.name, self.device = inner, inner.name, inner.device
        self.contents: dict[int, bytes] = {}
        self.flow_pairs: list[tuple[bytes, bytes]] = []
        self.denoise_runs = 0

    def allocate(self, label, shape, dtype="float32", host_io=True):
        return self.inner.allocate(label, shape, dtype, host_io=host_io)

    def upload(self, buffer, array):
        self.contents[id(buffer)] = np.ascontiguousarray(array, np.float32).tobytes()
        self.inner.upload(buffer, array)

    def download(self, buffer):
        return self.inner.download(buffer)

    def run(self, graph, inputs, outputs):
        if graph == "flow":
            self.flow_pairs.append((self.contents[id(inputs["frame"])], self.contents[id(inputs["previous"])]))
        self.denoise_runs += graph == "denoise"
        self.inner.run(graph, inputs, outputs)

    def synchronize(self):
        self.inner.synchronize()

    def close(self):
        self.inner.close()


def test_no_flow_spans_the_cut_and_each_shot_is_its_own_clip(tiny_build, tmp_path):
    frames = two_scene_frames()
    video = write_video(tmp_path / "two_scenes.mkv", frames)
    index = {to_model_input(f, padding_plan(32, 48)).tobytes(): k for k, f in enumerate(frames)}
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        recorder = FlowRecorderDouble(upscaler.pipeline.backend)
        upscaler.pipeline.backend = recorder
        out = upscaler.upscale_video(video, tmp_path / "out.mkv", num_inference_steps=2, codec="ffv1")
    pairs = [(index[a], index[b]) for a, b in recorder.flow_pairs]
    assert len(pairs) == 2 * (len(frames) - 2)  # both directions for every neighbour pair except across the cut
    assert all(abs(a - b) == 1 for a, b in pairs)
    assert not any({a, b} == {CUT - 1, CUT} for a, b in pairs)
    assert recorder.denoise_runs == 2 * len(frames)
    got = decode(out)
    assert len(got) == len(frames) and got[0].shape == (128, 192, 3)
    # each shot equals upscaling that shot alone: no guidance crosses the cut
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        second = upscaler.upscale(frames[CUT:], num_inference_steps=2)
    assert all(np.array_equal(g, (np.clip(s, 0, 1) * 255 + 0.5).astype(np.uint8)) for g, s in zip(got[CUT:], second))


def test_no_scene_split_makes_one_shot(tiny_build, tmp_path):
    video = write_video(tmp_path / "two_scenes.mkv", two_scene_frames())
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        split = decode(upscaler.upscale_video(video, tmp_path / "split.mkv", num_inference_steps=1, codec="ffv1"))
        whole = decode(upscaler.upscale_video(video, tmp_path / "whole.mkv", num_inference_steps=1, codec="ffv1", scene_split=False))
    assert all(np.array_equal(a, b) for a, b in zip(split[:CUT], whole[:CUT]))  # the first shot is the same clip start...
    assert any(not np.array_equal(a, b) for a, b in zip(split[CUT:], whole[CUT:]))  # ...but after the cut guidance differs


# -- many inputs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    write_video(folder / "a.mkv", two_scene_frames(16, 4))  # PySceneDetect keeps shots of at least 15 frames
    write_video(folder / "b.mkv", scene(5, 7))
    frames = folder / "c_frames"
    frames.mkdir()
    for i, frame in enumerate(scene(6, 5)):
        Image.fromarray(frame).save(frames / f"{i:03d}.png")
    return folder


def outputs_of(folder: Path) -> dict[str, list[np.ndarray]]:
    return {name: decode(folder / name) for name in ("a_x4.mkv", "b_x4.mkv", "c_frames_x4")}


@pytest.fixture(scope="module")
def batch_outputs(tiny_build, three_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    report = out.parent / "report.json"
    done = svsr_run(str(three_inputs / "*.mkv"), str(three_inputs / "c_frames"), "-o", str(out), "--model", str(tiny_build),
                    "--steps", "2", "--codec", "ffv1", "--report", str(report), "--scene-threshold", "27")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, report, done


def test_many_inputs_one_output_each_with_a_summary_and_a_report(batch_outputs):
    out, report, done = batch_outputs
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.mkv", "b_x4.mkv", "c_frames_x4"]
    assert "input" in done.stderr and "s/frame" in done.stderr and done.stderr.count(" done") >= 3
    rows = json.loads(report.read_text())["inputs"]
    assert [Path(r["path"]).name for r in rows] == ["a.mkv", "b.mkv", "c_frames"]
    assert [r["frames"] for r in rows] == [20, 7, 5]
    assert rows[0]["shots"] == [[0, 15], [16, 19]] and rows[1]["shots"] == [[0, 6]]
    assert rows[0]["fps"] == "12" and rows[2]["fps"] == "24"
    assert all(r["status"] == "done" and r["backend"].startswith("ort") and r["seconds"] > 0 for r in rows)
    got = outputs_of(out)
    assert [len(v) for v in got.values()] == [20, 7, 5]


def test_a_rerun_skips_finished_inputs(batch_outputs, tiny_build, three_inputs):
    out, _, _ = batch_outputs
    again = svsr_run(str(three_inputs / "*.mkv"), str(three_inputs / "c_frames"), "-o", str(out), "--model", str(tiny_build),
                     "--steps", "2", "--codec", "ffv1")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("exists, skipped") == 3


def test_a_killed_batch_resumes_the_unfinished_input(batch_outputs, tiny_build, three_inputs, tmp_path):
    out = tmp_path / "out"
    args = [str(three_inputs / "*.mkv"), str(three_inputs / "c_frames"), "-o", str(out), "--model", str(tiny_build), "--steps", "2", "--codec", "ffv1"]
    killed = svsr_run(*args, env={"SVSR_TEST_CRASH_AT": "step:1:3"})  # the first input's first shot, mid-sweep
    assert killed.returncode == -signal.SIGKILL
    resumed = svsr_run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 1 of 2" in resumed.stderr
    want, got = outputs_of(batch_outputs[0]), outputs_of(out)
    assert all(np.array_equal(a, b) for name in want for a, b in zip(want[name], got[name]))


# -- Ray ----------------------------------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray: pip install 'svsr[ray]'")


@needs_ray
def test_ray_workers_give_the_same_outputs_even_when_one_is_killed(batch_outputs, tiny_build, three_inputs, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "crashed-once"
    done = svsr_run(str(three_inputs / "*.mkv"), str(three_inputs / "c_frames"), "-o", str(out), "--model", str(tiny_build),
                    "--steps", "2", "--codec", "ffv1", "--ray", "local", "--ray-workers", "2", "--report", str(tmp_path / "r.json"),
                    env={"SVSR_TEST_CRASH_AT": "step:1:2", "SVSR_TEST_CRASH_ONCE": str(marker), "RAY_DEDUP_LOGS": "0"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.exists()  # a worker really was killed mid-shot
    pids = {int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in done.stderr.splitlines() if "(pid " in line}
    assert len(pids) >= 2  # shots ran on more than one worker process
    want, got = outputs_of(batch_outputs[0]), outputs_of(out)
    assert all(len(want[n]) == len(got[n]) and all(np.array_equal(a, b) for a, b in zip(want[n], got[n])) for n in want)
    rows = json.loads((tmp_path / "r.json").read_text())["inputs"]
    assert all(r["status"] == "done" and r["backend"].startswith("ray/") for r in rows)
