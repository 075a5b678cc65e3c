"""TensorRT backend on a CPU: memory plan, and every call the backend makes, against a recording test double.

RecordingTrtCudaDouble stands in for TensorRT and the CUDA runtime. It keeps a fake device and
pinned memory in numpy arrays and runs tiny numpy "engines" when TensorRT would enqueue them. Each
stream is a queue with CUDA's ordering rules (events, waits, captures replayed on graph launch);
one stream runs its work as soon as it may and the other only when something forces it (a host
wait, a stream waiting on its event, a free), so a missing wait between the copy stream and the
compute stream changes the results. The schedule's results through the backend are compared with
the same numpy kernels run directly. The real TensorRT runtime API is checked separately against
the `tensorrt_lean_bindings` wheel, which imports without a GPU.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from svsr.device import cuda as cuda_api
from svsr.device.cuda import CudaApi, CudaError
from svsr.contract.engine_records import BuildEnvironment
from svsr.contract.errors import InputError, ManifestError
from svsr.contract.frames import validate_clip
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS
from svsr.contract.manifest import sha256_file
from svsr.contract.noise import NumpyNoise
from svsr.contract.profiles import Profile
from svsr.runtime.sampling import trt_plans as trt_plans_mod
from svsr.runtime.sampling.clip_store import ClipStore, StoreLayout
from svsr.runtime.sampling.memory_plan import (
    BASE_RESERVE,
    CONTEXT_ESTIMATE,
    GIB,
    GRAPH_ESTIMATE,
    MIB,
    DeviceMemoryError,
    aligned,
    binding_counts,
    check_fits,
    plan_memory,
    slot_buffers,
)
from svsr.contract.tiles import plan_tiles
from svsr.runtime.sampling.sampler import Sampler
from svsr.runtime.sampling.trt_backend import TRT_RUNTIME_API, ProgramBindingError, TrtBackend, open_trt_backend
from svsr.runtime.sampling.trt_plans import hash_sidecar
from tests.support.trt import (
    H100,
    NEED_PER_PIXEL,
    PLANS,
    PROFILE_MAX_SCRATCH,
    SCRATCH,
    ContextTestDouble,
    CudaTestDouble,
    EngineTestDouble,
    NumpyKernelsBackendDouble,
    RecordingTrtCudaDouble,
    STATS_SIZES,
    k_decode,
    synthetic_manifest,
    write_engines,
)
from tests.conftest import random_frames




def make_backend(double: RecordingTrtCudaDouble | None = None, *, first: str = "compute", **kwargs) -> tuple[TrtBackend, RecordingTrtCudaDouble]:
    """A backend on the double; ``first``: which stream runs its work at once ("compute" or "copy"), the other lags."""
    double = double or RecordingTrtCudaDouble()
    backend = TrtBackend(PLANS, trt=double.trt, cuda=double.cuda, **kwargs)
    double.eager = {backend.stream if first == "compute" else backend.copy_stream}
    return backend, double


def names(calls, *prefixes):
    return [c for c in calls if c[0].startswith(prefixes)]


def run_clip(sampler: Sampler, frames, steps: int, seed: int = 3):
    return sampler.upscale(frames, num_inference_steps=steps, noise=NumpyNoise(seed))


def run_clip_recomputing_flows(sampler: Sampler, frames, steps: int, folder: Path, seed: int = 3):
    """Sampler.upscale with flows recomputed per frame-step instead of stored (the video job's --flows recompute)."""
    plan = validate_clip(frames)
    layout = StoreLayout(len(frames), plan.padded_height, plan.padded_width)
    store = ClipStore(layout, folder, 1 << 30, store_flows=False)
    noise = NumpyNoise(seed)
    try:
        slots = sampler.slots(layout.height, layout.width)
        sampler.load_frames(store, frames, plan)
        sampler.compute_flows(store, slots)
        sampler.initial_latents(store, noise)
        schedule = sampler.steps(steps)
        for step in schedule:
            sampler.run_step(store, slots, step, noise)
        out: list = [None] * len(frames)
        sampler.decode(store, slots, len(schedule), plan, out.__setitem__)
        return out
    finally:
        store.close()


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# -- memory plan ----------------------------------------------------------------------------------
# The runtime design (frame_step.py): per slot set the frame's state (z, lr, the previous LR, flow, noise,
# the x0 history), its guidance (4x) and outputs (z_out, x0: x0 per set, read by the next frame's guide);
# shared: the decoded guidance image (4x), the zero guidance and zero history, the step's scalars, the
# final decode's inputs and RGB (two each).
SLOT_SET = ("z", "lr", "lr_previous", "flow", "noise", "history", "guidance", "z_out", "x0_")
SLOT_LABELS = [
    *(f"{n}{i}" for i in (0, 1) for n in SLOT_SET),
    "image", "zero_guidance", "zero_history", "tcm_off", "tcm_on", "timestep", "step_coeffs", "decode_z0", "decode_z1", "rgb0", "rgb1",
    "shared_norm", "denoise_norm", "decode_norm",  # GroupNorm statistics: 0 / zeros untiled, 1 / the whole frame's tiled
]  # fmt: skip
# never uploaded or downloaded (host_io=False): no pinned staging (x0 is downloaded as the frame's history)
DEVICE_ONLY = {"guidance0", "guidance1", "image", "zero_guidance", "zero_history", "denoise_norm", "decode_norm"}
# contexts, one per distinct binding: flow 2 (one per slot set), guide_decode 2 (the other set's x0 -> image),
# warp 2 (image and flow i -> guidance i), denoise 3 (set 0 without TCM, both sets with), decode 2
UNTILED_CONTEXTS = 2 + 2 + 2 + 3 + 2
UNTILED_PROGRAMS = 3  # step0-first, step1-tcm, step0-tcm
UNTILED_GRAPHS = ("flow", "denoise", "guide_decode", "warp", "decode")  # an untiled run at flow scale 4: the scratch probes
OPENED_GRAPHS = ("flow", "denoise", "guide_decode", "warp", "decode", "blend")  # deserialised with the backend; the rest on demand


def test_slot_buffers_are_what_the_sampler_allocates():
    bufs = slot_buffers(synthetic_manifest(), 36, 44)
    assert [b.label for b in bufs] == SLOT_LABELS
    by = {b.label: b for b in bufs}
    assert by["z1"].shape == by["x0_1"].shape == by["history0"].shape == by["zero_history"].shape == (1, 4, 36, 44)
    assert by["flow0"].shape == (1, 2, 144, 176) and by["rgb1"].shape == by["image"].shape == (1, 3, 144, 176)
    assert by["guidance0"].nbytes == 3 * 144 * 176 * 4 and by["step_coeffs"].shape == (8,)
    assert by["shared_norm"].shape == (1,) and by["denoise_norm"].shape == (1, 4) and by["decode_norm"].shape == (1, 2)  # the manifest's lengths


def test_memory_plan_is_constant_in_frames_and_reserves_contexts_and_graphs():
    manifest = synthetic_manifest()
    assert binding_counts(manifest) == (UNTILED_CONTEXTS, UNTILED_PROGRAMS) == (11, 3)
    h, w = 180, 320
    latent, lr, big3, flow = aligned(4 * h * w * 4), aligned(3 * h * w * 4), aligned(3 * 16 * h * w * 4), aligned(2 * 16 * h * w * 4)
    scalars = 4 * aligned(4) + aligned(8 * 4) + aligned(4 * 4) + aligned(2 * 4)  # tcm x2, timestep, shared_norm; coeffs; the statistics
    per_set = 5 * latent + 2 * lr + flow + big3  # z, noise, history, z_out, x0; lr, lr_previous; flow; guidance
    slots = 2 * per_set + 2 * big3 + latent + scalars + 2 * latent + 2 * big3  # image, zero guidance; zero history; decode z, rgb
    plan = plan_memory(manifest, h, w, scratch_bytes=3 << 30, engine_bytes=1 << 30)
    assert plan.slot_bytes == slots == sum(aligned(b.nbytes) for b in slot_buffers(manifest, h, w))
    assert plan.reserve_bytes == BASE_RESERVE + 11 * CONTEXT_ESTIMATE + 3 * GRAPH_ESTIMATE
    assert plan.total_bytes == slots + (3 << 30) + (1 << 30) + plan.reserve_bytes
    assert "11 execution contexts of 16 MiB (estimated), 3 CUDA graphs of 8 MiB (estimated)" in plan.describe()
    measured = plan_memory(manifest, h, w, scratch_bytes=3 << 30, per_context_bytes=5 * MIB, per_program_bytes=2 * MIB)
    assert measured.reserve_bytes == BASE_RESERVE + 11 * 5 * MIB + 3 * 2 * MIB
    assert "of 5 MiB (measured)" in measured.describe() and "of 2 MiB (measured)" in measured.describe()
    eager = plan_memory(manifest, h, w, scratch_bytes=0, cuda_graphs=False)
    assert eager.programs == 0 and "CUDA graphs" not in eager.describe()


def test_memory_plan_refusal_is_one_sentence_naming_the_size_the_need_and_the_free_memory():
    plan = plan_memory(synthetic_manifest(), 180, 320, scratch_bytes=2 << 30)
    check_fits(plan, plan.total_bytes)  # exactly enough is enough
    with pytest.raises(DeviceMemoryError) as info:
        check_fits(plan, 1 << 30)
    message = str(info.value)
    assert message.startswith(f"frames of 320x180 (padded LR size) need {plan.total_bytes / GIB:.2f} GiB (slot buffers ")
    assert "of GPU memory but only 1.00 GiB is free; free GPU memory (other processes), or use smaller frames or fp16 engines." in message
    assert "chunk" not in message and "\n" not in message and message.count(". ") == 0


# -- the backend against the recording double -----------------------------------------------------
def scratch_need(h: int, w: int, graphs=UNTILED_GRAPHS) -> int:
    return aligned(max(SCRATCH[g] + NEED_PER_PIXEL[g] * h * w for g in graphs), 256)


def test_engines_load_without_contexts_or_device_memory_until_a_size_is_prepared():
    backend, d = make_backend()
    assert [c[1] for c in names(d.calls, "runtime.deserialize_cuda_engine")] == list(OPENED_GRAPHS)
    assert backend.loaded_graphs == OPENED_GRAPHS
    assert not names(d.calls, "engine.create_execution_context", "cuda.malloc")
    assert backend.scratch_bytes == 0 and backend.measured_overhead_bytes()["per_context"] is None


def test_the_statistics_and_other_flow_engines_load_when_a_size_that_runs_them_is_prepared():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = Sampler(backend, manifest)
    run_clip(sampler, random_frames(2, 36, 44), 2)
    assert backend.loaded_graphs == OPENED_GRAPHS  # untiled at flow scale 4: nothing more
    mark = len(d.calls)
    sampler.slots(64, 72, sampler.tile_layout(64, 72, (32, 40), 8), flow_scale=2)
    loaded = [c[1] for c in names(d.calls[mark:], "runtime.deserialize_cuda_engine")]
    assert loaded == ["flow_x2", "denoise_stats", "decode_stats"]
    # their scratch is asked for at the frame size (the statistics graphs pool inside), the tiled graphs' at the tile
    probed = {c[1] for c in names(d.calls[mark:], "engine.create_execution_context")}
    assert probed == {"flow_x2", "denoise", "denoise_stats", "guide_decode", "decode_stats", "warp", "decode", "blend"}
    assert backend.scratch_bytes == aligned(max(
        [SCRATCH[g] + NEED_PER_PIXEL[g] * 64 * 72 for g in ("flow_x2", "warp", "denoise_stats", "decode_stats")]
        + [SCRATCH[g] + NEED_PER_PIXEL[g] * 32 * 40 for g in ("denoise", "guide_decode", "decode")]), 256)  # fmt: skip


def test_an_on_demand_engine_that_does_not_fit_the_free_memory_is_one_sentence_before_loading():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble()
    backend, d = make_backend(double)
    double.free_bytes = len(PLANS["denoise_stats"]) + len(PLANS["decode_stats"]) - 1
    mark = len(d.calls)
    with pytest.raises(DeviceMemoryError) as refused:
        Sampler(backend, manifest).slots(64, 72, plan_tiles(64, 72, (32, 40), 8))
    assert str(refused.value).startswith("the denoise_stats, decode_stats engines this run needs take 0.00 GiB of GPU memory but only ")
    assert not names(d.calls[mark:], "runtime.deserialize_cuda_engine")


@pytest.mark.parametrize("first", ["compute", "copy"])
def test_results_equal_the_kernels_run_directly_for_clips_of_different_lengths_and_two_sizes(first):
    manifest = synthetic_manifest()
    backend, d = make_backend(first=first)
    sampler, ref = Sampler(backend, manifest), Sampler(NumpyKernelsBackendDouble(), manifest)
    clips = [(1, 36, 44), (2, 36, 44), (5, 36, 44), (3, 40, 48), (4, 40, 48), (2, 36, 44)]
    for i, (n, h, w) in enumerate(clips):
        frames = random_frames(n, h, w, seed=i)
        assert_same(run_clip(sampler, frames, 3, seed=i), run_clip(ref, frames, 3, seed=i))
    sampler.close()
    assert not d.memory, "device or pinned memory left allocated"


def test_flows_recomputed_per_frame_step_give_the_same_results_with_the_same_bindings(tmp_path):
    manifest = synthetic_manifest()
    backend, d = make_backend()
    frames = random_frames(4, 36, 44, seed=8)
    got = run_clip_recomputing_flows(Sampler(backend, manifest), frames, 3, tmp_path / "trt")
    assert_same(got, run_clip_recomputing_flows(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 3, tmp_path / "np"))
    assert_same(run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 3), got)  # recomputed flows = stored flows
    overhead = backend.measured_overhead_bytes()
    assert (overhead["contexts"], overhead["programs"]) == binding_counts(manifest)
    assert backend.capture_report()["captured_keys"] == ["step0-first", "step0-tcm-flow", "step1-tcm-flow"]


def test_each_context_is_bound_once_when_made_and_never_re_pointed():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = Sampler(backend, manifest)
    run_clip(sampler, random_frames(3, 36, 44), 2)
    first_size = [c for c in d.contexts if c.executed]
    run_clip(sampler, random_frames(4, 36, 44), 3)
    assert [c for c in d.contexts if c.executed] == first_size  # the second clip made no context
    run_clip(sampler, random_frames(3, 40, 48), 2)
    executed = [c for c in d.contexts if c.executed]
    assert len(first_size) == UNTILED_CONTEXTS and len(executed) == 2 * UNTILED_CONTEXTS
    for c in executed:
        first = c.log.index("execute_async_v3")
        assert not {"set_tensor_address", "set_device_memory", "set_input_shape"} & set(c.log[first:]), c
        assert c.log[:first].count("set_device_memory") == 1
        assert c.log[:first].count("set_tensor_address") == len(GRAPHS[c.graph].inputs) + len(GRAPHS[c.graph].outputs)
    bindings = [(c.graph, tuple(sorted(c.addresses.items()))) for c in executed]
    assert len(set(bindings)) == len(bindings)  # one context per distinct binding
    # the new size released the old slot buffers, and every context bound to them went with them
    assert not any(c.alive for c in first_size)
    assert all(c.alive for c in executed[UNTILED_CONTEXTS:])
    probes = [c for c in d.contexts if not c.executed]
    assert len(probes) == 2 * len(UNTILED_GRAPHS) and not any(c.alive for c in probes)  # every engine the size runs asked for its scratch need, per size
    assert all(c.log == ["set_input_shape"] * c.log.count("set_input_shape") + ["update_device_memory_size_for_shapes"] for c in probes)


def test_scratch_is_sized_by_the_contexts_need_for_the_shapes_in_use():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = Sampler(backend, manifest)
    sizes = [(36, 44), (40, 48), (36, 44)]
    for h, w in sizes:
        mark = len(d.calls)
        run_clip(sampler, random_frames(2, h, w), 2)
        assert backend.scratch_bytes == scratch_need(h, w) < PROFILE_MAX_SCRATCH
        calls = d.calls[mark:]
        assert [c[1] for c in names(calls, "cuda.malloc") if c[1] == backend.scratch_bytes] == [backend.scratch_bytes]
        assert {c[2:4] for c in names(calls, "ctx.set_device_memory")} == {(backend.scratch_ptr, backend.scratch_bytes)}
    scratch_mallocs = [c[2] for c in names(d.calls, "cuda.malloc") if c[1] in {scratch_need(h, w) for h, w in sizes}]
    assert [("cuda.free", p) in d.calls for p in scratch_mallocs] == [True, True, False]  # resized per size, the old area freed


def decode_inputs(backend, z):
    """decode's inputs on its own statistics (shared_norm 0, zero statistics): the untiled path."""
    return {"z": z, "norm_stats": backend.allocate("decode_norm", (1, STATS_SIZES["decode_stats"])), "shared_norm": backend.allocate("shared", (1,))}


def test_a_run_at_a_size_never_prepared_grows_the_scratch_and_drops_the_older_contexts():
    backend, d = make_backend()
    z, rgb = backend.allocate("z", (1, 4, 36, 44)), backend.allocate("rgb", (1, 3, 144, 176))
    lr, prev, flow = (backend.allocate(n, s) for n, s in (("frame", (1, 3, 36, 44)), ("previous", (1, 3, 36, 44)), ("flow", (1, 2, 144, 176))))
    decode = decode_inputs(backend, z)
    backend.run("decode", decode, {"rgb": rgb})
    assert backend.scratch_bytes == aligned(SCRATCH["decode"] + 36 * 44, 256)
    backend.run("flow", {"frame": lr, "previous": prev}, {"flow": flow})  # needs more: a new area, the decode context is dropped
    assert backend.scratch_bytes == aligned(SCRATCH["flow"] + 2 * 36 * 44, 256)
    decode_ctx, flow_ctx = [c for c in d.contexts if c.executed]
    assert not decode_ctx.alive and flow_ctx.alive
    backend.run("decode", decode, {"rgb": rgb})  # made again, on the new area
    assert [c.graph for c in d.contexts if c.alive] == ["flow", "decode"]
    zeros = np.zeros((1, 4, 36, 44), np.float32)
    np.testing.assert_array_equal(backend.download(rgb), k_decode(zeros, np.zeros((1, 2), np.float32), np.zeros(1, np.float32))["rgb"])


def test_captures_do_not_depend_on_the_number_of_frames_or_steps():
    manifest = synthetic_manifest()
    counts = []
    for n, steps in ((3, 2), (6, 4)):
        backend, d = make_backend()
        sampler = Sampler(backend, manifest)
        run_clip(sampler, random_frames(n, 36, 44, seed=n), steps)
        counts.append((len(names(d.calls, "cuda.begin_capture")), len(names(d.calls, "cuda.graph_instantiate")), len(names(d.calls, "engine.create_execution_context"))))
        assert len(names(d.calls, "cuda.graph_launch")) == n * steps - 3  # every frame-step after the three captures is a replay
        # another clip of that size: replays only, nothing made or measured
        mark = len(d.calls)
        run_clip(sampler, random_frames(2, 36, 44), 2)
        assert not names(d.calls[mark:], "cuda.begin_capture", "engine.create_execution_context", "ctx.set_", "cuda.malloc", "cuda.mem_get_info", "cuda.free")
        assert len(names(d.calls[mark:], "cuda.graph_launch")) == 4
    assert counts[0] == counts[1] == (UNTILED_PROGRAMS, UNTILED_PROGRAMS, len(UNTILED_GRAPHS) + UNTILED_CONTEXTS)  # scratch probes + bound contexts


def frame_steps(calls, main):
    """The calls between consecutive graph launches (one steady frame-step each)."""
    launches = [i for i, c in enumerate(calls) if c[0] == "cuda.graph_launch"]
    return [calls[a:b] for a, b in zip(launches, launches[1:])]


def test_a_steady_frame_step_is_uploads_one_replay_and_one_download():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = Sampler(backend, manifest)
    run_clip(sampler, random_frames(4, 36, 44), 2)
    mark = len(d.calls)
    run_clip(sampler, random_frames(4, 36, 44, seed=1), 2)
    main, copy = backend.stream, backend.copy_stream
    steps = frame_steps(d.calls[mark:], main)
    assert len(steps) == 7
    kinds_allowed = {"cuda.graph_launch", "cuda.event_record", "cuda.stream_wait_event", "cuda.memcpy_htod_async", "cuda.memcpy_dtoh_async", "cuda.event_synchronize"}
    # the first frame-step of a sweep fills the pipeline: the next frame's uploads, no download yet
    assert {c[0] for c in steps[0]} <= kinds_allowed and [c[-1] for c in names(steps[0], "cuda.memcpy")] == [copy] * 4
    assert not names(steps[0], "cuda.memcpy_dtoh_async", "cuda.event_synchronize")
    for step in steps[1:3]:  # inside the first sweep
        assert {c[0] for c in step} <= kinds_allowed
        assert [c[-1] for c in names(step, "cuda.memcpy")] == [copy] * 5  # z_out of the previous frame; z, lr, noise, flow of the next frame
        assert len(names(step, "cuda.event_synchronize")) == 1  # the host waits for the previous frame's z_out copy only
        assert step[0] == ("cuda.graph_launch", step[0][1], main)


def test_the_next_frames_upload_overlaps_this_frames_compute():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = Sampler(backend, manifest)
    run_clip(sampler, random_frames(4, 36, 44), 2)
    mark = len(d.calls)
    run_clip(sampler, random_frames(4, 36, 44, seed=1), 2)
    calls = d.calls[mark:]
    main, copy = backend.stream, backend.copy_stream
    buffers = backend.buffers().values()
    used = {b.used: b.label for b in buffers}
    copied = {b.copied: b.label for b in buffers}
    ptr = {b.ptr: b.label for b in buffers}
    launches = [i for i, c in enumerate(calls) if c[0] == "cuda.graph_launch"]
    for position in (1, 2):  # frame-steps 1 and 2 of the first sweep: slot sets 1 and 0
        s, other = position % 2, (position + 1) % 2
        step = calls[launches[position] : launches[position + 1]]
        launched_after = [used[c[1]] for c in step if c[0] == "cuda.event_record" and c[2] == main]
        # this frame-step reads the previous frame's x0 (the other set's) for its guide and writes its own set's
        assert set(launched_after) >= {f"z{s}", f"z_out{s}", f"x0_{s}", f"x0_{other}", "image", f"guidance{s}"}
        # with this frame queued, the previous frame's z_out (the other slot set) comes back, after its own compute
        waits = [used[c[2]] for c in step if c[0] == "cuda.stream_wait_event" and c[1] == copy]
        assert waits[0] == f"z_out{other}" and names(step, "cuda.memcpy_dtoh_async")[0][2] == backend.buffers()[f"z_out{other}"].ptr
        # then the next frame's state goes into that slot set
        uploads = [ptr[c[1]] for c in names(step, "cuda.memcpy_htod_async")]
        assert uploads == [f"z{other}", f"lr{other}", f"noise{other}", f"flow{other}"]
        # before overwriting it, the copy stream waits for the frame-step that last used it (the previous one), not this one
        assert set(waits[1:]) <= set(uploads) and f"z{other}" in waits  # (a buffer this sweep has not used needs no wait)
        # and the next launch waits for exactly those uploads
        assert sorted(copied[c[2]] for c in step if c[0] == "cuda.stream_wait_event" and c[1] == main) == sorted(uploads)


def test_decoded_frames_come_back_while_the_next_decode_runs():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = Sampler(backend, manifest)
    mark = len(d.calls)
    run_clip(sampler, random_frames(3, 36, 44), 2)
    calls = d.calls[mark:]
    main, copy = backend.stream, backend.copy_stream
    tail = calls[next(i for i, c in enumerate(calls) if c[:2] == ("ctx.execute_async_v3", "decode")) :]
    buffers = backend.buffers()
    label = {**{b.used: b.label + ".used" for b in buffers.values()}, **{b.copied: b.label + ".copied" for b in buffers.values()}, **{b.ptr: b.label for b in buffers.values()}}
    wanted = ("ctx.execute_async_v3", "cuda.memcpy_dtoh_async", "cuda.stream_wait_event", "cuda.event_synchronize", "cuda.stream_synchronize")
    shown = [tuple(label.get(x, x) for x in c[:3]) for c in tail if c[0] in wanted and not (c[0] == "cuda.stream_wait_event" and c[1] == main)]
    download = lambda k: [("cuda.stream_wait_event", copy, f"rgb{k}.used"), ("cuda.memcpy_dtoh_async", backend.buffers()[f"rgb{k}"].host, f"rgb{k}"), ("cuda.event_synchronize", f"rgb{k}.copied")]  # noqa: E731
    decode = ("ctx.execute_async_v3", "decode", main)
    up = lambda k: [("cuda.stream_wait_event", copy, f"decode_z{k}.used")]  # noqa: E731
    assert shown == [
        decode, decode, *download(0), *up(0), decode, *download(1), *download(0),
        ("cuda.stream_synchronize", main), ("cuda.stream_synchronize", copy),
    ]  # fmt: skip


def test_pinned_staging_is_made_with_each_buffer_and_never_inside_a_step():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    run_clip(Sampler(backend, manifest), random_frames(3, 36, 44), 3)
    pinned = [i for i, c in enumerate(d.calls) if c[0] == "cuda.malloc_host"]
    first_compute = next(i for i, c in enumerate(d.calls) if c[0] == "ctx.execute_async_v3")
    assert len(pinned) == len(SLOT_LABELS) - len(DEVICE_ONLY) and max(pinned) < first_compute
    assert sorted(c[1] for c in names(d.calls, "cuda.malloc_host")) == sorted(b.nbytes for b in backend.buffers().values() if b.label not in DEVICE_ONLY)


@pytest.mark.parametrize("sabotage", ["compute_waits_for_uploads", "copies_wait_for_compute"])
def test_the_double_catches_a_missing_wait(monkeypatch, sabotage):
    """Without either event wait the results change: the double really checks the ordering."""
    manifest = synthetic_manifest()
    if sabotage == "compute_waits_for_uploads":
        backend, d = make_backend(first="compute")
        monkeypatch.setattr(backend.memory, "wait_uploads", lambda buffers: None)
        frames = random_frames(3, 36, 44)
        with pytest.raises(AssertionError):
            assert_same(run_clip(Sampler(backend, manifest), frames, 2), run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 2))
        return
    backend, d = make_backend(first="copy")
    z, rgb = backend.allocate("z", (1, 4, 36, 44)), backend.allocate("rgb", (1, 3, 144, 176))
    backend.upload(z, np.full(z.shape, 0.25, np.float32))
    backend.run("decode", decode_inputs(backend, z), {"rgb": rgb})
    monkeypatch.setattr(backend.memory, "copy_after_compute", lambda buf: None)
    backend.upload(z, np.full(z.shape, -0.75, np.float32))  # lands before the decode read z
    own = (np.zeros((1, 2), np.float32), np.zeros(1, np.float32))
    assert not np.array_equal(backend.download(rgb), k_decode(np.full(z.shape, 0.25, np.float32), *own)["rgb"])


def test_replaying_a_program_whose_enqueue_binds_other_buffers_is_an_error():
    backend, d = make_backend()
    z = [backend.allocate(f"z{i}", (1, 4, 36, 44)) for i in range(2)]
    rgb = backend.allocate("rgb", (1, 3, 144, 176))
    own = decode_inputs(backend, z[0])
    own.pop("z")
    backend.launch("decode-p", lambda: backend.run("decode", {"z": z[0], **own}, {"rgb": rgb}))
    backend.launch("decode-p", lambda: backend.run("decode", {"z": z[0], **own}, {"rgb": rgb}))
    assert len(names(d.calls, "cuda.graph_launch")) == 1
    mark = len(d.calls)
    with pytest.raises(ProgramBindingError, match=r"the decode-p program binds other buffers than when it was captured \(launch 0 \(decode\) binds z to z1 instead of z0\)"):
        backend.launch("decode-p", lambda: backend.run("decode", {"z": z[1], **own}, {"rgb": rgb}))
    assert not names(d.calls[mark:], "cuda.graph_launch", "ctx.execute_async_v3", "cuda.begin_capture")
    # an enqueue that binds other buffers each time it is called cannot be captured either
    calls = iter([0, 1, 0, 1])
    with pytest.raises(ProgramBindingError, match=r"the flaky program's enqueue made launch 0 \(decode\) with other buffers than its dry run \(binds z to z1 instead of z0\)"):
        backend.launch("flaky", lambda: backend.run("decode", {"z": z[next(calls)], **own}, {"rgb": rgb}))
    assert not d.capturing and len(d.graphs) == backend.capture_report()["captured"]  # no graph left behind by the failed attempt
    with pytest.raises(RuntimeError, match="upload inside the nested frame-step program"):
        backend.launch("nested", lambda: backend.upload(z[0], np.zeros(z[0].shape, np.float32)))


@pytest.mark.parametrize("stage", ["begin", "enqueue", "end", "last_error", "instantiate"])
def test_a_failed_capture_destroys_its_graph_and_the_program_runs_eagerly(stage):
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble()
    double.fail = stage
    backend, d = make_backend(double)
    frames = random_frames(3, 36, 44, seed=4)
    with pytest.warns(RuntimeWarning, match="frame-step could not be captured as a CUDA graph"):
        got = run_clip(Sampler(backend, manifest), frames, 4)
    assert_same(got, run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 4))
    assert len(names(d.calls, "cuda.begin_capture")) == 3  # tried once per program, then eager
    assert not names(d.calls, "cuda.graph_launch")
    made = [c[2] for c in names(d.calls, "cuda.try_end_capture") if c[2]]
    assert len(made) == (0 if stage == "begin" else 3)
    assert [g for g in made if ("cuda.graph_destroy", g) not in d.calls] == []  # every graph a failed capture made is destroyed
    assert not d.graphs and not d.execs and not d.capturing
    assert backend.measured_overhead_bytes()["programs"] == 0
    report = backend.capture_report()  # what the doctor FAILs on
    assert report["captured"] == 0 and report["failed"] == ["step0-first", "step0-tcm", "step1-tcm"]
    assert sorted(report["reasons"]) == report["failed"] and all(report["reasons"].values())  # why, per key


def test_cuda_get_last_error_is_read_after_every_capture():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    run_clip(Sampler(backend, manifest), random_frames(3, 36, 44), 2)
    ends = [i for i, c in enumerate(d.calls) if c[0] == "cuda.try_end_capture"]
    instantiates = [i for i, c in enumerate(d.calls) if c[0] == "cuda.graph_instantiate"]
    checks = [i for i, c in enumerate(d.calls) if c[0] == "cuda.get_last_error"]
    assert len(ends) == len(checks) == len(instantiates) == 3
    assert all(end < check < inst for end, check, inst in zip(ends, checks, instantiates))
    assert backend.capture_report() == {
        "cuda_graphs": True, "captured": 3, "captured_keys": ["step0-first", "step0-tcm", "step1-tcm"], "failed": [], "reasons": {},
    }  # fmt: skip


def test_a_key_that_failed_to_capture_is_captured_again_after_a_frame_size_change():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble()
    double.fail = "instantiate"
    backend, d = make_backend(double)
    sampler = Sampler(backend, manifest)
    with pytest.warns(RuntimeWarning):
        run_clip(sampler, random_frames(3, 36, 44), 2)
    assert backend.capture_report()["failed"] == ["step0-first", "step0-tcm", "step1-tcm"]
    mark = len(d.calls)
    run_clip(sampler, random_frames(3, 36, 44), 2)  # the same size: still eager, not tried again
    assert not names(d.calls[mark:], "cuda.begin_capture")
    double.fail = None
    frames = random_frames(3, 40, 48, seed=2)
    got = run_clip(sampler, frames, 2)  # another size: tried again, and now captured
    assert_same(got, run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 2))
    report = backend.capture_report()
    assert report["captured"] == 3 and report["failed"] == []
    assert len(names(d.calls, "cuda.graph_launch")) == 3 * 2 - 3


class EventLogBackendDouble(NumpyKernelsBackendDouble):
    """Test double: the numpy kernels, logging each launch, graph run and download with buffer labels."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.labels: dict[int, str] = {}

    def allocate(self, label, shape, dtype="float32", host_io=True):
        buffer = super().allocate(label, shape, dtype, host_io)
        self.labels[id(buffer)] = label
        return buffer

    def launch(self, key, enqueue):
        self.events.append(("launch", key))
        enqueue()

    def run(self, graph, inputs, outputs):
        self.events.append(("run", graph, *(self.labels[id(b)] for b in outputs.values())))
        super().run(graph, inputs, outputs)

    def download(self, buffer):
        self.events.append(("download", self.labels[id(buffer)]))
        return super().download(buffer)


@pytest.mark.parametrize("store_flows", [True, False])
def test_the_next_frame_is_launched_before_this_frames_latent_is_downloaded(tmp_path, store_flows):
    manifest = synthetic_manifest()
    log = EventLogBackendDouble()
    sampler = Sampler(log, manifest)
    frames = random_frames(4, 36, 44, seed=6)
    plan = validate_clip(frames)
    store = ClipStore(sampler.store_layout(len(frames), plan), tmp_path, 1 << 30, store_flows=store_flows)
    noise = NumpyNoise(1)
    slots = sampler.slots(plan.padded_height, plan.padded_width)
    sampler.load_frames(store, frames, plan)
    sampler.compute_flows(store, slots)
    flows = [e for e in log.events if e[0] in ("run", "download") and "flow" in e[-1]]
    if store_flows:  # 3 frame pairs, forward and backward: job j+1 runs before job j's flow comes back
        assert flows[:3] == [("run", "flow", "flow0"), ("run", "flow", "flow1"), ("download", "flow0")]
        runs = [i for i, e in enumerate(flows) if e[0] == "run"]
        downloads = [i for i, e in enumerate(flows) if e[0] == "download"]
        assert len(runs) == len(downloads) == 6 and all(runs[j + 1] < downloads[j] for j in range(5))
    else:
        assert flows == []
    sampler.initial_latents(store, noise)
    log.events.clear()
    sampler.run_step(store, slots, sampler.steps(2)[0], noise)
    steps = [e for e in log.events if e[0] in ("launch", "download")]
    launches = [i for i, e in enumerate(steps) if e[0] == "launch"]
    downloads = [i for i, e in enumerate(steps) if e[0] == "download"]
    assert len(launches) == len(downloads) == 4
    assert all(launches[k + 1] < downloads[k] for k in range(3))  # launch of k+1 precedes download of k
    assert [steps[i][1] for i in downloads] == ["z_out0", "z_out1", "z_out0", "z_out1"]  # z_out double-buffered
    store.close()


def test_the_stream_is_synchronised_between_the_warm_up_and_the_capture():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    run_clip(Sampler(backend, manifest), random_frames(3, 36, 44), 2)
    main = backend.stream
    for i, c in enumerate(d.calls):
        if c[0] == "cuda.begin_capture":
            before = d.calls[:i]
            last_execute = max(j for j, x in enumerate(before) if x[0] == "ctx.execute_async_v3")
            assert ("cuda.stream_synchronize", main) in before[last_execute:]


def test_without_cuda_graphs_every_frame_step_is_eager():
    manifest = synthetic_manifest()
    backend, d = make_backend(cuda_graphs=False)
    frames = random_frames(3, 36, 44, seed=4)
    assert_same(run_clip(Sampler(backend, manifest), frames, 3), run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 3))
    assert not names(d.calls, "cuda.begin_capture")
    assert backend.memory_plan(manifest, 36, 44).programs == 0


def test_context_and_graph_memory_is_measured_and_replaces_the_estimates():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble(context_bytes=3 * MIB, graph_bytes=1 * MIB)
    backend, d = make_backend(double)
    sampler = Sampler(backend, manifest)
    sampler.slots(36, 44)
    first = backend.last_plan
    assert first.per_context_bytes == 3 * MIB and first.measured_contexts  # the scratch probes measured one context each
    assert first.per_program_bytes == GRAPH_ESTIMATE and not first.measured_programs
    run_clip(sampler, random_frames(3, 36, 44), 2)
    assert backend.measured_overhead_bytes() == {
        "per_context": 3 * MIB, "per_program": 1 * MIB, "contexts": 11, "context_bytes": 33 * MIB, "programs": 3, "program_bytes": 3 * MIB,
    }  # fmt: skip
    plan = backend.memory_plan(manifest, 40, 48)
    assert plan.reserve_bytes == BASE_RESERVE + 11 * 3 * MIB + 3 * 1 * MIB and plan.measured_programs


def test_a_frame_size_that_does_not_fit_is_refused_before_allocation():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble(context_bytes=2 * MIB)
    backend, d = make_backend(double)
    plan = backend.memory_plan(manifest, 36, 44)
    double.free_bytes = plan.total_bytes - 1
    mark = len(d.calls)
    with pytest.raises(DeviceMemoryError, match=r"^frames of 44x36 \(padded LR size\) need 0\.\d\d GiB .* of GPU memory but only 0\.\d\d GiB is free; free GPU memory"):
        Sampler(backend, manifest).upscale(random_frames(2, 36, 44), 2)
    assert not names(d.calls[mark:], "cuda.malloc")
    double.free_bytes = plan.total_bytes  # exactly enough
    run_clip(Sampler(backend, manifest), random_frames(2, 36, 44), 2)
    # a second Sampler on the same size counts what the backend already holds (buffers, scratch, contexts, graphs) as available
    again = backend.memory_plan(manifest, 36, 44)
    double.free_bytes = again.total_bytes - backend.held_device_bytes() - 1
    with pytest.raises(DeviceMemoryError):
        Sampler(backend, manifest).slots(36, 44)
    double.free_bytes += 1
    run_clip(Sampler(backend, manifest), random_frames(2, 36, 44), 2)


def test_frames_outside_the_engine_profile_are_refused_with_the_rebuild_command():
    manifest = synthetic_manifest()
    profiles = {g: Profile.static(36, 44) for g in GRAPH_NAMES}
    backend, _ = make_backend(profiles=profiles)
    with pytest.raises(InputError, match=r"frames padded to 48x40 are outside the flow engine's profile 44x36 \(static\).*--resolution 48x40 --force"):
        Sampler(backend, manifest).upscale(random_frames(2, 40, 48), 2)
    double = RecordingTrtCudaDouble()
    double.max_lr = (36, 44)
    backend, _ = make_backend(double)  # no profile known: TensorRT's own refusal is turned into a sentence
    with pytest.raises(InputError, match="does not accept .* --resolution 48x40"):
        Sampler(backend, manifest).upscale(random_frames(2, 40, 48), 2)


def test_engine_with_other_io_dtypes_is_refused():
    double = RecordingTrtCudaDouble(dtypes={("denoise", "z"): "HALF"})
    with pytest.raises(ManifestError, match="tensor z is float16, not float32 .* keep float32 inputs/outputs"):
        make_backend(double)


def test_new_buffers_are_zero_filled_and_reused_buffers_zeroed_again():
    backend, d = make_backend()
    a = backend.allocate("x", (1, 4, 8, 8))
    np.testing.assert_array_equal(backend.download(a), 0)
    backend.upload(a, np.ones((1, 4, 8, 8), np.float32))
    again = backend.allocate("x", (1, 4, 8, 8))
    assert again is a
    np.testing.assert_array_equal(backend.download(a), 0)
    bigger = backend.allocate("x", (1, 4, 8, 12))
    assert bigger.ptr != a.ptr and ("cuda.free", a.ptr) in d.calls and ("cuda.free_host", a.host) in d.calls
    with pytest.raises(ValueError, match="cannot upload"):
        backend.upload(bigger, np.ones((1, 4, 8, 8), np.float32))
    with pytest.raises(RuntimeError, match="buffer x was released"):
        backend.upload(a, np.ones((1, 4, 8, 8), np.float32))


def test_close_is_idempotent_and_complete_and_a_reopened_backend_works():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble(context_bytes=MIB, graph_bytes=MIB)
    frames = random_frames(3, 36, 44, seed=2)
    want = run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), frames, 3)
    for _ in range(2):  # open, run, close; then again in the same process
        backend, d = make_backend(double)
        sampler = Sampler(backend, manifest)
        assert_same(run_clip(sampler, frames, 3), want)
        sampler.close()  # what svsr-run and Upscaler.close() call
        assert not d.memory and not d.graphs and not d.execs and not d.streams and not d.events
        assert not any(c.alive for c in d.contexts)
        assert d.free_bytes == d.initial_free
        mark = len(d.calls)
        backend.close()
        assert d.calls[mark:] == []
        with pytest.raises(RuntimeError, match="the TensorRT backend is closed"):
            backend.allocate("x", (1,))
        with pytest.raises(RuntimeError, match="the TensorRT backend is closed"):
            backend.run("decode", {}, {})


# -- opening a build folder: records checked against this machine ---------------------------------
def test_open_build_folder_loads_checked_engines(tmp_path):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    backend = open_trt_backend(tmp_path, manifest, "auto", trt=double.trt, cuda=double.cuda)
    assert backend.loaded_graphs == OPENED_GRAPHS  # the statistics graphs load on demand; flow_x2 / flow_x1 were skipped (frames < 64 px)
    assert backend.profiles["denoise"] == Profile.static(36, 44) and "flow_x2" not in backend.profiles
    double.eager = {backend.stream}
    got = run_clip(Sampler(backend, manifest), random_frames(2, 36, 44), 2)
    want = run_clip(Sampler(NumpyKernelsBackendDouble(), manifest), random_frames(2, 36, 44), 2)
    assert_same(got, want)
    backend.close()


@pytest.mark.parametrize(
    "env, phrase",
    [
        (BuildEnvironment("10.13.0.35", H100.gpu_name, "9.0"), "was built with TensorRT 10.13.0.35 but this machine has TensorRT 11.4.0.106"),
        (BuildEnvironment(H100.tensorrt_version, "NVIDIA A100-SXM4-80GB", "8.0"), "was built for NVIDIA A100-SXM4-80GB .compute capability 8.0. but this machine has NVIDIA H100"),
    ],
)
def test_engines_from_another_machine_are_refused_with_the_command(tmp_path, env, phrase):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path), env=env, precision="fp16")
    for g in GRAPH_NAMES:
        manifest["graphs"][g]["typed"] = {"fp16": {"file": manifest["graphs"][g]["file"], "sha256": manifest["graphs"][g]["sha256"], "precision": "fp16"}}
    double = RecordingTrtCudaDouble()
    with pytest.raises(ManifestError) as info:  # fp16 fixed, not auto: the flow family's skipped flow_x2 / flow_x1 leave flow at fp16
        open_trt_backend(tmp_path, manifest, "fp16", trt=double.trt, cuda=double.cuda)
    message = str(info.value)
    assert phrase.replace(".", "") in message.replace(".", "") or re.search(phrase, message)
    assert message.endswith(f"rebuild it with: svsr-export --weights /ckpt/tiny --precision fp16 --out {tmp_path} --resolution 44x36 --force")
    assert message.count(".") <= 8 and "\n" not in message


def test_missing_changed_or_absent_engines_name_the_fix(tmp_path):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    with pytest.raises(ManifestError, match="has no fp16 TensorRT engine for the flow graph; build it with: svsr-export --weights /ckpt/tiny --precision fp16"):
        open_trt_backend(tmp_path, manifest, "fp16", trt=double.trt, cuda=double.cuda)
    plan = tmp_path / manifest["engines"]["guide_decode.fp32"]["file"]
    plan.write_bytes(b"plan guide_decode changed")
    with pytest.raises(ManifestError, match="guide_decode fp32 engine .* does not match its recorded sha256; rebuild it with: svsr-export"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    plan.unlink()
    with pytest.raises(ManifestError, match="is missing; rebuild it with"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    plan.write_bytes(b"plan guide_decode")
    manifest["graphs"]["decode"]["sha256"] = "1" * 64
    with pytest.raises(ManifestError, match="decode fp32 engine .* was built from another version of its ONNX graph"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)



def test_plan_hashes_are_cached_and_a_changed_plan_is_hashed_again_and_refused(tmp_path, monkeypatch):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    hashed: list[str] = []

    def counting_sha256(path):
        hashed.append(Path(path).name)
        return sha256_file(path)

    monkeypatch.setattr(trt_plans_mod, "sha256_file", counting_sha256)
    double = RecordingTrtCudaDouble()
    open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda).close()
    assert len(hashed) == len(manifest["engines"]) == len(GRAPH_NAMES) - 2  # every plan, the on-demand ones too (flow_x2 / x1 skipped)
    plan = tmp_path / manifest["engines"]["guide_decode.fp32"]["file"]
    cached = json.loads(hash_sidecar(plan).read_text())
    assert cached == {"file": plan.name, "size": plan.stat().st_size, "mtime_ns": plan.stat().st_mtime_ns, "sha256": manifest["engines"]["guide_decode.fp32"]["sha256"]}
    hashed.clear()
    open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda).close()
    assert hashed == []  # unchanged plans: the cached hashes
    plan.write_bytes(b"plan guide_decode, changed")  # new size and mtime
    with pytest.raises(ManifestError, match="guide_decode fp32 engine .* does not match its recorded sha256; rebuild it with: svsr-export"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    assert hashed == [plan.name]
    hashed.clear()
    plan.write_bytes(b"plan guide_decodX")  # same size as the recorded plan, other bytes; mtime moved on
    st = plan.stat()
    os.utime(plan, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ManifestError, match="does not match its recorded sha256"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    assert hashed == [plan.name]
    plan.write_bytes(b"plan guide_decode")  # the recorded bytes again: hashed once more, accepted, cached
    hash_sidecar(plan).write_text("not json")
    hashed.clear()
    open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda).close()
    assert hashed == [plan.name]


# -- the double and the backend use only real TensorRT / cuda-python names ------------------------
def _public(cls) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


def test_the_double_offers_only_the_declared_tensorrt_names():
    assert _public(EngineTestDouble) <= set(TRT_RUNTIME_API["ICudaEngine"])
    assert _public(ContextTestDouble) <= set(TRT_RUNTIME_API["IExecutionContext"])
    double = RecordingTrtCudaDouble()
    assert {n for n in vars(double.trt)} - {"__version__"} <= set(TRT_RUNTIME_API["tensorrt"])
    assert _public(double.trt.Runtime) <= set(TRT_RUNTIME_API["Runtime"])
    # the CUDA half has exactly CudaApi's methods (less the device queries the backend never calls)
    assert _public(CudaTestDouble) <= _public(CudaApi)


def test_every_tensorrt_runtime_name_exists_in_the_real_lean_bindings():
    trt = pytest.importorskip("tensorrt_lean_bindings", reason="install tensorrt-lean-cu13-bindings and tensorrt-lean-cu13-libs (dev extra)")
    assert trt.__version__.startswith("11.")
    missing = []
    for owner, attrs in TRT_RUNTIME_API.items():
        holder = trt if owner == "tensorrt" else getattr(trt, owner, None)
        if holder is None:
            missing.append(owner)
            continue
        missing += [f"{owner}.{a}" for a in attrs if not hasattr(holder, a)]
    assert not missing, f"not in tensorrt_lean_bindings {trt.__version__}: {missing}"
    # set_device_memory takes (ptr, size) and create_execution_context a strategy, as the backend calls them
    assert "memory" in trt.IExecutionContext.set_device_memory.__doc__ and "size" in trt.IExecutionContext.set_device_memory.__doc__
    assert "ExecutionContextAllocationStrategy" in trt.ICudaEngine.create_execution_context.__doc__
    # the scratch is sized by the context's need for the input shapes set on it
    assert "current input shapes" in trt.IExecutionContext.update_device_memory_size_for_shapes.__doc__


def test_cuda_api_calls_exist_in_cuda_python():
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    source = inspect.getsource(cuda_api)
    called = set(re.findall(r"\brt\.(cuda\w+)", source))
    assert {"cudaMalloc", "cudaMallocHost", "cudaMemcpyAsync", "cudaStreamBeginCapture", "cudaGraphLaunch", "cudaGetLastError"} <= called
    missing = sorted(n for n in called if not hasattr(runtime, n))
    assert not missing, f"not in cuda.bindings.runtime: {missing}"


def test_cuda_api_without_a_gpu_says_why():
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python is not installed")
    ok, why = cuda_api.cuda_device_status()
    if ok:
        pytest.skip(f"a GPU is present ({why})")
    assert "GPU" in why or "cuda-python" in why
    with pytest.raises(CudaError, match=r"CUDA call cudaSetDevice failed with cuda\w+ \("):
        CudaApi(0)


def test_host_view_writes_through_to_the_memory():
    import ctypes

    block = (ctypes.c_uint8 * 16)()
    view = CudaApi.host_view(None, ctypes.addressof(block), 16)  # type: ignore[arg-type]
    view[:] = np.arange(16, dtype=np.uint8)
    assert bytes(block) == bytes(range(16))


def test_try_end_capture_hands_back_the_graph_and_the_error_and_clears_it():
    """CudaApi.try_end_capture against a stand-in for cuda.bindings.runtime (no GPU needed)."""
    calls: list[str] = []

    class Err(int):
        name = "cudaErrorStreamCaptureUnjoined"

    class Graph(int):
        pass

    rt = types.SimpleNamespace(
        cudaGetErrorString=lambda err: (0, b"capture unjoined"),
        cudaGetLastError=lambda: calls.append("cudaGetLastError") or (0,),
    )
    api = CudaApi.__new__(CudaApi)
    api.rt = rt
    rt.cudaStreamEndCapture = lambda stream: (Err(900), Graph(77))
    graph, error = api.try_end_capture(5)
    assert graph == 77 and isinstance(error, CudaError) and calls == ["cudaGetLastError"]
    assert str(error) == "CUDA call cudaStreamEndCapture failed with cudaErrorStreamCaptureUnjoined (capture unjoined)."
    rt.cudaStreamEndCapture = lambda stream: (Err(901), None)  # an invalidated capture: no graph
    assert api.try_end_capture(5)[0] == 0
    rt.cudaStreamEndCapture = lambda stream: (0, Graph(78))
    assert api.try_end_capture(5) == (78, None)


def test_device_only_slot_buffers_get_no_pinned_staging():
    """guidance, the decoded image and the zero buffers never cross to the host: no pinned memory for them, and copies are refused."""
    backend, double = make_backend()
    manifest = synthetic_manifest()
    sampler = Sampler(backend, manifest)
    slots = sampler.slots(36, 44)
    pinned = [c[1] for c in double.calls if c[0] == "cuda.malloc_host"]
    device_only = [slots.image, slots.zero_guidance, slots.zero_history, slots.denoise_norm, slots.decode_norm, *(s.guidance for s in slots.sets)]
    assert {b.label for b in device_only} == DEVICE_ONLY and all(b.host == 0 for b in device_only)
    assert all(b.host for b in backend.buffers().values() if b.label not in DEVICE_ONLY)  # x0 among them: downloaded as history
    assert sum(pinned) == sum(b.nbytes for b in backend.buffers().values() if b.host)
    assert sum(b.nbytes for b in device_only) > 0.3 * sum(b.nbytes for b in backend.buffers().values())  # what it saves
    with pytest.raises(ValueError, match="device-only"):
        backend.upload(slots.image, np.zeros(slots.image.shape, np.float32))
    out = sampler.upscale(random_frames(3, 36, 44), num_inference_steps=2, noise=NumpyNoise(0))
    want = Sampler(NumpyKernelsBackendDouble(), manifest).upscale(random_frames(3, 36, 44), num_inference_steps=2, noise=NumpyNoise(0))
    assert all(np.array_equal(a, b) for a, b in zip(out, want))
    backend.close()


# -- lean (version-compatible) plans: loaded as trtexec loads --excludeLeanRuntime plans ---------
def _lean_manifest(tmp_path):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    manifest["engines"] = {k: {**v, "version_compatible": True, "lean": True} for k, v in manifest["engines"].items()}
    return manifest


def test_lean_plans_on_the_full_library_go_through_the_loaded_lean_runtime(tmp_path, monkeypatch):
    from svsr.device import tensorrt as trt_device

    monkeypatch.setattr(trt_device, "lean_library_path", lambda version: f"/libs/libnvinfer_lean.so.{version.split('.')[0]}")
    double = RecordingTrtCudaDouble()
    backend = open_trt_backend(tmp_path, _lean_manifest(tmp_path), "fp32", trt=double.trt, cuda=double.cuda, lean=False)
    loads = names(double.calls, "runtime.load_runtime", "runtime.deserialize_cuda_engine")
    assert loads[0] == ("runtime.load_runtime", "/libs/libnvinfer_lean.so.11") and len(loads) == 1 + len(OPENED_GRAPHS)  # loaded once, before any plan
    assert backend.runtime.lean_library == "/libs/libnvinfer_lean.so.11" and backend.runtime.engine_host_code_allowed is True
    backend.close()
    plain = open_trt_backend(tmp_path, write_engines(tmp_path, synthetic_manifest(tmp_path)), "fp32", trt=double.trt, cuda=double.cuda)
    assert names(double.calls, "runtime.load_runtime") == loads[:1]  # ordinary plans: the plain runtime
    plain.close()


def test_lean_plans_on_the_lean_runtime_are_deserialised_by_it_and_others_are_refused_with_lean_rebuild(tmp_path):
    double = RecordingTrtCudaDouble()
    backend = open_trt_backend(tmp_path, _lean_manifest(tmp_path), "fp32", trt=double.trt, cuda=double.cuda, lean=True)
    assert not names(double.calls, "runtime.load_runtime") and backend.runtime.engine_host_code_allowed is True
    backend.close()
    with pytest.raises(ManifestError) as info:
        open_trt_backend(tmp_path, write_engines(tmp_path, synthetic_manifest(tmp_path)), "fp32", trt=double.trt, cuda=double.cuda, lean=True)
    message = str(info.value)
    assert "is not version-compatible, and only TensorRT's lean runtime (11.4.0.106) is installed here" in message
    assert message.endswith(f"rebuild it with: svsr-export --weights /ckpt/tiny --precision fp32 --out {tmp_path} --resolution 44x36 --lean --force")


def test_the_backend_says_its_name_and_device():
    backend, _ = make_backend()
    assert (backend.name, backend.device) == ("trt", "cuda:0")
    backend.close()


# -- one engine verdict, and the chooser that asks it ------------------------------------------------
def test_engine_problems_judge_the_engines_the_loader_would_load(tmp_path):
    from svsr.contract.engine_records import MachineEnv
    from svsr.runtime.sampling import engine_problems

    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    here = MachineEnv(H100.tensorrt_version, False, H100.gpu_name, H100.compute_capability, "13.0")
    assert engine_problems(manifest, here) == {g: [] for g in GRAPH_NAMES}  # TensorRT runs here (flow_x2 / x1 skipped on purpose: no problem)
    built = {record["graph"] for record in manifest["engines"].values()}
    assert built == set(GRAPH_NAMES) - {"flow_x2", "flow_x1"}
    lean = engine_problems(manifest, MachineEnv(H100.tensorrt_version, True, H100.gpu_name, H100.compute_capability))
    assert all(lean[g][0].startswith("is not version-compatible") for g in built)
    l4 = engine_problems(manifest, MachineEnv(H100.tensorrt_version, False, "NVIDIA L4", "8.9"))
    assert all(l4[g] == [f"was built for {H100.gpu_name} (compute capability 9.0) but this machine has NVIDIA L4 (compute capability 8.9)"] for g in built)
    assert engine_problems(manifest, here, "fp16")["flow"] == ["has no fp16 engine"]


def test_open_sampler_returns_the_sampler_whose_backend_says_what_it_is(tiny_build):
    from svsr.contract.backends import ORT
    from svsr.runtime.sampling import open_sampler

    for backend in ("ort", ORT(threads=1), "auto"):  # auto: the tiny build has no engines
        sampler = open_sampler(tiny_build, backend=backend)
        assert isinstance(sampler, Sampler) and (sampler.backend.name, sampler.backend.device) == ("ort", "cpu")
        sampler.close()
    with pytest.raises(InputError, match="unknown backend 'onnx'"):
        open_sampler(tiny_build, backend="onnx")


# -- tiles: region copies and zero fills on the compute stream, captured with the launches ---------------
def test_region_copies_are_one_pitched_copy_per_plane_and_whole_planes_one_block():
    from svsr.runtime.sampling.trt_device import region_copies

    backend, d = make_backend()
    whole, tile = backend.allocate("whole", (1, 4, 40, 48)), backend.allocate("tile", (1, 4, 32, 32))
    copies = region_copies(whole, tile, (8, 16), (0, 0), (32, 32))
    assert len(copies) == 4 and {(c.dpitch, c.spitch, c.width, c.height) for c in copies} == {(32 * 4, 48 * 4, 32 * 4, 32)}
    assert copies[1].src == whole.ptr + ((40 + 8) * 48 + 16) * 4 and copies[1].dst == tile.ptr + 32 * 32 * 4
    other = backend.allocate("other", (1, 4, 40, 48))
    (block,) = region_copies(whole, other, (0, 0), (0, 0), (40, 48))
    assert (block.width, block.height) == (48 * 4, 4 * 40)
    with pytest.raises(ValueError, match="does not fit buffer tile"):
        region_copies(whole, tile, (0, 0), (8, 8), (32, 32))
    with pytest.raises(ValueError, match="leading dims and the dtype must agree"):
        region_copies(backend.allocate("rgb", (1, 3, 40, 48)), tile, (0, 0), (0, 0), (32, 32))
    backend.close()


@pytest.mark.parametrize("first", ["compute", "copy"])
def test_copies_zero_fills_and_blends_run_on_the_compute_stream_and_replay_from_one_capture(first):
    backend, d = make_backend(first=first)
    x = np.arange(4 * 40 * 48, dtype=np.float32).reshape(1, 4, 40, 48)
    whole, tile = backend.allocate("whole", x.shape), backend.allocate("tile", (1, 4, 32, 32))
    acc, out, weight = backend.allocate("acc", (1, 4, 32, 32)), backend.allocate("out", (1, 4, 32, 32)), backend.allocate("w", (1, 1, 32, 32))
    backend.upload(whole, x)
    backend.upload(weight, np.full(weight.shape, 0.5, np.float32))

    def program():
        backend.zero(acc)
        backend.copy_region(whole, tile, (8, 16), (0, 0), (32, 32))
        backend.run("blend", {"acc": acc, "tile": tile, "weight": weight}, {"out": out})
        backend.copy_region(out, whole, (0, 0), (0, 0), (32, 32))

    want = x.copy()
    for _ in range(3):
        backend.launch("tiles", program)
        want[..., :32, :32] = want[..., 8:40, 16:48] * np.float32(0.5)
    np.testing.assert_array_equal(backend.download(whole), want)  # the upload before was waited for, in either stream order
    assert backend.capture_report()["captured_keys"] == ["tiles"] and len(names(d.calls, "cuda.graph_launch")) == 2
    moves = names(d.calls, "cuda.memcpy_2d_dtod_async", "cuda.memset_async")
    assert all(c[-1] == backend.stream for c in moves if c[0] == "cuda.memcpy_2d_dtod_async")
    assert [c[1] for c in names(d.calls, "cuda.memset_async") if c[-1] == backend.stream] == [acc.ptr] * 2  # eager run + capture
    # a replay that moves another window is refused, naming the buffers
    with pytest.raises(ProgramBindingError, match=r"copy_region of whole, tile window \(\(8, 16\)"):
        backend.launch("tiles", lambda: (backend.zero(acc), backend.copy_region(whole, tile, (0, 0), (0, 0), (32, 32))))
    # freeing a buffer a program only copies into drops that program too
    backend.allocate("whole", (1, 4, 44, 48))
    assert backend.capture_report()["captured"] == 0 and not d.execs
    backend.close()
    assert not d.memory


def test_a_tiled_clip_through_the_backend_equals_the_kernels_run_directly():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    frames = random_frames(3, 64, 72, seed=5)
    options = dict(num_inference_steps=2, tile=(32, 40), tile_overlap=8)
    got = Sampler(backend, manifest).upscale(frames, noise=NumpyNoise(1), **options)
    assert_same(got, Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, noise=NumpyNoise(1), **options))
    assert names(d.calls, "cuda.memcpy_2d_dtod_async") and backend.capture_report()["failed"] == []
    from svsr.contract.tiles import plan_tiles

    plan = backend.last_plan
    assert plan is not None and plan.tile == (32, 40) and plan.tiles == len(plan_tiles(64, 72, (32, 40), 8).tiles) == 6
    measured = backend.measured_overhead_bytes()
    assert (measured["contexts"], measured["programs"]) == (plan.contexts, plan.programs)  # the plan counted what the run made
    backend.close()


# tiled contexts, one per distinct binding: flow 2 and warp 2 (whole frames, per slot set), guide_decode 1,
# denoise 2 (without and with TCM) and decode 1 on the one set of tile buffers, and blend 3: z_out and x0
# (latent) and one 4x binding (guidance image and final RGB), each reading its scale's one weight tile;
# the statistics graphs on whole frames: decode_stats 4 (either set's x0, either final decode input),
# denoise_stats 3 (set 0 without TCM, both sets with), whatever the tile count
TILED_CONTEXTS = 2 + 2 + 1 + 2 + 1 + 3 + 4 + 3
TILED_PROGRAMS = 3 + 2  # the three frame-steps and the two tiled decodes


@pytest.mark.parametrize("tile, count", [((32, 40), 6), ((32, 32), 9)])
def test_blend_contexts_and_pinned_staging_do_not_grow_with_the_tile_count(tile, count):
    from svsr.contract.tiles import plan_tiles

    manifest = synthetic_manifest()
    backend, d = make_backend()
    frames = random_frames(3, 64, 72, seed=7)
    options = dict(num_inference_steps=2, tile=tile, tile_overlap=8)
    got = Sampler(backend, manifest).upscale(frames, noise=NumpyNoise(2), **options)
    assert_same(got, Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, noise=NumpyNoise(2), **options))
    assert len(plan_tiles(64, 72, tile, 8).tiles) == count
    executed = [c for c in d.contexts if c.executed and c.alive]
    assert len(executed) == TILED_CONTEXTS and sum(c.graph == "blend" for c in executed) == 3
    assert binding_counts(manifest, plan_tiles(64, 72, tile, 8)) == (TILED_CONTEXTS, TILED_PROGRAMS)
    assert backend.capture_report()["captured"] == TILED_PROGRAMS
    # every blend reads the shared weight tile of its scale; each tile's own weights are device-only
    held = backend.buffers()
    weights = {label for label in held if re.fullmatch(r"tile_(pixel_)?weight\d+", label)}
    assert len(weights) == 2 * count and not any(held[label].host for label in weights)
    blend_weights = {a for c in executed if c.graph == "blend" for name, a in c.addresses.items() if name == "weight"}
    assert blend_weights == {held["tile_blend_weight"].ptr, held["tile_blend_pixel_weight"].ptr}
    # the tile buffers never cross to the host but the two weight tiles, which stage the per-tile weights' uploads
    assert {label for label, b in held.items() if label.startswith("tile_") and b.host} == {"tile_blend_weight", "tile_blend_pixel_weight"}
    assert {b.label for b in held.values() if b.host} == {b for b in SLOT_LABELS if b not in DEVICE_ONLY} | {"tile_blend_weight", "tile_blend_pixel_weight"}
    backend.close()


def test_tile_auto_asks_the_backend_for_its_free_memory():
    from svsr.runtime.sampling.memory_plan import choose_tile

    backend, d = make_backend()
    d.free_bytes = 40 * GIB
    chosen, reason = choose_tile(synthetic_manifest(), 64, 72, backend=backend)
    assert chosen is None and reason.startswith("untiled 72x64: needs ") and "of 40.0 GiB GPU memory free" in reason
    backend.close()
