"""TensorRT on a real GPU: tiny engines built here, against the reference, ONNX Runtime and itself.

Marked `trt`; the whole module skips, with the reason, where TensorRT, cuda-python, an NVIDIA GPU
or the export extra (PyTorch + diffusers: the checkpoint, its export and the reference) is missing.
Tolerances (max abs error on [0, 1] frames): fp32 engines 2/255, fp16 engines 8/255. CUDA graphs
against eager launches, and a reopened backend against the first, must be bit-equal.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.trt

pytest.importorskip("tensorrt", reason="TensorRT is not installed (svsr[tensorrt], from NVIDIA's index); TensorRT tests need it and a GPU")
pytest.importorskip("cuda.bindings", reason="cuda-python is not installed (svsr[tensorrt]); TensorRT tests need it and a GPU")
pytest.importorskip("diffusers", reason="the checkpoint, its export and the reference need the export extra (PyTorch + diffusers)")

from svsr.engines.builder import build_engines, tensorrt_build_available  # noqa: E402
from svsr.contract.profiles import Profile  # noqa: E402

_BUILD_OK, _BUILD_WHY = tensorrt_build_available()
pytestmark = [pytest.mark.trt, pytest.mark.skipif(not _BUILD_OK, reason=f"cannot build TensorRT engines here (no usable TensorRT or GPU): {_BUILD_WHY}")]

from PIL import Image  # noqa: E402

from svsr.cli import export_main, run_main  # noqa: E402
from svsr.contract.manifest import load_manifest, sha256_file, write_manifest  # noqa: E402
from svsr.contract.noise import NumpyNoise  # noqa: E402
from svsr.runtime.sampling.sampler import Sampler  # noqa: E402
from tests.conftest import random_frames  # noqa: E402

HEIGHT, WIDTH = 36, 44  # LR size of the small test clips; their engines are built static for it
REAL_HEIGHT, REAL_WIDTH, REAL_FRAMES, REAL_STEPS = 180, 320, 8, 3  # the realistic clip
TOLERANCE = {"fp32": 2 / 255, "fp16": 8 / 255}
CAPTURE_FAILED = r".*could not be captured as a CUDA graph.*"


def _typed_fp16(build: Path, manifest: dict) -> None:
    """fp16 graphs (float32 I/O) for engines, unless the export already made them.

    The project's mixed-precision step writes ``graphs[g].typed.fp16``; where it has not, ONNX
    Runtime's float16 converter (the same graph surgery, without range analysis) stands in.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for name, entry in manifest["graphs"].items():
        if "fp16" in entry.get("typed", {}):
            continue
        model = convert_float_to_float16(onnx.load(str(build / entry["file"])), keep_io_types=True)
        file = f"{Path(entry['file']).stem}.fp16.onnx"
        onnx.save(model, str(build / file))
        entry.setdefault("typed", {})["fp16"] = {"file": file, "sha256": sha256_file(build / file), "precision": "fp16"}


@pytest.fixture(scope="module")
def onnx_build(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint exported to ONNX (float32 and fp16 graphs), no engines yet."""
    out = tmp_path_factory.mktemp("trt") / "onnx"
    assert export_main(["--weights", str(tiny_checkpoint), "--out", str(out), "--quiet", "--onnx-only"]) == 0
    manifest = load_manifest(out)
    _typed_fp16(out, manifest)
    write_manifest(out, manifest)
    return out


def _with_engines(onnx_build: Path, folder: Path, profile: Profile) -> Path:
    shutil.copytree(onnx_build, folder)
    manifest = load_manifest(folder)
    for precision in ("fp32", "fp16"):
        manifest["engines"] = build_engines(folder, manifest, precision, profile, report=lambda _m: None)
    write_manifest(folder, manifest)
    return folder


@pytest.fixture(scope="module")
def build(onnx_build, tmp_path_factory):
    """fp32 and fp16 engines, static for the small clips."""
    return _with_engines(onnx_build, tmp_path_factory.mktemp("trt") / "small", Profile.static(HEIGHT, WIDTH))


@pytest.fixture(scope="module")
def real_build(onnx_build, tmp_path_factory):
    """fp32 and fp16 engines with a dynamic profile from the small size up to 320x180 (optimised for 320x180)."""
    profile = Profile(min=(HEIGHT, WIDTH), opt=(REAL_HEIGHT, REAL_WIDTH), max=(REAL_HEIGHT, REAL_WIDTH))
    return _with_engines(onnx_build, tmp_path_factory.mktemp("trt") / "real", profile)


@pytest.fixture(scope="module")
def real_frames():
    return random_frames(REAL_FRAMES, REAL_HEIGHT, REAL_WIDTH, seed=11)


def _upscale_trt(build_dir: Path, frames, precision: str, steps: int, seed: int, cuda_graphs: bool = True, clips: int = 1):
    """``clips`` upscales of ``frames`` on one backend (closed after), captures required when ``cuda_graphs``."""
    from svsr.runtime.sampling import open_trt_backend

    manifest = load_manifest(build_dir)
    backend = open_trt_backend(build_dir, manifest, precision, cuda_graphs=cuda_graphs)
    sampler = Sampler(backend, manifest)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=CAPTURE_FAILED)  # a silent fallback to eager would prove nothing
            results = [sampler.upscale(frames, num_inference_steps=steps, noise=NumpyNoise(seed)) for _ in range(clips)]
        if cuda_graphs:
            report = backend.capture_report()  # what svsr-doctor checks: every program captured, none failed
            assert report["captured"] == 3 and report["failed"] == [] and backend.measured_overhead_bytes()["programs"] == 3
        return results
    finally:
        sampler.close()


def _max_error(got, want) -> float:
    assert len(got) == len(want)
    return max(float(np.abs(np.asarray(g, np.float32) - np.asarray(w, np.float32)).max()) for g, w in zip(got, want))


def _png_folder(folder: Path, frames) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{i:03d}.png")
    return folder


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_svsr_run_trt_matches_the_reference(build, tiny_reference, tmp_path, precision):
    frames = random_frames(3, HEIGHT, WIDTH, seed=6)
    source = _png_folder(tmp_path / "in", frames)
    out = tmp_path / "out"
    args = [str(source), "-o", str(out), "--model", str(build), "--backend", "trt", "--precision", precision]
    assert run_main(args + ["--noise", "torch", "--seed", "4", "--steps", "3", "--quiet"]) == 0
    got = [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]
    want = tiny_reference.upscale(frames, num_inference_steps=3, seed=4, progress=False)
    assert len(got) == 3
    for g, w in zip(got, want):
        assert g.shape == (4 * HEIGHT, 4 * WIDTH, 3)
        error = np.abs(g.astype(np.float32) / 255 - w).max()
        assert error <= TOLERANCE[precision], f"{precision} engines: max abs error {error * 255:.2f}/255"


def test_cuda_graphs_replay_bit_equal_to_eager_launches_on_a_realistic_clip(real_build, real_frames):
    """8 frames at 320x180, fp16 engines: captured frame-steps (and a second clip of replays only) against eager launches."""
    graphs = _upscale_trt(real_build, real_frames, "fp16", REAL_STEPS, seed=1, cuda_graphs=True, clips=2)
    eager = _upscale_trt(real_build, real_frames, "fp16", REAL_STEPS, seed=1, cuda_graphs=False)
    for clip in graphs:
        assert len(clip) == REAL_FRAMES and clip[0].shape == (4 * REAL_HEIGHT, 4 * REAL_WIDTH, 3)
        for a, b in zip(clip, eager[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnx_runtime_on_a_realistic_clip(real_build, real_frames, precision):
    """The same clip, noise and schedule on ONNX Runtime's float32 graphs and on TensorRT engines."""
    from svsr.runtime.sampling.ort_backend import OrtBackend

    manifest = load_manifest(real_build)
    ort = Sampler(OrtBackend(real_build, manifest, precision="fp32"), manifest)
    try:
        want = ort.upscale(real_frames, num_inference_steps=REAL_STEPS, noise=NumpyNoise(2))
    finally:
        ort.close()
    (got,) = _upscale_trt(real_build, real_frames, precision, REAL_STEPS, seed=2)
    error = _max_error(got, want)
    assert error <= TOLERANCE[precision], f"{precision} engines against ONNX Runtime: max abs error {error * 255:.2f}/255"


def test_a_closed_backend_reopens_in_the_same_process_and_frees_its_memory(real_build, real_frames):
    from svsr.device.cuda import CudaApi

    cuda = CudaApi(0)
    frames = real_frames[:3]
    (first,) = _upscale_trt(real_build, frames, "fp16", 2, seed=5)
    free_after_first, _ = cuda.mem_get_info()
    (second,) = _upscale_trt(real_build, frames, "fp16", 2, seed=5)
    free_after_second, _ = cuda.mem_get_info()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert abs(free_after_first - free_after_second) <= 64 * 2**20, "the second open-run-close cycle left device memory behind"


def test_the_memory_plan_covers_what_a_realistic_clip_takes(real_build, real_frames):
    from svsr.device.cuda import CudaApi
    from svsr.runtime.sampling import open_trt_backend

    cuda = CudaApi(0)
    manifest = load_manifest(real_build)
    backend = open_trt_backend(real_build, manifest, "fp16")
    sampler = Sampler(backend, manifest)
    try:
        free_before, _ = cuda.mem_get_info()  # engines loaded: the plan counts them as held already
        sampler.upscale(real_frames, num_inference_steps=REAL_STEPS, noise=NumpyNoise(3))
        free_after, _ = cuda.mem_get_info()
        plan = backend.last_plan
        measured = backend.measured_overhead_bytes()
        assert measured["per_context"] is not None and measured["per_program"] is not None
        assert (measured["contexts"], measured["programs"]) == (plan.contexts, plan.programs)
        used = free_before - free_after
        assert used <= plan.total_bytes, f"a 320x180 clip took {used / 2**20:.0f} MiB, more than its plan: {plan.describe()}"
        again = backend.memory_plan(manifest, REAL_HEIGHT, REAL_WIDTH)
        assert again.measured_contexts and again.measured_programs and used <= again.total_bytes
    finally:
        sampler.close()


def test_two_sizes_in_a_row_on_one_backend(real_build):
    """A size change releases the slots and the contexts and graphs bound to them; going back rebinds and recaptures."""
    from svsr.runtime.sampling import open_trt_backend

    manifest = load_manifest(real_build)
    backend = open_trt_backend(real_build, manifest, "fp32")
    sampler = Sampler(backend, manifest)
    small, large = random_frames(3, HEIGHT, WIDTH, seed=7), random_frames(2, REAL_HEIGHT, REAL_WIDTH, seed=7)
    try:
        before = sampler.upscale(small, num_inference_steps=2, noise=NumpyNoise(4))
        small_scratch = backend.scratch_bytes
        sampler.upscale(large, num_inference_steps=2, noise=NumpyNoise(4))
        after = sampler.upscale(small, num_inference_steps=2, noise=NumpyNoise(4))
        assert backend.scratch_bytes == small_scratch  # sized for the shapes in use, not the profile's largest
    finally:
        sampler.close()
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_rebuild_is_skipped_and_foreign_engines_are_refused(build):
    from svsr.contract.errors import ManifestError
    from svsr.runtime.sampling import open_trt_backend

    manifest = load_manifest(build)
    messages: list[str] = []
    again = build_engines(build, manifest, "fp32", Profile.static(HEIGHT, WIDTH), report=messages.append)
    assert again == manifest["engines"]
    assert sum("engine reused" in m for m in messages) == 4
    foreign = dict(manifest, engines={**manifest["engines"], "flow.fp32": {**manifest["engines"]["flow.fp32"], "tensorrt_version": "10.12.0.1"}})
    with pytest.raises(ManifestError, match="was built with TensorRT 10.12.0.1 .* rebuild it with: svsr-export --weights .* --precision fp32"):
        open_trt_backend(build, foreign, "fp32")


def test_gpu_tests_are_really_on_a_gpu():
    assert importlib.util.find_spec("tensorrt") is not None and _BUILD_OK
