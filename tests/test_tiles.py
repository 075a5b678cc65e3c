"""Tiles in the latent plane: the contract's layouts and weights, the sampler's tiled frame-steps and decodes, per-frame history."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from types import SimpleNamespace

from svsr.contract.errors import InputError
from svsr.contract.manifest import load_manifest
from svsr.contract.noise import NumpyNoise, PhiloxNoise
from svsr.contract.scheduler import needs_history
from svsr.contract.sizes import padding_plan
from svsr.contract.tiles import AUTO, DEFAULT_OVERLAP, MIN_TILE, OFF, overlap_problem, parse_tile, plan_tiles
from svsr.contract.video_options import VideoOptions
from svsr.runtime.jobs.tiling import FLOW_SCALE_OPTION, choose_tiles, recorded_flow_scale
from svsr.runtime.sampling.memory_plan import GIB
from svsr.runtime.sampling import ClipStore
from svsr.runtime.sampling.ort_backend import OrtBackend
from svsr.runtime.sampling.sampler import Sampler
from tests.conftest import random_frames
from tests.support.trt import NumpyKernelsBackendDouble, synthetic_manifest


# -- the contract: where tiles sit and how they blend -------------------------------------------------
@pytest.mark.parametrize("height, width, tile, overlap", [(40, 52, (32, 32), 8), (180, 320, (64, 96), 16), (36, 100, (32, 48), 12)])
def test_tiles_have_one_shape_stay_inside_and_cover_the_frame(height, width, tile, overlap):
    layout = plan_tiles(height, width, tile, overlap)
    covered = np.zeros((height, width), bool)
    for t in layout.tiles:
        assert (t.height, t.width) == tile
        assert 0 <= t.top and t.top + t.height <= height and 0 <= t.left and t.left + t.width <= width
        covered[t.top : t.top + t.height, t.left : t.left + t.width] = True
    assert covered.all() and not layout.single
    for scale in (1, 4):
        total = np.zeros((height * scale, width * scale), np.float64)
        for t, w in zip(layout.tiles, layout.weights(scale)):
            s = t.scaled(scale)
            assert w.shape == (1, 1, s.height, s.width) and w.dtype == np.float32 and (w > 0).all()
            total[s.top : s.top + s.height, s.left : s.left + s.width] += w[0, 0]
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_a_tile_covering_the_frame_is_one_tile_and_none_is_untiled():
    assert plan_tiles(40, 52, (64, 64), 8).single
    assert plan_tiles(40, 52, None).single
    whole = plan_tiles(40, 52, None).tiles[0]
    assert (whole.top, whole.left, whole.height, whole.width) == (0, 0, 40, 52)
    edge = plan_tiles(40, 100, (40, 32), 8)  # one row; the last column shifted back inside, not padded
    assert [t.left for t in edge.tiles] == [0, 24, 48, 68] and len({t.top for t in edge.tiles}) == 1


@pytest.mark.parametrize(
    "value, words",
    [("8x8", f"smallest tile of {MIN_TILE}x{MIN_TILE}"), ((30, 64), "smallest tile"), ("34x64", "use 36 instead of 34"),
     ("big", "not a tile size"), (1.5, "not a tile size"), ((True, 32), "not a tile size")],
)  # fmt: skip
def test_bad_tile_values_are_one_sentence(value, words):
    with pytest.raises(InputError, match=words) as caught:
        parse_tile(value)
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")


def test_tile_spellings_and_overlap_rules():
    assert parse_tile("64x96") == (64, 96) and parse_tile("64") == (64, 64) and parse_tile((32, 48)) == (32, 48)
    assert parse_tile("AUTO") == "auto" and parse_tile("off") == "off"
    assert overlap_problem((64, 64), DEFAULT_OVERLAP) is None
    assert "less than 32" in overlap_problem((64, 96), 32)
    assert ">= 0" in overlap_problem((64, 64), -1)


# -- a stand-in for the graphs: tiled equals untiled up to float rounding ------------------------------
class KernelsRecordingDouble(NumpyKernelsBackendDouble):
    """Test double backend: tests/support/trt.py's numpy kernels, recording every run, program and late allocation.

    Not StableVSR: each output position depends on the same position of the inputs and on GroupNorm-like
    means of the whole input (or of the statistics given with shared_norm 1), so tiles fed the whole
    frame's statistics see exactly what the whole frame sees, and tiled results must equal untiled ones
    up to the rounding of the blend (weights that sum to one).
    """

    name = "kernels-recording-double"

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.programs: set[str] = set()
        self.allocations_after_first_run = 0
        self.stats_inputs: list[tuple[float, bool]] = []  # per denoise_stats run: (tcm_scale, whether its guidance is all zeros)

    def allocate(self, label, shape, dtype="float32", host_io=True):
        self.allocations_after_first_run += bool(self.runs)
        return super().allocate(label, shape, dtype, host_io)

    def launch(self, key, enqueue):
        self.programs.add(key)
        enqueue()

    def run(self, graph, inputs, outputs):
        self.runs.append(graph)
        if graph == "denoise_stats":
            self.stats_inputs.append((float(inputs["tcm_scale"][0]), not inputs["guidance"].any()))
        super().run(graph, inputs, outputs)


@pytest.fixture(scope="module")
def double_manifest():
    return synthetic_manifest()


@pytest.mark.parametrize("scheduler", ["ddpm", "dpmpp-2m"])
def test_tiled_with_shared_statistics_equals_untiled(double_manifest, scheduler, tmp_path):
    frames = random_frames(3, 37, 50, seed=1)  # padded to 40x52: 2x2 tiles of 32x32 with overlap 8
    whole_backend, tiled_backend = KernelsRecordingDouble(), KernelsRecordingDouble()
    whole = Sampler(whole_backend, double_manifest).upscale(frames, 3, noise=NumpyNoise(1), scheduler=scheduler, work_dir=tmp_path)
    tiled = Sampler(tiled_backend, double_manifest).upscale(frames, 3, noise=NumpyNoise(1), scheduler=scheduler, work_dir=tmp_path,
                                                            tile=(32, 32), tile_overlap=8)  # fmt: skip
    assert [f.shape for f in tiled] == [(148, 200, 3)] * 3
    worst = max(float(np.abs(a - b).max()) for a, b in zip(whole, tiled))
    assert worst < 2e-5, worst
    assert max(float(np.abs(a - 0.5).max()) for a in whole) > 0.1  # the frames carry signal, not a constant
    # 4 tiles: denoise per tile per frame-step, guide_decode per tile where TCM guides, decode per tile; warp whole
    assert tiled_backend.runs.count("denoise") == 4 * whole_backend.runs.count("denoise") == 4 * 9
    assert tiled_backend.runs.count("guide_decode") == 4 * whole_backend.runs.count("guide_decode") == 4 * 6
    assert tiled_backend.runs.count("warp") == whole_backend.runs.count("warp") == 6
    assert tiled_backend.runs.count("decode") == 4 * 3 and "blend" not in whole_backend.runs
    # the statistics: once per frame-step (denoise) and per guide and final decode (VAE), on the whole frame; none untiled
    assert tiled_backend.runs.count("denoise_stats") == 9 and tiled_backend.runs.count("decode_stats") == 6 + 3
    assert not {"denoise_stats", "decode_stats"} & set(whole_backend.runs)
    # a sweep's first frame: no TCM and zero guidance, for the statistics as for its tiles
    assert tiled_backend.stats_inputs == [(0.0, True), (1.0, False), (1.0, False)] * 3
    assert tiled_backend.allocations_after_first_run == 0
    # fixed programs: per slot set and TCM use (and the two tiled decodes), whatever the frames or steps
    hist, tiles = "-hist" if needs_history(scheduler) else "", "-tiles40x52/32x32o8"
    want = {f"step0-first{hist}{tiles}", f"step1-tcm{hist}{tiles}", f"step0-tcm{hist}{tiles}", f"decode0{tiles}", f"decode1{tiles}"}
    assert tiled_backend.programs == want
    assert whole_backend.programs == {f"step0-first{hist}", f"step1-tcm{hist}", f"step0-tcm{hist}"}


def test_tiles_on_their_own_statistics_differ_from_whole_frames(double_manifest, tmp_path, monkeypatch):
    """The same run with shared_norm 0 in the tiles (each GroupNorm its tile's statistics) is what the statistics graphs fix."""
    import svsr.runtime.sampling.sampler as sampler_module
    from svsr.runtime.sampling.frame_step import allocate_slots

    frames = random_frames(3, 37, 50, seed=1)
    whole = Sampler(NumpyKernelsBackendDouble(), double_manifest).upscale(frames, 3, noise=NumpyNoise(1), work_dir=tmp_path)

    def own_statistics(backend, *args, **kwargs):
        slots = allocate_slots(backend, *args, **kwargs)
        backend.upload(slots.shared_norm, np.zeros(1, np.float32))
        return slots

    monkeypatch.setattr(sampler_module, "allocate_slots", own_statistics)
    tiled = Sampler(NumpyKernelsBackendDouble(), double_manifest).upscale(frames, 3, noise=NumpyNoise(1), work_dir=tmp_path, tile=(32, 32),
                                                                          tile_overlap=8)  # fmt: skip
    assert max(float(np.abs(a - b).max()) for a, b in zip(whole, tiled)) > 1e-3


def test_a_flow_scale_runs_its_flow_graph_and_refuses_frames_too_small_for_it(double_manifest, tmp_path):
    frames = random_frames(3, 64, 72, seed=2)
    runs = {}
    for scale in (4, 2, 1):
        backend = KernelsRecordingDouble()
        if scale == 1:
            with pytest.raises(InputError) as refused:
                Sampler(backend, double_manifest).upscale(frames, 2, noise=NumpyNoise(1), work_dir=tmp_path, flow_scale=scale)
            assert str(refused.value) == ("--flow-scale 1 needs frames of at least 128 px per side (RAFT sees them at x1), "
                                          "but these are 72x64; use --flow-scale 4.")  # fmt: skip
            assert not backend.runs
            continue
        runs[scale] = Sampler(backend, double_manifest).upscale(frames, 2, noise=NumpyNoise(1), work_dir=tmp_path, flow_scale=scale)
        flows = {"flow", "flow_x2", "flow_x1"} & set(backend.runs)
        assert flows == {"flow" if scale == 4 else "flow_x2"} and backend.runs.count(flows.pop()) == 2 * 2  # both directions per pair
    assert max(float(np.abs(a - b).max()) for a, b in zip(runs[4], runs[2])) > 1e-3  # another flow, another guidance


def test_flows_recomputed_per_frame_step_name_their_flow_graph_in_the_program_key(double_manifest, tmp_path):
    from svsr.runtime.sampling import ClipStore, StoreLayout

    frames = random_frames(3, 64, 72, seed=3)
    plan = padding_plan(64, 72)
    backend = KernelsRecordingDouble()
    sampler = Sampler(backend, double_manifest)
    store = ClipStore(StoreLayout(3, plan.padded_height, plan.padded_width), tmp_path, 1 << 30, store_flows=False)
    try:
        slots = sampler.slots(plan.padded_height, plan.padded_width, flow_scale=2)
        sampler.load_frames(store, frames, plan)
        sampler.compute_flows(store, slots)
        sampler.initial_latents(store, NumpyNoise(0))
        sampler.run_step(store, slots, sampler.steps(1)[0], NumpyNoise(0))
    finally:
        store.close()
    assert backend.programs == {"step0-first", "step1-tcm-flow_x2", "step0-tcm-flow_x2"}
    assert backend.runs.count("flow_x2") == 2 and "flow" not in backend.runs


# -- which tiles and flow scale a frame size runs with (svsr/runtime/jobs/tiling.py) ----------------------
class GpuBackendDouble:
    """Test double of a TensorRT backend as the tile choice sees it: a name, its precision, free memory, the engines it holds."""

    name, precision, cuda_graphs = "trt", "fp16", True
    loaded_graphs = ("flow", "denoise", "guide_decode", "warp", "decode", "blend")

    def __init__(self, free: int) -> None:
        self.cuda = SimpleNamespace(mem_get_info=lambda: (free, 80 * GIB))

    def held_device_bytes(self) -> int:
        return 0


def _planned_sampler(free: int) -> SimpleNamespace:
    from tests.test_memory_plan import FULL  # the full preset's FLOPs fit and sizes

    return SimpleNamespace(backend=GpuBackendDouble(free), manifest=FULL)


def test_an_explicit_flow_scale_is_kept_and_said_and_one_the_frames_are_too_small_for_is_refused():
    sampler = _planned_sampler(75 * GIB)
    kept = choose_tiles(sampler, OFF, 16, 180, 320, flow_scale=2, spell=VideoOptions.cli_spelling)
    assert (kept.flow_scale, kept.tile, kept.flow_sentence) == (2, None, "flow scale: 2 (as asked (--flow-scale 2))")
    assert choose_tiles(sampler, OFF, 16, 180, 320, flow_scale=4).flow_sentence is None  # the paper's scale: nothing to say
    with pytest.raises(InputError) as refused:
        choose_tiles(sampler, OFF, 16, 100, 320, flow_scale=1)  # RAFT would see 100 px at x1
    assert str(refused.value) == "flow_scale=1 needs frames of at least 128 px per side (RAFT sees them at x1), but these are 320x100; use flow_scale=4."
    with pytest.raises(InputError, match=r"^flow_scale=3 is not a flow scale; use 4 \(the original\), 2, 1 or auto\.$"):
        choose_tiles(sampler, OFF, 16, 180, 320, flow_scale=3)


def test_auto_flow_scale_keeps_4_where_it_fits_and_else_says_which_scale_and_why():
    small = choose_tiles(_planned_sampler(75 * GIB), AUTO, 16, 180, 320, flow_scale=AUTO, spell=VideoOptions.cli_spelling)
    assert small.flow_scale == 4 and small.flow_sentence is None and small.tile is None
    big = choose_tiles(_planned_sampler(75 * GIB), AUTO, 16, 540, 960, flow_scale=AUTO, spell=VideoOptions.cli_spelling)
    assert big.flow_scale in (2, 1) and big.tiled and big.sentence.startswith("tiles: tiles of ")
    assert big.flow_sentence.startswith(f"flow scale: {big.flow_scale} (--flow-scale auto: at flow scale 4 the frame needs ")
    assert "RAFT on the whole x4 frame alone" in big.flow_sentence and "\n" not in big.flow_sentence
    # a given tile: the scale for that tile; the tile stays as asked
    given = choose_tiles(_planned_sampler(18 * GIB), (128, 128), 16, 360, 640, flow_scale=AUTO, spell=VideoOptions.cli_spelling)
    assert given.tile == (128, 128) and given.flow_scale < 4 and "in tiles of 128x128" in given.flow_sentence
    assert given.sentence.endswith("(as asked (--tile 128x128))")


def test_a_resumed_auto_run_keeps_its_recorded_flow_scale_and_tile():
    assert recorded_flow_scale({FLOW_SCALE_OPTION: 2}) == 2 and recorded_flow_scale({FLOW_SCALE_OPTION: "1"}) == 1
    assert recorded_flow_scale({FLOW_SCALE_OPTION: "auto"}) is None and recorded_flow_scale({}) is None and recorded_flow_scale({FLOW_SCALE_OPTION: 3}) is None
    sampler = _planned_sampler(75 * GIB)  # memory would give 4 untiled now
    kept = choose_tiles(sampler, AUTO, 16, 180, 320, flow_scale=AUTO, recorded=(64, 64), recorded_flow=2)
    assert (kept.tile, kept.flow_scale) == ((64, 64), 2)
    assert kept.flow_sentence == "flow scale: 2 (as the interrupted run chose)" and kept.sentence.endswith("(as the interrupted run chose)")
    asked = choose_tiles(sampler, AUTO, 16, 180, 320, flow_scale=4, recorded_flow=2)  # a scale given now is the job's (a new job)
    assert asked.flow_scale == 4


def test_engines_built_for_one_tile_run_that_tile_and_refuse_another_naming_it(tmp_path):
    from svsr.contract.profiles import Profile
    from svsr.runtime.sampling.trt_backend import open_trt_backend
    from tests.support.trt import RecordingTrtCudaDouble, write_engines

    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path), profile=Profile.static(64, 72, tile=(32, 40)))
    double = RecordingTrtCudaDouble()
    backend = open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    double.eager = {backend.stream}
    sampler = Sampler(backend, manifest)
    try:
        chosen = choose_tiles(sampler, AUTO, 8, 64, 72, flow_scale=AUTO, spell=VideoOptions.cli_spelling)
        assert chosen.tile == (32, 40) and chosen.flow_scale == 4
        assert chosen.sentence.endswith("(the tile the TensorRT engines were built for (--tile auto))")
        with pytest.raises(InputError) as refused:
            choose_tiles(sampler, (32, 32), 8, 64, 72, spell=VideoOptions.cli_spelling)
        assert "were built for 32x40 tiles only" in str(refused.value) and "--tile 32x32" in str(refused.value)
        with pytest.raises(InputError, match="built for 32x40 tiles only"):  # the backend refuses whole frames on its own too
            sampler.slots(64, 72)
        frames = random_frames(2, 64, 72, seed=3)
        got = sampler.upscale(frames, 2, noise=NumpyNoise(1), tile=chosen.tile, tile_overlap=8)
        want = Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, 2, noise=NumpyNoise(1), tile=(32, 40), tile_overlap=8)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    finally:
        sampler.close()


# -- the real tiny build on ONNX Runtime -----------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest(tiny_build):
    return load_manifest(tiny_build)


@pytest.fixture(scope="module")
def ort_sampler(tiny_build, manifest):
    sampler = Sampler(OrtBackend(tiny_build, manifest, device="cpu"), manifest)
    yield sampler
    sampler.close()


def test_ort_copy_region_and_zero_move_windows_of_every_plane(ort_sampler):
    b = ort_sampler.backend
    source = b.allocate("source", (1, 2, 6, 7))
    target = b.allocate("target", (1, 2, 4, 4))
    values = np.arange(84, dtype=np.float32).reshape(1, 2, 6, 7)
    b.upload(source, values)
    b.copy_region(source, target, (2, 3), (1, 0), (3, 4))
    want = np.zeros((1, 2, 4, 4), np.float32)
    want[..., 1:4, 0:4] = values[..., 2:5, 3:7]
    assert np.array_equal(b.download(target), want)
    b.zero(source)
    assert not b.download(source).any() and np.array_equal(b.download(target), want)


def test_a_tile_covering_the_frame_gives_exactly_the_untiled_frames(ort_sampler):
    frames = random_frames(2, 36, 44, seed=2)
    untiled = ort_sampler.upscale(frames, 2, noise=PhiloxNoise(3))
    covering = ort_sampler.upscale(frames, 2, noise=PhiloxNoise(3), tile=(36, 44))
    bigger = ort_sampler.upscale(frames, 2, noise=PhiloxNoise(3), tile="64x64", tile_overlap=8)
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(untiled, covering, bigger))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_tiles_fed_the_whole_frames_statistics_reproduce_the_whole_frame_on_those_statistics(ort_sampler):
    """The real decode graphs: a tiled decode (decode_stats, then tiles with shared_norm 1) against the whole frame decoded
    with the same statistics, and tiles on their own statistics against the whole frame on its own.

    Measured on a smooth 96x96 latent, 64x64 tiles, when the statistics graphs still averaged the frame (pooled x4):
    tiny build 48.0 dB with shared statistics against 30.6 dB on each tile's own (demo build: 52.9 against 33.8); what
    was left between the tiled decode and the untiled one was the statistics' own error (the whole frame decoded with
    them gave the same PSNR). The assertions hold for any statistics the graph gives.
    """
    from svsr.runtime.sampling.frame_step import enqueue_decode

    sampler, b = ort_sampler, ort_sampler.backend
    coarse = np.random.default_rng(0).standard_normal((1, 4, 12, 12)).astype(np.float32)
    latent = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)
    for axis in (2, 3):  # a smooth latent, like a decoded video's (white noise would make pooled statistics meaningless)
        for _ in range(3):
            latent = (np.roll(latent, 2, axis) + latent + np.roll(latent, -2, axis)) / np.float32(3)
    whole = sampler.slots(96, 96)
    b.upload(whole.decode_z[0], latent)
    enqueue_decode(b, whole, 0)
    own = b.download(whole.rgb[0])
    b.run("decode_stats", {"latent": whole.decode_z[0]}, {"norm_stats": whole.decode_norm})
    shared, given = b.allocate("test_shared", (1,)), b.allocate("test_rgb", whole.rgb[0].shape())
    b.upload(shared, np.ones(1, np.float32))
    b.run("decode", {"z": whole.decode_z[0], "norm_stats": whole.decode_norm, "shared_norm": shared}, {"rgb": given})
    on_given = b.download(given)
    tiled = sampler.slots(96, 96, sampler.tile_layout(96, 96, (64, 64), 16))
    b.upload(tiled.decode_z[0], latent)
    enqueue_decode(b, tiled, 0)
    with_stats = b.download(tiled.rgb[0])
    b.upload(tiled.shared_norm, np.zeros(1, np.float32))  # the tiles on their own statistics, as before schema 3
    enqueue_decode(b, tiled, 0)
    on_own = b.download(tiled.rgb[0])
    b.upload(tiled.shared_norm, np.ones(1, np.float32))
    agree, apart = _psnr(with_stats, on_given), _psnr(on_own, own)
    assert agree > 40 and agree > apart + 10, (agree, apart)
    assert abs(_psnr(with_stats, own) - _psnr(on_given, own)) < 1.0  # the rest is the statistics graph's own error, tiles or not


def test_small_tiles_on_odd_frame_sizes_give_exact_4x_frames(ort_sampler):
    frames = random_frames(2, 37, 45, seed=4)  # padded to 40x48: 2x2 tiles of 32x32
    tiled = ort_sampler.upscale(frames, 2, noise=PhiloxNoise(5), tile=(32, 32), tile_overlap=8, scheduler="ddim")
    untiled = ort_sampler.upscale(frames, 2, noise=PhiloxNoise(5), scheduler="ddim")
    assert [f.shape for f in tiled] == [(148, 180, 3)] * 2
    assert all(np.isfinite(f).all() and f.min() >= 0 and f.max() <= 1 + 1e-6 for f in tiled)
    assert max(float(np.abs(a - b).max()) for a, b in zip(tiled, untiled)) > 0  # really tiled: overlaps blend


@pytest.mark.parametrize(
    "tile, overlap, words",
    [((8, 8), 8, "smallest tile"), ("33x64", 8, "not a multiple of 4"), ((32, 32), 16, "half a tile or more"), ((32, 32), -2, ">= 0")],
)
def test_bad_tiles_are_refused_before_any_work(ort_sampler, tile, overlap, words):
    with pytest.raises(InputError, match=words):
        ort_sampler.upscale(random_frames(1, 40, 40), 1, tile=tile, tile_overlap=overlap)


# -- DPM-Solver++ 2M: one x0 history per frame, in the checkpoint ---------------------------------------
def test_dpmpp_history_planes_checkpoint_and_resume_bit_identically(ort_sampler, tmp_path):
    sampler, frames = ort_sampler, random_frames(3, 32, 40, seed=6)
    plan = padding_plan(32, 40)
    steps = sampler.steps(4, scheduler="dpmpp-2m")
    assert any(step.reads_history for step in steps)
    layout = sampler.store_layout(len(frames), plan, history=True)
    tiles = sampler.tile_layout(layout.height, layout.width, (32, 32), 8)

    def start(folder, resume=False):
        store = ClipStore(layout, folder, budget=1 << 30, resume=resume)
        slots = sampler.slots(layout.height, layout.width, tiles)
        sampler.load_frames(store, frames, plan)
        sampler.compute_flows(store, slots)
        return store, slots

    def finish(store, slots, noise, first):
        for step in steps[first:]:
            sampler.run_step(store, slots, step, noise)
        out = {}
        sampler.decode(store, slots, len(steps), plan, out.__setitem__)
        store.close()
        return [out[k] for k in range(len(frames))]

    store, slots = start(tmp_path / "plain")
    sampler.initial_latents(store, PhiloxNoise(9))
    plain = finish(store, slots, PhiloxNoise(9), 0)

    noise = PhiloxNoise(9)
    store, slots = start(tmp_path / "cut")
    sampler.initial_latents(store, noise)
    for step in steps[:2]:
        sampler.run_step(store, slots, step, noise)
    store.flush()
    files = store.step_files(2)
    assert files == ["latents0.f32", "history0.f32"]
    records, noise_state = store.records(files), noise.state()
    store.close()  # the process dies here; the checkpoint holds records and the noise state

    shutil.copytree(tmp_path / "cut", tmp_path / "flipped")
    resumed_noise = PhiloxNoise(0)
    resumed_noise.restore(noise_state)
    store, slots = start(tmp_path / "cut", resume=True)
    assert store.damage(records) == {}
    resumed = finish(store, slots, resumed_noise, 2)
    assert all(np.array_equal(a, b) for a, b in zip(plain, resumed))

    with open(tmp_path / "flipped" / "history0.f32", "r+b") as fh:  # a flipped byte in the checkpointed history is found
        fh.seek(5)
        byte = fh.read(1)
        fh.seek(5)
        fh.write(bytes([byte[0] ^ 0xFF]))
    damaged = ClipStore(layout, tmp_path / "flipped", budget=1 << 30, resume=True)
    assert list(damaged.damage(records)) == ["history0.f32"]
    damaged.close()


def test_a_store_without_history_refuses_a_step_that_reads_it(ort_sampler, tmp_path):
    plan = padding_plan(32, 32)
    store = ClipStore(ort_sampler.store_layout(2, plan), tmp_path, budget=1 << 30)
    try:
        step = next(s for s in ort_sampler.steps(3, scheduler="dpmpp-2m") if s.reads_history)
        with pytest.raises(ValueError, match="history=needs_history"):
            ort_sampler.run_step(store, ort_sampler.slots(32, 32), step, NumpyNoise(0))
    finally:
        store.close()


def test_history_planes_are_sized_and_kept_in_files(tmp_path):
    from svsr.runtime.sampling import StoreLayout

    with_history, without = StoreLayout(5, 32, 40, history=True), StoreLayout(5, 32, 40)
    assert with_history.bytes_of("history") == with_history.bytes_of("latents") and without.bytes_of("history") == 0
    store = ClipStore(with_history, tmp_path / "a", budget=1 << 30)
    assert sorted(store.files()) == ["history0.f32", "history1.f32", "latents0.f32", "latents1.f32"]
    assert store.step_files(3) == ["latents1.f32", "history1.f32"]
    store.close()
    plain = ClipStore(without, tmp_path / "b", budget=1 << 30)
    assert plain.history is None and plain.step_files(3) == ["latents1.f32"]
    plain.close()

