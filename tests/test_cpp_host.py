"""The C++ host (cpp/): its goldens are current, its noise is PhiloxNoise's, and a clip upscaled through
its C ABI with an ONNX Runtime runner written in Python (ctypes callbacks) equals the Python runtime's.

Builds cpp/ with CMake (Release, into cpp/build, as `make cpp` does) on first use; skips with the reason
when cmake, a C++ compiler or nlohmann-json (Debian: nlohmann-json3-dev) is missing.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CPP = REPO / "cpp"
BUILD = CPP / "build"


def _load_make_golden():
    """cpp/tests/make_golden.py, the script that writes the C++ goldens from the Python contracts."""
    spec = importlib.util.spec_from_file_location("svsr_cpp_make_golden", CPP / "tests" / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _load_make_golden()

SVSR_OK, SVSR_ERROR_INVALID_ARGUMENT, SVSR_ERROR_MANIFEST, SVSR_ERROR_INPUT = 0, 1, 2, 3


# -- building and loading the library -----------------------------------------------------------
def _missing_toolchain() -> str | None:
    if shutil.which("cmake") is None:
        return "cmake is not installed (apt-get install cmake)"
    if shutil.which("c++") is None and shutil.which("g++") is None:
        return "no C++ compiler (apt-get install g++)"
    return None


@pytest.fixture(scope="session")
def cpp_build() -> Path:
    reason = _missing_toolchain()
    if reason:
        pytest.skip(f"C++ host not built: {reason}")
    if not (BUILD / "CMakeCache.txt").exists():
        configure = subprocess.run(
            ["cmake", "-S", str(CPP), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release"], capture_output=True, text=True
        )
        if configure.returncode != 0:
            if "nlohmann_json" in configure.stdout + configure.stderr:
                pytest.skip("C++ host not built: nlohmann-json is missing (apt-get install nlohmann-json3-dev, or `make cpp`)")
            pytest.fail(f"cmake configure failed:\n{configure.stdout}\n{configure.stderr}")
    build = subprocess.run(["cmake", "--build", str(BUILD), "-j2"], capture_output=True, text=True)
    assert build.returncode == 0, f"cmake --build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    return BUILD


# C ABI (cpp/include/svsr.h)
ALLOCATE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_int,
                            ctypes.c_int, ctypes.POINTER(ctypes.c_uint64))
COPY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t)
RUN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                       ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_uint64), ctypes.c_int,
                       ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_uint64), ctypes.c_int)
SYNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64)
LAST_ERROR = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)  # returns const char*: an address we keep alive
DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
COPY_REGION = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, *[ctypes.c_int64] * 6)
ZERO = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64)


class RunnerCallbacks(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("user", ctypes.c_void_p),
        ("allocate", ALLOCATE),
        ("upload", COPY),
        ("download", COPY),
        ("run", RUN),
        ("synchronize", SYNC),
        ("free", FREE),
        ("last_error", LAST_ERROR),
        ("destroy", DESTROY),
        ("copy_region", COPY_REGION),  # abi_version 2 (3: the same table, schema-3 graphs and svsr_set_flow_scale)
        ("zero", ZERO),
    ]


ABI_VERSION = 3


@pytest.fixture(scope="session")
def lib(cpp_build):
    lib = ctypes.CDLL(str(cpp_build / "libsvsr_host.so"))
    lib.svsr_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(RunnerCallbacks), ctypes.POINTER(ctypes.c_void_p)]
    lib.svsr_open.restype = ctypes.c_int
    for name, out in (("svsr_upscale_f32", ctypes.c_float), ("svsr_upscale_u8", ctypes.c_uint8)):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_uint64, ctypes.POINTER(out)]
        fn.restype = ctypes.c_int
    lib.svsr_close.argtypes = [ctypes.c_void_p]
    lib.svsr_close.restype = None
    lib.svsr_last_error.argtypes = [ctypes.c_void_p]
    lib.svsr_last_error.restype = ctypes.c_char_p
    lib.svsr_philox_normal.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_float), ctypes.c_uint64]
    lib.svsr_philox_normal.restype = ctypes.c_int
    lib.svsr_buffer_bytes.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
    lib.svsr_buffer_bytes.restype = ctypes.c_int
    lib.svsr_set_scheduler.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_double]
    lib.svsr_set_scheduler.restype = ctypes.c_int
    lib.svsr_set_tiles.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.svsr_set_tiles.restype = ctypes.c_int
    lib.svsr_set_flow_scale.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.svsr_set_flow_scale.restype = ctypes.c_int
    return lib


class OrtCallbackRunner:
    """A runner for the C ABI in Python: buffers are numpy arrays, graphs run in ONNX Runtime on the CPU
    (a session per graph, made when the graph first runs: a clip runs one flow graph, and the stats graphs only tiled)."""

    def __init__(self, build: Path) -> None:
        self.build = build
        self.manifest = json.loads((build / "manifest.json").read_text())
        self.sessions: dict = {}
        self.buffers: dict[int, np.ndarray] = {}
        self.labels: dict[int, str] = {}
        self.runs: list[tuple[str, dict[str, int]]] = []
        self.error = ctypes.create_string_buffer(1024)
        self.destroyed = False
        self._next = 1
        self.table = RunnerCallbacks(
            ABI_VERSION, None, ALLOCATE(self._allocate), COPY(self._upload), COPY(self._download), RUN(self._run),
            SYNC(lambda _u: 0), FREE(self._free), LAST_ERROR(lambda _u: ctypes.addressof(self.error)), DESTROY(self._destroy),
            COPY_REGION(self._copy_region), ZERO(self._zero),
        )

    def _fail(self, exc: BaseException) -> int:
        self.error.value = f"{type(exc).__name__}: {exc}".encode()[:1000]
        return 1

    def _allocate(self, _user, label, shape, ndim, dtype, out) -> int:
        try:
            assert dtype == 0
            handle = self._next
            self._next += 1
            self.buffers[handle] = np.zeros(tuple(shape[i] for i in range(ndim)), np.float32)
            self.labels[handle] = label.decode()
            out[0] = handle
            return 0
        except BaseException as exc:  # noqa: BLE001 - an exception must not cross the C ABI
            return self._fail(exc)

    def _upload(self, _user, handle, host, nbytes) -> int:
        try:
            array = self.buffers[handle]
            assert nbytes == array.nbytes, (self.labels[handle], nbytes, array.nbytes)
            ctypes.memmove(array.ctypes.data, host, nbytes)
            return 0
        except BaseException as exc:  # noqa: BLE001
            return self._fail(exc)

    def _download(self, _user, handle, host, nbytes) -> int:
        try:
            array = self.buffers[handle]
            assert nbytes == array.nbytes, (self.labels[handle], nbytes, array.nbytes)
            ctypes.memmove(host, array.ctypes.data, nbytes)
            return 0
        except BaseException as exc:  # noqa: BLE001
            return self._fail(exc)

    def _run(self, _user, graph, in_names, inputs, n_in, out_names, outputs, n_out) -> int:
        try:
            graph = graph.decode()
            feeds = {in_names[i].decode(): self.buffers[inputs[i]] for i in range(n_in)}
            targets = {out_names[i].decode(): self.buffers[outputs[i]] for i in range(n_out)}
            self.runs.append((graph, {**{k: inputs[i] for i, k in enumerate(feeds)}, **{k: outputs[i] for i, k in enumerate(targets)}}))
            names = list(targets)
            for name, value in zip(names, self.session(graph).run(names, feeds)):
                np.copyto(targets[name], value)
            return 0
        except BaseException as exc:  # noqa: BLE001
            return self._fail(exc)

    def session(self, graph: str):
        if graph not in self.sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            file = self.build / self.manifest["graphs"][graph]["file"]
            self.sessions[graph] = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        return self.sessions[graph]

    def _copy_region(self, _user, source, target, sy, sx, ty, tx, rows, cols) -> int:
        try:
            self.buffers[target][..., ty : ty + rows, tx : tx + cols] = self.buffers[source][..., sy : sy + rows, sx : sx + cols]
            return 0
        except BaseException as exc:  # noqa: BLE001
            return self._fail(exc)

    def _zero(self, _user, handle) -> int:
        try:
            self.buffers[handle].fill(0)
            return 0
        except BaseException as exc:  # noqa: BLE001
            return self._fail(exc)

    def _free(self, _user, handle) -> None:
        self.buffers.pop(handle, None)

    def _destroy(self, _user) -> None:
        self.destroyed = True


# -- fixtures ---------------------------------------------------------------------------------------
# tiny_build: the session's tiny-preset build folder (tests/conftest.py), shared with the other tests


def open_upscaler(lib, build: Path, runner: OrtCallbackRunner) -> ctypes.c_void_p:
    handle = ctypes.c_void_p()
    status = lib.svsr_open(str(build).encode(), ctypes.byref(runner.table), ctypes.byref(handle))
    assert status == SVSR_OK, lib.svsr_last_error(None).decode()
    return handle


def cpp_upscale(lib, handle, frames: list[np.ndarray], steps: int, seed: int) -> list[np.ndarray]:
    clip = np.ascontiguousarray(np.stack(frames), dtype=np.uint8)
    n, h, w, _ = clip.shape
    out = np.zeros((n, 4 * h, 4 * w, 3), np.float32)
    status = lib.svsr_upscale_f32(
        handle, clip.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), n, h, w, steps, seed,
        out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
    )
    assert status == SVSR_OK, lib.svsr_last_error(handle).decode()
    return list(out)


# -- goldens ------------------------------------------------------------------------------------------
def test_goldens_are_current(tmp_path):
    """cpp/tests/golden/* are what make_golden.py writes from today's Python contracts."""
    for fresh in make_golden.write(tmp_path):
        committed = CPP / "tests" / "golden" / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: the Python contract changed; run `.venv/bin/python cpp/tests/make_golden.py` "
            "and check the C++ side (ctest) still matches"
        )


def test_ctests_match_fresh_goldens(cpp_build, tmp_path):
    """The C++ step coefficients (float32 bit patterns), call order and tile layouts against goldens made now."""
    scheduler, calls, _, tiles = make_golden.write(tmp_path)  # memory_plan.json: ctest memory_plan
    for program, args in (("test_scheduler", [str(scheduler)]), ("test_scheduler", ["--calls", str(calls)]), ("test_tiles", [str(tiles)])):
        result = subprocess.run([str(cpp_build / program), *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 failed" in result.stdout


def test_noise_is_python_philox(lib):
    from svsr.contract.noise import PhiloxNoise

    n = 1 << 18
    out = np.zeros(n, np.float32)
    for seed, step, frame in ((0, None, 0), (1, 0, 7), (2**64 - 1, 49, 3), (123456789012345, 2, 1)):
        source = PhiloxNoise(seed)
        want = source.initial_latent(frame, (n,)) if step is None else source.step_noise(step, frame, (n,))
        draw = 0 if step is None else step + 1
        assert lib.svsr_philox_normal(seed, draw, frame, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n) == SVSR_OK
        differ = np.flatnonzero(out.view(np.uint32) != want.view(np.uint32))
        # docs/noise.md: identical bits expected; a float64 last-bit difference between math libraries
        # may, very rarely, move a float32 by one ulp
        ulps = np.abs(out.view(np.int32)[differ].astype(np.int64) - want.view(np.int32)[differ].astype(np.int64))
        assert len(differ) <= 2 and np.all(ulps <= 1), (seed, draw, frame, len(differ))


# -- end to end ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "num_frames, height, width, steps, seed, scheduler, eta",
    [(3, 34, 45, 3, 0, "ddpm", 0.0), (4, 32, 48, 2, 7, "ddpm", 0.0), (3, 32, 36, 3, 1, "ddim", 0.5), (3, 36, 32, 4, 2, "dpmpp-2m", 0.0)],
)
def test_cpp_host_equals_python_runtime(lib, tiny_build, num_frames, height, width, steps, seed, scheduler, eta):
    from svsr.contract.manifest import load_manifest
    from svsr.contract.noise import PhiloxNoise
    from svsr.runtime.sampling.ort_backend import OrtBackend
    from svsr.runtime.sampling.sampler import Sampler
    from tests.conftest import random_frames

    frames = random_frames(num_frames, height, width, seed=3)
    runner = OrtCallbackRunner(tiny_build)
    handle = open_upscaler(lib, tiny_build, runner)
    try:
        assert lib.svsr_set_scheduler(handle, scheduler.encode(), eta) == SVSR_OK, lib.svsr_last_error(handle).decode()
        got = cpp_upscale(lib, handle, frames, steps, seed)
        held = ctypes.c_uint64()
        assert lib.svsr_buffer_bytes(handle, ctypes.byref(held)) == SVSR_OK
    finally:
        lib.svsr_close(handle)
    assert runner.destroyed and not runner.buffers  # everything freed, then destroy

    manifest = load_manifest(tiny_build)
    sampler = Sampler(OrtBackend(tiny_build, manifest, device="cpu"), manifest)
    want = sampler.upscale(frames, num_inference_steps=steps, noise=PhiloxNoise(seed), scheduler=scheduler, eta=eta)
    assert len(got) == len(want) == num_frames
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape == (4 * height, 4 * width, 3)
        assert np.abs(a - b).max() <= 1e-5, (k, float(np.abs(a - b).max()))

    # the slot design: 2(n-1) flows, n*S denoise, (n-1)*S guide_decode and warp, n decode, no blend and no
    # statistics graph (untiled: every GroupNorm its own statistics); bound once per slot set
    graphs = [g for g, _ in runner.runs]
    assert graphs.count("flow") == 2 * (num_frames - 1) and graphs.count("decode") == num_frames and "blend" not in graphs
    assert "denoise_stats" not in graphs and "decode_stats" not in graphs
    assert graphs.count("denoise") == num_frames * steps
    assert graphs.count("guide_decode") == graphs.count("warp") == (num_frames - 1) * steps
    bindings = {g: {tuple(sorted(b.items())) for gg, b in runner.runs if gg == g} for g in set(graphs)}
    assert len(bindings["flow"]) == 2 and len(bindings["guide_decode"]) == 2 and len(bindings["warp"]) == 2
    assert len(bindings["decode"]) == 2 and len(bindings["denoise"]) <= 4
    # runner memory is a fixed set of slot buffers (10 per slot set + 10 shared), whatever the clip length
    assert held.value == sum(a.nbytes for a in runner_buffers_at_peak(height, width, manifest))


@pytest.mark.parametrize("scheduler", ["ddpm", "dpmpp-2m"])
def test_cpp_host_tiles_equal_python_runtime(lib, tiny_build, scheduler):
    """Tiles (svsr_set_tiles) through the callbacks' copy_region and zero: the Python runtime's tiled frames."""
    from svsr.contract.manifest import load_manifest
    from svsr.contract.noise import PhiloxNoise
    from svsr.runtime.sampling.ort_backend import OrtBackend
    from svsr.runtime.sampling.sampler import Sampler
    from tests.conftest import random_frames

    num_frames, height, width, steps, seed, tile, overlap = 2, 40, 52, 2, 4, (32, 32), 8
    frames = random_frames(num_frames, height, width, seed=5)
    runner = OrtCallbackRunner(tiny_build)
    handle = open_upscaler(lib, tiny_build, runner)
    try:
        assert lib.svsr_set_scheduler(handle, scheduler.encode(), 0.0) == SVSR_OK
        assert lib.svsr_set_tiles(handle, *tile, overlap) == SVSR_OK, lib.svsr_last_error(handle).decode()
        got = cpp_upscale(lib, handle, frames, steps, seed)
    finally:
        lib.svsr_close(handle)
    graphs = [g for g, _ in runner.runs]
    tiles = 4  # 32x32 tiles over 40x52, overlap 8: rows at 0 and 8, columns at 0 and 20
    assert graphs.count("denoise") == num_frames * steps * tiles and graphs.count("decode") == num_frames * tiles
    assert graphs.count("warp") == (num_frames - 1) * steps and graphs.count("blend") > 0
    # the whole frame's GroupNorm statistics: once per frame-step (denoise), per guided frame-step and per final decode (VAE)
    assert graphs.count("denoise_stats") == num_frames * steps
    assert graphs.count("decode_stats") == (num_frames - 1) * steps + num_frames

    manifest = load_manifest(tiny_build)
    sampler = Sampler(OrtBackend(tiny_build, manifest, device="cpu"), manifest)
    want = sampler.upscale(frames, num_inference_steps=steps, noise=PhiloxNoise(seed), scheduler=scheduler, tile=tile, tile_overlap=overlap)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape == (4 * height, 4 * width, 3)
        assert np.abs(a - b).max() <= 1e-5, (k, float(np.abs(a - b).max()))


def runner_buffers_at_peak(height: int, width: int, manifest: dict) -> list[np.ndarray]:
    """The 30 slot buffers for one padded LR size."""
    from svsr.contract.manifest import stats_sizes

    h, w = -(-height // 4) * 4, -(-width // 4) * 4
    stats = stats_sizes(manifest)
    # z_in, lr, lr_prev, flow, noise, guidance, z_out, x0, x0_history, rgb
    per_set = [(1, 4, h, w), (1, 3, h, w), (1, 3, h, w), (1, 2, 4 * h, 4 * w), (1, 4, h, w), (1, 3, 4 * h, 4 * w),
               (1, 4, h, w), (1, 4, h, w), (1, 4, h, w), (1, 3, 4 * h, 4 * w)]
    # image, zero_guidance, zero_latent, tcm_on, tcm_off, timestep, step_coeffs, shared_norm, denoise_norm, decode_norm
    shared = [(1, 3, 4 * h, 4 * w), (1, 3, 4 * h, 4 * w), (1, 4, h, w), (1,), (1,), (1,), (8,), (1,),
              (1, stats["denoise_stats"]), (1, stats["decode_stats"])]
    return [np.empty(s, np.float32) for s in per_set * 2 + shared]


def test_cpp_host_flow_scale_equals_python_runtime(lib, tiny_build):
    """svsr_set_flow_scale(2) runs flow_x2 and gives the Python runtime's frames at flow_scale=2; frames too small for
    RAFT at a scale get sizes.flow_scale_problem's sentence, word for word."""
    from svsr.contract.manifest import load_manifest
    from svsr.contract.noise import PhiloxNoise
    from svsr.contract.sizes import flow_scale_problem
    from svsr.runtime.sampling.ort_backend import OrtBackend
    from svsr.runtime.sampling.sampler import Sampler
    from tests.conftest import random_frames

    num_frames, height, width, steps, seed = 2, 64, 68, 2, 6
    frames = random_frames(num_frames, height, width, seed=8)
    runner = OrtCallbackRunner(tiny_build)
    handle = open_upscaler(lib, tiny_build, runner)
    try:
        assert lib.svsr_set_flow_scale(handle, 2) == SVSR_OK, lib.svsr_last_error(handle).decode()
        got = cpp_upscale(lib, handle, frames, steps, seed)
        small = np.zeros((1, 40, 72, 3), np.uint8)
        out = np.zeros((1, 160, 288, 3), np.float32)
        status = lib.svsr_upscale_f32(handle, small.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), 1, 40, 72, 2, 0,
                                      out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert status == SVSR_ERROR_INPUT
        assert lib.svsr_last_error(handle).decode() == flow_scale_problem(2, 40, 72)
        assert lib.svsr_set_flow_scale(handle, 3) == SVSR_ERROR_INVALID_ARGUMENT
    finally:
        lib.svsr_close(handle)
    graphs = [g for g, _ in runner.runs]
    assert graphs.count("flow_x2") == 2 * (num_frames - 1) and "flow" not in graphs and "flow_x1" not in graphs

    manifest = load_manifest(tiny_build)
    sampler = Sampler(OrtBackend(tiny_build, manifest, device="cpu"), manifest)
    want = sampler.upscale(frames, num_inference_steps=steps, noise=PhiloxNoise(seed), flow_scale=2)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape == (4 * height, 4 * width, 3)
        assert np.abs(a - b).max() <= 1e-5, (k, float(np.abs(a - b).max()))


def test_refusals_through_the_c_abi(lib, tiny_build, tmp_path):
    runner = OrtCallbackRunner(tiny_build)
    handle = open_upscaler(lib, tiny_build, runner)
    try:
        tiny = np.zeros((1, 31, 40, 3), np.uint8)
        out = np.zeros((1, 124, 160, 3), np.float32)
        status = lib.svsr_upscale_f32(handle, tiny.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), 1, 31, 40, 2, 0,
                                      out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert status == SVSR_ERROR_INPUT
        assert "40x31 px are too small" in lib.svsr_last_error(handle).decode()
    finally:
        lib.svsr_close(handle)

    copy = tmp_path / "build"
    shutil.copytree(tiny_build, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 2  # a build of the svsr before flow scales and shared statistics
    (copy / "manifest.json").write_text(json.dumps(manifest))
    bad = ctypes.c_void_p()
    assert lib.svsr_open(str(copy).encode(), ctypes.byref(runner.table), ctypes.byref(bad)) == SVSR_ERROR_MANIFEST
    # the sentence of the Python contract, word for word (it names the re-export command)
    from svsr.contract.manifest import older_schema_problem

    assert lib.svsr_last_error(None).decode() == older_schema_problem(manifest, str(copy / "manifest.json"))

    # schedules: an unknown name and an eta outside [0, 1] are one sentence each
    handle = open_upscaler(lib, tiny_build, runner)
    try:
        assert lib.svsr_set_scheduler(handle, b"euler", 0.0) == SVSR_ERROR_INVALID_ARGUMENT
        assert "scheduler 'euler' is not one of ddpm, ddim, dpmpp-2m" in lib.svsr_last_error(handle).decode()
        assert lib.svsr_set_scheduler(handle, b"ddim", 1.5) == SVSR_ERROR_INVALID_ARGUMENT
        assert "eta 1.5 is outside [0, 1]" in lib.svsr_last_error(handle).decode()
        assert lib.svsr_set_scheduler(handle, None, 0.0) == SVSR_OK
    finally:
        lib.svsr_close(handle)


# issue 21: a manifest is data from elsewhere; the C++ reader bounds its numbers as MANIFEST_SCHEMA does, in the same sentence
BOUND_VIOLATIONS = {
    "max_side": lambda m: m["graphs"]["flow"]["flops"].__setitem__("lr_height", 16385),
    "max_dim": lambda m: m["graphs"]["denoise"]["inputs"][0]["shape"].__setitem__(1, 2**21),
    "max_bytes": lambda m: m["graphs"]["decode"].__setitem__("size_bytes", 2**51),
    "max_flops": lambda m: m["graphs"]["decode"]["flops"].__setitem__("linear", 2.5e21),
    "alphas_zero": lambda m: m["scheduler"]["alphas_cumprod"].__setitem__(3, 0.0),
    "alphas_above_one": lambda m: m["scheduler"]["alphas_cumprod"].__setitem__(0, 1.5),
    "stats_stride": lambda m: m["norm_stats"]["decode_stats"].__setitem__("stride", 3),
    "no_norm_stats": lambda m: m.pop("norm_stats"),
    "vae_scaling": lambda m: m.__setitem__("vae_scaling_factor", 2e6),
}


@pytest.mark.parametrize("violation", [*BOUND_VIOLATIONS, "nan", "overflow"])
def test_manifest_bounds_are_pythons_sentences(lib, tiny_build, tmp_path, violation):
    from svsr.contract.manifest import parse_manifest_text, validate_manifest
    from svsr.contract.errors import ManifestError

    text = (tiny_build / "manifest.json").read_text()
    if violation == "nan":  # not JSON, but Python's json reads it: the field is named
        text = text.replace('"vae_scaling_factor": ', '"vae_scaling_factor": NaN, "was": ', 1)
    elif violation == "overflow":  # beyond a double: infinity in Python
        text = text.replace('"alphas_cumprod": [', '"alphas_cumprod": [1e400, ', 1)
    else:
        manifest = json.loads(text)
        BOUND_VIOLATIONS[violation](manifest)
        text = json.dumps(manifest)
    assert text != (tiny_build / "manifest.json").read_text()
    (tmp_path / "manifest.json").write_text(text)
    where = str(tmp_path / "manifest.json")
    with pytest.raises(ManifestError) as python:
        validate_manifest(parse_manifest_text(text, where), where)
    runner = OrtCallbackRunner(tiny_build)
    handle = ctypes.c_void_p()
    assert lib.svsr_open(str(tmp_path).encode(), ctypes.byref(runner.table), ctypes.byref(handle)) == SVSR_ERROR_MANIFEST
    assert lib.svsr_last_error(None).decode() == str(python.value)


def test_svsr_host_dry_run(cpp_build, tiny_build):
    result = subprocess.run([str(cpp_build / "svsr-host"), "--model", str(tiny_build), "--size", "45x34", "--steps", "3", "--dry-run"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if "built without TensorRT" in result.stderr:
        assert result.returncode == 0, result.stderr
        assert "is a valid build folder for 45x34 frames" in result.stderr
        # what it would run: the tile layout and the flow graph (issue 19)
        assert "it would run whole frames (one tile of 36x48 LR pixels, height x width); flow graph flow (RAFT at x4)." in result.stderr
        tiled = subprocess.run([str(cpp_build / "svsr-host"), "--model", str(tiny_build), "--size", "80x72", "--tile", "32x48",
                                "--tile-overlap", "8", "--flow-scale", "2", "--dry-run"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert tiled.returncode == 0, tiled.stderr
        assert "it would run 6 tiles of 32x48 LR pixels (height x width), overlap 8; flow graph flow_x2 (RAFT at x2)." in tiled.stderr
        auto = subprocess.run([str(cpp_build / "svsr-host"), "--model", str(tiny_build), "--size", "80x72", "--tile", "auto", "--dry-run"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert auto.returncode == 0 and "--tile auto: whole frames (the engines record no tile" in auto.stderr, auto.stderr
    else:  # a TensorRT build: this build folder has no engines, so it names the command that builds them
        assert result.returncode != 0 and "svsr-export" in result.stderr
    small = subprocess.run([str(cpp_build / "svsr-host"), "--model", str(tiny_build), "--size", "31x40", "--dry-run"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert small.returncode == 2 and "too small" in small.stderr
