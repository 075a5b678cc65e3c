"""TensorRT on a real GPU: tiny engines built here, `svsr-run --backend trt` against the reference.

Marked `trt`; the whole module skips, with the reason, where TensorRT, an NVIDIA GPU or the export
extra (PyTorch + diffusers, for the reference) is missing. Tolerances (max abs error on [0, 1]
frames): fp32 engines 2/255, fp16 engines 8/255.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.trt

pytest.importorskip("tensorrt", reason="TensorRT is not installed (svsr[tensorrt], from NVIDIA's index); TensorRT tests need it and a GPU")
pytest.importorskip("cuda.bindings", reason="cuda-python is not installed (svsr[tensorrt])")
pytest.importorskip("diffusers", reason="the reference needs the export extra (PyTorch + diffusers)")

from svsr.engines.builder import build_engines, tensorrt_build_available  # noqa: E402
from svsr.contract.profiles import Profile  # noqa: E402

_BUILD_OK, _BUILD_WHY = tensorrt_build_available()
pytestmark = [pytest.mark.trt, pytest.mark.skipif(not _BUILD_OK, reason=f"cannot build TensorRT engines here: {_BUILD_WHY}")]

from PIL import Image  # noqa: E402

from svsr.cli import export_main, run_main  # noqa: E402
from svsr.contract.manifest import load_manifest, sha256_file, write_manifest  # noqa: E402
from svsr.contract.noise import NumpyNoise  # noqa: E402
from tests.conftest import random_frames  # noqa: E402

HEIGHT, WIDTH = 36, 44  # LR size of the test clips; engines are built static for it
TOLERANCE = {"fp32": 2 / 255, "fp16": 8 / 255}


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
def build(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("trt") / "build"
    assert export_main(["--weights", str(tiny_checkpoint), "--out", str(out), "--quiet", "--onnx-only"]) == 0
    manifest = load_manifest(out)
    _typed_fp16(out, manifest)
    profile = Profile.static(HEIGHT, WIDTH)
    for precision in ("fp32", "fp16"):
        manifest["engines"] = build_engines(out, manifest, precision, profile, report=lambda _m: None)
    write_manifest(out, manifest)
    return out


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


def test_cuda_graph_replay_equals_eager_launches(build):
    from svsr.runtime.trt_backend import TrtSampler, open_trt_backend

    manifest = load_manifest(build)
    frames = random_frames(3, HEIGHT, WIDTH, seed=2)
    results = []
    for graphs in (True, False):
        backend = open_trt_backend(build, manifest, "fp32", cuda_graphs=graphs)
        try:
            sampler = TrtSampler(backend, manifest)
            results.append(sampler.upscale(frames, num_inference_steps=4, noise=NumpyNoise(1)))
            results.append(sampler.upscale(frames, num_inference_steps=4, noise=NumpyNoise(1)))  # second clip: replays only
        finally:
            backend.close()
    for a, b in zip(results[0] + results[1], results[2] + results[3]):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_rebuild_is_skipped_and_foreign_engines_are_refused(build):
    from svsr.contract.errors import ManifestError
    from svsr.runtime.trt_backend import open_trt_backend

    manifest = load_manifest(build)
    messages: list[str] = []
    again = build_engines(build, manifest, "fp32", Profile.static(HEIGHT, WIDTH), report=messages.append)
    assert again == manifest["engines"]
    assert sum("engine reused" in m for m in messages) == 4
    foreign = dict(manifest, engines={**manifest["engines"], "flow.fp32": {**manifest["engines"]["flow.fp32"], "tensorrt_version": "10.12.0.1"}})
    with pytest.raises(ManifestError, match="was built with TensorRT 10.12.0.1 .* rebuild it with: svsr-export --weights .* --precision fp32"):
        open_trt_backend(build, foreign, "fp32")


def test_a_clip_that_cannot_fit_names_the_largest_chunk(build):
    from svsr.runtime.memory_plan import DeviceMemoryError
    from svsr.runtime.trt_backend import open_trt_backend

    manifest = load_manifest(build)
    backend = open_trt_backend(build, manifest, "fp32")
    try:
        with pytest.raises(DeviceMemoryError, match=r"use --chunk \d+ or fewer frames per chunk"):
            backend.prepare_clip(manifest, 10**7, HEIGHT, WIDTH)
    finally:
        backend.close()


def test_gpu_tests_are_really_on_a_gpu():
    assert importlib.util.find_spec("tensorrt") is not None and _BUILD_OK
