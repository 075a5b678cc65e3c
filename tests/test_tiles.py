"""Tiles in the latent plane: the contract's layouts and weights, the sampler's tiled frame-steps and decodes, per-frame history."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from svsr.contract.errors import InputError
from svsr.contract.manifest import load_manifest
from svsr.contract.noise import NumpyNoise, PhiloxNoise
from svsr.contract.scheduler import needs_history
from svsr.contract.sizes import padding_plan
from svsr.contract.tiles import DEFAULT_OVERLAP, MIN_TILE, overlap_problem, parse_tile, plan_tiles
from svsr.runtime.sampling import Backend, ClipStore
from svsr.runtime.sampling.ort_backend import OrtBackend
from svsr.runtime.sampling.sampler import Sampler
from tests.conftest import random_frames


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


# -- a pointwise stand-in for the graphs: tiled equals untiled up to float rounding ---------------------
def _blocks(x: np.ndarray) -> np.ndarray:
    """(1, C, 4h, 4w) -> (1, C, h, w) means of 4x4 blocks (tiles start on multiples of 4 at 4x)."""
    n, c, h4, w4 = x.shape
    return x.reshape(n, c, h4 // 4, 4, w4 // 4, 4).mean(axis=(3, 5))


def _up(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)


class PointwiseGraphsStandIn(Backend):
    """Stand-in for a backend: numpy buffers, and every graph a pointwise (per pixel or per 4x4 block) function.

    Not StableVSR: each output position depends only on the same position of the inputs, so any tile
    sees exactly what the whole frame sees there, and tiled results must equal untiled ones up to the
    rounding of the blend (weights that sum to one).
    """

    name = "pointwise-stand-in"

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.programs: set[str] = set()
        self.allocations_after_first_run = 0

    def allocate(self, label, shape, dtype="float32", host_io=True):
        self.allocations_after_first_run += bool(self.runs)
        return np.zeros(tuple(shape), dtype)

    def upload(self, buffer, array):
        buffer[...] = array

    def download(self, buffer):
        return buffer.copy()

    def copy_region(self, source, target, source_origin, target_origin, size):
        (sy, sx), (ty, tx), (rows, cols) = source_origin, target_origin, size
        target[..., ty : ty + rows, tx : tx + cols] = source[..., sy : sy + rows, sx : sx + cols]

    def zero(self, buffer):
        buffer.fill(0)

    def launch(self, key, enqueue):
        self.programs.add(key)
        enqueue()

    def run(self, graph, inputs, outputs):
        self.runs.append(graph)
        i = inputs
        if graph == "flow":
            result = {"flow": _up(i["frame"][:, :2] - i["previous"][:, :2]) * 0.5}
        elif graph == "guide_decode":
            result = {"image": _up(np.tanh(i["x0"][:, :3]))}
        elif graph == "warp":
            result = {"guidance": i["image"] * 0.9 + 0.1 * i["flow"].mean(axis=1, keepdims=True)}
        elif graph == "denoise":
            c = i["step_coeffs"]
            guidance = _blocks(i["guidance"]).mean(axis=1, keepdims=True)
            out = np.tanh(0.8 * i["z"] + 0.3 * i["lr"][:, :1] + i["tcm_scale"][0] * guidance + 1e-3 * i["timestep"][0])
            x0 = np.clip(c[0] * i["z"] + c[1] * out, -c[5], c[5])
            z_prev = c[2] * x0 + c[3] * i["z"] + c[4] * i["noise"] + c[6] * out + c[7] * i["x0_history"]
            result = {"z_prev": z_prev, "x0": x0}
        elif graph == "decode":
            result = {"rgb": np.clip(_up(np.tanh(i["z"][:, :3])) / 2 + 0.5, 0, 1)}
        elif graph == "blend":
            result = {"out": i["acc"] + i["tile"] * i["weight"]}
        else:
            raise KeyError(graph)
        for name, value in result.items():
            outputs[name][...] = value


@pytest.fixture(scope="module")
def manifest(tiny_build):
    return load_manifest(tiny_build)


@pytest.mark.parametrize("scheduler", ["ddpm", "dpmpp-2m"])
def test_tiled_equals_untiled_with_a_pointwise_stand_in(manifest, scheduler, tmp_path):
    frames = random_frames(3, 37, 50, seed=1)  # padded to 40x52: 2x2 tiles of 32x32 with overlap 8
    whole_backend, tiled_backend = PointwiseGraphsStandIn(), PointwiseGraphsStandIn()
    whole = Sampler(whole_backend, manifest).upscale(frames, 3, noise=NumpyNoise(1), scheduler=scheduler, work_dir=tmp_path)
    tiled = Sampler(tiled_backend, manifest).upscale(frames, 3, noise=NumpyNoise(1), scheduler=scheduler, work_dir=tmp_path,
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
    assert tiled_backend.allocations_after_first_run == 0
    # fixed programs: per slot set and TCM use (and the two tiled decodes), whatever the frames or steps
    hist, tiles = "-hist" if needs_history(scheduler) else "", "-tiles40x52/32x32o8"
    want = {f"step0-first{hist}{tiles}", f"step1-tcm{hist}{tiles}", f"step0-tcm{hist}{tiles}", f"decode0{tiles}", f"decode1{tiles}"}
    assert tiled_backend.programs == want
    assert whole_backend.programs == {f"step0-first{hist}", f"step1-tcm{hist}", f"step0-tcm{hist}"}


# -- the real tiny build on ONNX Runtime -----------------------------------------------------------------
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

