"""The torch-free runtime: schedule over graphs, ORT backend, svsr-run end to end, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from svsr.cli import export_main, run_main
from svsr.contract.graphs import FLOAT32_ONLY_GRAPHS, GRAPH_NAMES
from svsr.contract.manifest import load_manifest
from svsr.contract.noise import NumpyNoise
from svsr.device.noise import TorchNoise
from svsr.runtime.sampling import Backend
from svsr.runtime.sampling.ort_backend import OrtBackend
from svsr.runtime.sampling.sampler import Sampler
from svsr.runtime.video.write import FrameWriter
from svsr.contract.scheduler import step_coefficients, timesteps
from tests.conftest import random_frames, write_png_folder, read_png_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("run") / "build"
    assert export_main(["--weights", str(tiny_checkpoint), "--out", str(out), "--quiet", "--onnx-only"]) == 0
    return out


@pytest.fixture(scope="module")
def sampler(build):
    manifest = load_manifest(build)
    return Sampler(OrtBackend(build, manifest), manifest)




# -- scheduler maths ------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_steps", [1, 3, 50])
def test_timesteps_match_diffusers(tiny_reference, spacing, num_steps):
    scheduler = tiny_reference.components.scheduler
    config = dict(scheduler.config, timestep_spacing=spacing)
    from diffusers import DDPMScheduler

    theirs = DDPMScheduler.from_config(config)
    theirs.set_timesteps(num_steps)
    assert timesteps(config, num_steps).tolist() == theirs.timesteps.tolist()


def test_step_coefficients_reproduce_the_reference_step(tiny_reference):
    import torch

    ref = tiny_reference
    scheduler = ref.components.scheduler
    config = dict(scheduler.config)
    steps = step_coefficients(config, scheduler.alphas_cumprod.numpy(), 5)
    scheduler.set_timesteps(5)
    rng = np.random.default_rng(0)
    z, out, noise = (rng.standard_normal((1, 4, 8, 8)).astype(np.float32) for _ in range(3))
    for step, t in zip(steps, scheduler.timesteps):
        assert step.timestep == int(t)
        want_prev, want_x0 = ref.ddpm_step(torch.from_numpy(out), t, torch.from_numpy(z), torch.from_numpy(noise))
        c = step.coeffs
        x0 = np.clip(c[0] * z + c[1] * out, -c[5], c[5])
        np.testing.assert_allclose(x0, want_x0.numpy(), atol=2e-6)
        np.testing.assert_allclose(c[2] * x0 + c[3] * z + c[4] * noise, want_prev.numpy(), atol=2e-6)


# -- the sampler ----------------------------------------------------------------------------------
def test_sampler_matches_the_reference_with_torch_noise(sampler, tiny_reference):
    frames = random_frames(4, 36, 44, seed=3)
    got = sampler.upscale(frames, num_inference_steps=3, noise=TorchNoise(2))
    want = tiny_reference.upscale(frames, num_inference_steps=3, seed=2, progress=False)
    assert max(np.abs(a - b).max() for a, b in zip(got, want)) < 1e-4


@pytest.mark.parametrize("scheduler, steps", [("ddim", 3), ("dpmpp-2m", 4)])
def test_sampler_matches_the_reference_per_scheduler(sampler, tiny_reference, scheduler, steps):
    """The same schedule on the graphs (one denoise graph, coefficients from the contract) as the reference's diffusers schedulers."""
    frames = random_frames(3, 32, 40, seed=8)
    got = sampler.upscale(frames, num_inference_steps=steps, noise=TorchNoise(2), scheduler=scheduler)
    want = tiny_reference.upscale(frames, num_inference_steps=steps, seed=2, progress=False, scheduler=scheduler)
    assert max(np.abs(a - b).max() for a, b in zip(got, want)) < 1e-4


@pytest.mark.parametrize("flow_scale", [2, 1])
def test_sampler_matches_the_reference_at_smaller_flow_scales(sampler, tiny_reference, flow_scale):
    """RAFT on x2 (flow_x2) or x1 (flow_x1) frames, the flow upsampled to 4x: the same maths as the reference at that scale."""
    side = 64 if flow_scale == 2 else 128  # the smallest frames RAFT accepts at that scale
    frames = random_frames(3, side, side + 8, seed=9)
    got = sampler.upscale(frames, num_inference_steps=2, noise=TorchNoise(5), flow_scale=flow_scale)
    want = tiny_reference.upscale(frames, num_inference_steps=2, seed=5, progress=False, flow_scale=flow_scale)
    assert max(np.abs(a - b).max() for a, b in zip(got, want)) < 1e-4
    assert f"flow_x{flow_scale}" in sampler.backend.sessions  # opened when the size that runs it was prepared
    # the flow graph itself: the reference's flow at that scale, and not the x4 one (the tiny TCM hides the difference in the frames)
    import torch

    from svsr.contract.sizes import padding_plan
    from svsr.runtime.sampling.sampler import to_model_input

    plan = padding_plan(side, side + 8)
    lr = np.concatenate([to_model_input(f, plan) for f in frames[:2]])
    flows = {}
    for scale in (flow_scale, 4):
        slots = sampler.slots(plan.padded_height, plan.padded_width, flow_scale=scale)
        s = slots.sets[0]
        sampler.backend.upload(s.lr, lr[1:2])
        sampler.backend.upload(s.lr_previous, lr[:1])
        sampler.backend.run(slots.flow_graph, {"frame": s.lr, "previous": s.lr_previous}, {"flow": s.flow})
        flows[scale] = sampler.backend.download(s.flow)
    reference = tiny_reference.flows(torch.from_numpy(lr), flow_scale)[0][0].numpy()
    assert np.abs(flows[flow_scale] - reference).max() < 1e-3 < np.abs(flows[flow_scale] - flows[4]).max()


def test_a_flow_scale_too_large_for_the_frames_is_one_sentence_before_any_work(sampler):
    from svsr.contract.errors import InputError

    with pytest.raises(InputError) as refused:
        sampler.upscale(random_frames(2, 40, 100), num_inference_steps=1, flow_scale=2)
    assert str(refused.value) == "--flow-scale 2 needs frames of at least 64 px per side (RAFT sees them at x2), but these are 100x40; use --flow-scale 4."


def test_sampler_pads_and_crops_odd_sizes(sampler, tiny_reference):
    frames = random_frames(2, 33, 38, seed=4)
    got = sampler.upscale(frames, num_inference_steps=2, noise=TorchNoise(1))
    want = tiny_reference.upscale(frames, num_inference_steps=2, seed=1, progress=False)
    assert got[0].shape == (132, 152, 3)
    assert max(np.abs(a - b).max() for a, b in zip(got, want)) < 1e-4


def test_numpy_noise_is_seeded(sampler):
    frames = random_frames(2, 32, 32, seed=5)
    a = sampler.upscale(frames, 2, noise=NumpyNoise(3))
    b = sampler.upscale(frames, 2, noise=NumpyNoise(3))
    c = sampler.upscale(frames, 2, noise=NumpyNoise(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert max(np.abs(x - z).max() for x, z in zip(a, c)) > 1e-3


class RecordingBackendDouble(Backend):
    """Test double: wraps a real backend and records every call the sampler makes (prepare and launch: the base's defaults)."""

    def __init__(self, inner):
        self.inner, self.name, self.device, self.calls = inner, "recording", inner.device, []

    def allocate(self, label, shape, dtype="float32", host_io=True):
        self.calls.append(("allocate", label))
        return self.inner.allocate(label, shape, dtype, host_io=host_io)

    def upload(self, buffer, array):
        self.calls.append(("upload",))
        self.inner.upload(buffer, array)

    def download(self, buffer):
        self.calls.append(("download",))
        return self.inner.download(buffer)

    def run(self, graph, inputs, outputs):
        self.calls.append(("run", graph))
        self.inner.run(graph, inputs, outputs)

    def synchronize(self):
        self.calls.append(("synchronize",))

    def close(self):
        pass


def test_device_buffers_are_fixed_slots_whatever_the_clip_length(build):
    """Every buffer is allocated before the first run, and their number does not grow with the frames."""
    manifest = load_manifest(build)
    counts = {}
    for n in (2, 5):
        double = RecordingBackendDouble(OrtBackend(build, manifest))
        Sampler(double, manifest).upscale(random_frames(n, 32, 32), num_inference_steps=2)
        runs = [c[1] for c in double.calls if c[0] == "run"]
        assert runs.count("flow") == 2 * (n - 1) and runs.count("denoise") == 2 * n
        assert runs.count("guide_decode") == runs.count("warp") == 2 * (n - 1) and runs.count("decode") == n
        assert not {"blend", "denoise_stats", "decode_stats"} & set(runs)  # whole frames: no tiles to blend, their own statistics
        first_run = next(i for i, c in enumerate(double.calls) if c[0] == "run")
        assert all(c[0] != "allocate" for c in double.calls[first_run:])
        counts[n] = sum(c[0] == "allocate" for c in double.calls)
        # per frame-step the new latent comes back; plus the flows and the output frames
        assert sum(c[0] == "download" for c in double.calls) == 2 * n + 2 * (n - 1) + n
    assert counts[2] == counts[5]


# -- svsr-run end to end --------------------------------------------------------------------------
def test_svsr_run_matches_reference_png(build, tiny_reference, tmp_path):
    frames = random_frames(4, 36, 44, seed=6)
    source = write_png_folder(tmp_path / "in", frames)
    out = tmp_path / "out"
    assert run_main([str(source), "-o", str(out), "--model", str(build), "--backend", "ort", "--noise", "torch", "--seed", "4", "--steps", "3", "--quiet"]) == 0
    got = read_png_folder(out)
    want = tiny_reference.upscale(frames, num_inference_steps=3, seed=4, progress=False)
    assert len(got) == 4
    for g, w in zip(got, want):
        assert g.shape == (144, 176, 3)
        assert np.abs(g.astype(np.float32) / 255 - w).max() <= 2 / 255


def test_svsr_run_reference_backend_same_io(tiny_checkpoint, tmp_path):
    frames = random_frames(2, 32, 36, seed=7)
    source = write_png_folder(tmp_path / "in", frames)
    assert run_main([str(source), "-o", str(tmp_path / "a"), "--backend", "reference", "--weights", str(tiny_checkpoint), "--steps", "2", "--quiet", "--noise", "torch"]) == 0
    assert [f.shape for f in read_png_folder(tmp_path / "a")] == [(128, 144, 3)] * 2


def test_svsr_run_video_keeps_fps(build, tmp_path):
    import av

    source = tmp_path / "clip.mp4"
    with FrameWriter(source, fps=12) as writer:
        for frame in random_frames(5, 32, 40, seed=8):
            writer.write(frame)
    assert run_main([str(source), "--model", str(build), "--steps", "1", "--quiet"]) == 0
    output = tmp_path / "clip_x4.mp4"
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == 12
    assert len(decoded) == 5 and decoded[0].shape == (128, 160, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_x4.mp4"]  # the work folder is gone


def test_chunk_option_is_refused_with_the_reason(build, tmp_path, capsys):
    source = write_png_folder(tmp_path / "in", random_frames(2, 32, 32))
    code = run_main([str(source), "--model", str(build), "--chunk", "8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "processed exactly" in err and "--host-memory" in err


# -- bad input ------------------------------------------------------------------------------------
def _run_bad(args, capsys):
    code = run_main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_one_sentence(err: str, *phrases: str):
    assert err.startswith("svsr: error: ")
    assert err.count("\n") == 0
    for phrase in phrases:
        assert phrase in err, err


@pytest.mark.parametrize(
    "make_input, phrase",
    [
        (lambda d: (d / "notes.mp4").write_text("this is text, not video") and d / "notes.mp4", "not a video"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty"),
        (lambda d: d / "missing.mp4", "does not exist"),
    ],
)
def test_bad_video_inputs(build, tmp_path, capsys, make_input, phrase):
    source = make_input(tmp_path)
    code, err = _run_bad([str(source), "-o", str(tmp_path / "out.mp4"), "--model", str(build), "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err, phrase)
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name or p.name.startswith(".out")]


def test_truncated_video(build, tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    with FrameWriter(source, fps=10) as writer:
        for frame in random_frames(6, 32, 32):
            writer.write(frame)
    data = source.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    code, err = _run_bad([str(tmp_path / "cut.mp4"), "-o", str(tmp_path / "out.mp4"), "--model", str(build), "--quiet", "--steps", "1"], capsys)
    assert code != 0
    _assert_one_sentence(err)
    assert not (tmp_path / "out.mp4").exists()


def test_small_frames_and_mixed_sizes(build, tmp_path, capsys):
    small = write_png_folder(tmp_path / "small", random_frames(2, 30, 30))
    code, err = _run_bad([str(small), "-o", str(tmp_path / "o1"), "--model", str(build), "--quiet"], capsys)
    assert code != 0 and "32" in err
    _assert_one_sentence(err)
    mixed = write_png_folder(tmp_path / "mixed", random_frames(1, 32, 32) + random_frames(1, 36, 36))
    code, err = _run_bad([str(mixed), "-o", str(tmp_path / "o2"), "--model", str(build), "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_missing_and_mismatched_manifest(build, tmp_path, capsys):
    source = write_png_folder(tmp_path / "in", random_frames(2, 32, 32))
    code, err = _run_bad([str(source), "-o", str(tmp_path / "o"), "--model", str(tmp_path), "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err, "manifest.json", "svsr-export")
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    with open(copy / "guide_decode.onnx", "ab") as fh:
        fh.write(b"x")
    code, err = _run_bad([str(source), "-o", str(tmp_path / "o"), "--model", str(copy), "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err, "sha256", "--force")
    code, err = _run_bad([str(source), "-o", str(tmp_path / "o"), "--model", str(build), "--precision", "fp16", "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err, "--precision fp16")
    assert not (tmp_path / "o").exists()


def test_output_not_writable_and_output_equals_input(build, tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    with FrameWriter(source, fps=10) as writer:
        for frame in random_frames(2, 32, 32):
            writer.write(frame)
    code, err = _run_bad([str(source), "-o", str(source), "--model", str(build), "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err, "input")
    # a path below a regular file cannot be written by anyone, root included
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, err = _run_bad([str(source), "-o", str(blocker / "out.mp4"), "--model", str(build), "--quiet"], capsys)
    assert code != 0
    _assert_one_sentence(err)
    assert blocker.read_text() == "x"
    if os.geteuid() != 0:  # root ignores folder permissions
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            code, err = _run_bad([str(source), "-o", str(locked / "out.mp4"), "--model", str(build), "--quiet"], capsys)
            assert code != 0
            _assert_one_sentence(err)
        finally:
            locked.chmod(0o700)


def test_output_in_missing_folder_is_refused(build, tmp_path, capsys):
    source = write_png_folder(tmp_path / "in", random_frames(1, 32, 32))
    target = tmp_path / "no" / "such" / "dir" / "out.mp4"
    code, err = _run_bad([str(source), "-o", str(target), "--model", str(build), "--quiet", "--steps", "1"], capsys)
    assert code != 0
    _assert_one_sentence(err)
    assert not target.exists()


# -- torch-free runtime ---------------------------------------------------------------------------
def test_runtime_never_imports_torch(build, tmp_path):
    script = f"""
import sys, pkgutil, importlib
import svsr.runtime
for module in pkgutil.walk_packages(svsr.runtime.__path__, "svsr.runtime."):
    importlib.import_module(module.name)  # trt_backend imports TensorRT lazily
from svsr.contract.manifest import load_manifest
from svsr.runtime.sampling.backend_choice import open_sampler
from svsr.contract.noise import NumpyNoise
import numpy as np
sampler = open_sampler({str(build)!r}, backend="ort")
out = sampler.upscale([np.zeros((32, 32, 3), np.uint8)] * 2, num_inference_steps=1, noise=NumpyNoise(0))
assert out[0].shape == (128, 128, 3)
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("diffusers"))
print("IMPORTED:", bad)
sys.exit(1 if bad else 0)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IMPORTED: []" in result.stdout
    for source in (REPO / "svsr" / "runtime").rglob("*.py"):
        for line in source.read_text().splitlines():
            assert not line.startswith(("import torch", "from torch")), f"{source.name}: {line}"


class CudaApiTestDouble:
    """Test double for svsr.device.cuda.CudaApi: reports a fixed GPU, touches no device."""

    def __init__(self, device: int = 0) -> None:
        pass

    def device_name(self) -> str:
        return "NVIDIA H100 80GB HBM3"

    def compute_capability(self) -> str:
        return "9.0"


def test_auto_backend_takes_engines_only_when_built_for_this_gpu_and_tensorrt(monkeypatch):
    import types

    import svsr.device.cuda as cuda_api
    from svsr.runtime.sampling.backend_choice import engines_match_this_machine

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.4.0"))  # stand-in module
    monkeypatch.setattr(cuda_api, "CudaApi", CudaApiTestDouble)

    def record(graph, gpu="NVIDIA H100 80GB HBM3", version="11.4.0"):
        return {"graph": graph, "tensorrt_version": version, "gpu_name": gpu, "compute_capability": "9.0"}

    def engines(graphs=GRAPH_NAMES, **kw):  # warp and blend are built in fp32 only, the others here in fp16
        return {"engines": {f"{g}.{'fp32' if g in FLOAT32_ONLY_GRAPHS else 'fp16'}": record(g, **kw) for g in graphs}}

    assert engines_match_this_machine(engines())
    assert not engines_match_this_machine(engines(gpu="NVIDIA A100"))
    assert not engines_match_this_machine(engines(version="10.13.0"))
    assert not engines_match_this_machine(engines(GRAPH_NAMES[:3]))
    assert not engines_match_this_machine(engines([g for g in GRAPH_NAMES if g != "blend"]))


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "no frames"),
        ([np.zeros((40, 40, 3), np.float32)], "dtype float32"),
        ([np.zeros((40, 40, 4), np.uint8)], "HxWx3"),
        ([np.zeros((40, 40, 3), np.uint8), np.zeros((40, 44, 3), np.uint8)], "one size"),
        ([np.zeros((30, 40, 3), np.uint8)], "too small"),
    ],
)
def test_sampler_refuses_bad_frames_like_the_reference(sampler, frames, message):
    from svsr.contract.errors import InputError

    with pytest.raises(InputError, match=message):
        sampler.upscale(frames, num_inference_steps=1)
