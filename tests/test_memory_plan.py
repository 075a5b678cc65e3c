"""The estimated memory plans (TensorRT device, ONNX Runtime host) and ``--tile auto``: pure arithmetic, no GPU.

The manifest below carries the ``full`` preset's FLOPs fit (field notes: VAE decode 15.7 TFLOP at LR
320x180 of which the attention is 6.8; UNet + TCM 5.6) and float32 graph sizes (benchmarks/README.md);
the schema-3 graphs are the same networks (flow_x2 / flow_x1: RAFT; denoise_stats: UNet + TCM;
decode_stats: the VAE decoder), the statistics graphs on the frame subsampled by 2.
"""

from __future__ import annotations

import pytest

from svsr.contract.tiles import plan_tiles
from svsr.runtime.sampling.memory_plan import (
    BASE_RESERVE,
    BLEND_CONTEXT_ESTIMATE,
    GIB,
    DeviceMemoryError,
    activation_bytes,
    aligned,
    choose_flow_scale,
    choose_tile,
    engine_input_shapes,
    estimate_plan,
    planned_buffers,
    tile_advice,
)


def _graph(quadratic: float, size: int, linear: float = 1.0) -> dict:
    return {"flops": {"per_call": 1, "lr_height": 36, "lr_width": 44, "linear": linear, "quadratic": quadratic}, "size_bytes": size}


FULL = {
    "latent_channels": 4,
    "graphs": {
        "flow": _graph(32, 21_000_000, 25.3e6),
        "flow_x2": _graph(32 / 256, 21_000_000, 25.3e6 / 4),
        "flow_x1": _graph(32 / 4096, 21_000_000, 25.3e6 / 16),
        "denoise": _graph(3, 2_722_000_000, 97.2e6),
        "denoise_stats": _graph(3 / 16, 2_722_000_000, 97.2e6 / 4),
        "guide_decode": _graph(2048, 132_000_000, 154.5e6),
        "decode_stats": _graph(2048 / 256, 132_000_000, 154.5e6 / 16),
        "warp": _graph(0, 0),
        "decode": _graph(2048, 132_000_000, 154.5e6),
        "blend": _graph(0, 0),
    },
    "norm_stats": {"denoise_stats": {"size": 5120, "stride": 2}, "decode_stats": {"size": 1152, "stride": 2}},
}
UNTILED_WEIGHTS = 2_722_000_000 + 2 * 132_000_000 + 21_000_000  # flow, denoise, guide_decode, decode (float32)


def test_the_vae_attention_grows_with_the_square_of_the_tile_area_and_is_held_unless_fused():
    small, large = activation_bytes(FULL, "decode", 64, 64, "fp16"), activation_bytes(FULL, "decode", 128, 128, "fp16")
    p = 128 * 128
    assert large - 4 * small == pytest.approx(2 * 2 * (p**2 - 4 * (p // 4) ** 2), rel=1e-9)  # two fp16 copies of (hw)^2 scores
    assert activation_bytes(FULL, "decode", 128, 128, "fp32") > 1.9 * large  # float32 scores: twice the bytes
    # the UNet's heads of 128 are fused on TensorRT: no quadratic term there, but ONNX Runtime on a CPU holds them
    fused, unfused = activation_bytes(FULL, "denoise", 256, 256, "fp32"), activation_bytes(FULL, "denoise", 256, 256, "fp32", fused=False)
    assert fused == 4096 * 256 * 256 * 4 and unfused > fused
    # RAFT's correlation on the 4x frames: 0.83 GB at a 1280x720 output (issue 19), x 4/3 for its pyramid
    assert activation_bytes(FULL, "flow", 180, 320) - 1024 * 180 * 320 * 4 == pytest.approx((160 * 90) ** 2 * 4 * 4 / 3, rel=1e-6)
    assert activation_bytes(FULL, "flow", 180, 320, flow_scale=2) < activation_bytes(FULL, "flow", 180, 320) / 10


def test_an_attention_width_recorded_in_the_manifest_replaces_the_assumed_one():
    tiny = {**FULL, "graphs": {**FULL["graphs"], "decode": _graph(128, 1)}}
    recorded = {**FULL, "graphs": {**FULL["graphs"], "decode": {**_graph(128, 1), "flops": {**_graph(128, 1)["flops"], "attention_width": 32}}}}
    base = 8192 * 64 * 64 * 4
    assumed, told = activation_bytes(tiny, "decode", 64, 64, fused=False), activation_bytes(recorded, "decode", 64, 64, fused=False)
    assert told - base == 2 * 4 * (64 * 64) ** 2 and assumed - base == (told - base) // 16
    assert activation_bytes(recorded, "decode", 64, 64) == base  # a head of 32 channels is fused on TensorRT


def test_tiled_graphs_are_planned_at_the_tile_and_flow_and_warp_at_the_frame():
    shapes = engine_input_shapes(FULL, 360, 640, plan_tiles(360, 640, (128, 128)))
    assert shapes["denoise"]["z"] == (1, 4, 128, 128) and shapes["denoise"]["guidance"] == (1, 3, 512, 512)
    assert shapes["guide_decode"]["x0"] == (1, 4, 128, 128) and shapes["decode"]["z"] == (1, 4, 128, 128)
    assert shapes["flow"]["frame"] == (1, 3, 360, 640) and shapes["warp"]["image"] == (1, 3, 1440, 2560)
    assert shapes["blend"]["acc"] == (1, 3, 512, 512) and shapes["blend"]["weight"] == (1, 1, 512, 512)
    assert engine_input_shapes(FULL, 360, 640)["decode"]["z"] == (1, 4, 360, 640)


def test_buffers_grow_linearly_with_the_frame_and_tiles_add_their_own_and_their_weights():
    def total(h, w, tile=None):  # the frame-sized buffers (the step's scalars left out)
        return sum(b.nbytes for b in planned_buffers(FULL, h, w, plan_tiles(h, w, tile) if tile else None) if len(b.shape) == 4)

    assert total(360, 640) == 4 * total(180, 320)  # whole-frame buffers: linear in the area
    layout = plan_tiles(360, 640, (128, 128))
    extra = total(360, 640, (128, 128)) - total(360, 640)
    weights = len(layout.tiles) * 17 * 128 * 128 * 4
    assert weights < extra < weights + 40 * 16 * 128 * 128 * 4  # per-tile buffers (a few 4x tiles) + every tile's weights
    shared = {b.label: b.shape for b in planned_buffers(FULL, 360, 640, layout)}
    assert shared["tile_weight"] == (1, 1, 128, 128) and shared["tile_weight4"] == (1, 1, 512, 512)  # what every blend reads
    assert {b.label for b in planned_buffers(FULL, 64, 64, history=True)} >= {"x0_history0", "x0_history1"}


def test_a_tile_cuts_the_plan_from_the_square_of_the_frame_area_to_linear():
    untiled = [estimate_plan(FULL, h, w, None).total_bytes for h, w in ((180, 320), (360, 640))]
    tiled = [estimate_plan(FULL, h, w, (128, 128), flow_scale=1) for h, w in ((128, 224), (180, 320))]
    assert untiled[1] > 10 * untiled[0]  # 4x the area, > 10x the memory: the VAE's attention
    # the tile's activations (the flow on x1 frames is smaller), until the statistics graph's VAE attention on the frame
    # subsampled by 2 (a 16th of the untiled one's) outgrows them: at 360x640 (test below)
    assert tiled[1].scratch_bytes == tiled[0].scratch_bytes
    assert 1.5 * tiled[0].slot_bytes < tiled[1].slot_bytes < 2.0 * tiled[0].slot_bytes  # buffers: linear in the area (2x) plus the fixed tile buffers
    plan = estimate_plan(FULL, 360, 640, (128, 128))
    assert plan.tile == (128, 128) and plan.tiles == len(plan_tiles(360, 640, (128, 128)).tiles) == 24
    assert plan.base_reserve_bytes == BASE_RESERVE + 3 * BLEND_CONTEXT_ESTIMATE  # the blend contexts: three, whatever the tile count
    many = estimate_plan(FULL, 720, 1280, (64, 64), flow_scale=1)
    assert many.tiles > 10 * plan.tiles and many.base_reserve_bytes == plan.base_reserve_bytes
    assert "in 24 tiles of 128x128" in plan.what() and "TensorRT scratch" in plan.describe()
    loaded = estimate_plan(FULL, 360, 640, (128, 128), engines_loaded=True)
    # fp16 weights of what a tiled run loads: the statistics graphs too (a second UNet + TCM, a second VAE decoder)
    assert plan.engine_bytes - loaded.engine_bytes == (UNTILED_WEIGHTS + 2_722_000_000 + 132_000_000) // 2
    untiled_loaded = estimate_plan(FULL, 360, 640, (128, 128), engines_loaded=("flow", "denoise", "guide_decode", "warp", "decode", "blend"))
    assert untiled_loaded.engine_bytes == (2_722_000_000 + 132_000_000) // 2  # an untiled backend: the statistics engines still to load
    assert estimate_plan(FULL, 360, 640).engine_bytes == UNTILED_WEIGHTS // 2  # untiled: no statistics graphs
    assert plan.scratch_bytes == aligned(activation_bytes(FULL, "flow", 360, 640, "fp16"), 256)  # the whole-frame flow is the largest


def test_the_statistics_graphs_are_their_networks_on_the_pooled_frame_and_count_only_when_tiled():
    for graph, network, pool in (("denoise_stats", "denoise", 2), ("decode_stats", "decode", 2)):
        for fused in (True, False):
            stats, net = activation_bytes(FULL, graph, 360, 640, "fp16", fused=fused), activation_bytes(FULL, network, 360 // pool, 640 // pool, "fp16", fused=fused)
            assert net < stats < net + 60 * 360 * 640 * 2  # plus the pooled copies of its inputs
    # the VAE decoder's attention on the whole frame subsampled by 2: at a large frame the statistics graph is what the tiles do not cut
    big = estimate_plan(FULL, 720, 1280, (128, 128), flow_scale=1)
    assert big.scratch_bytes == aligned(activation_bytes(FULL, "decode_stats", 720, 1280, "fp16"), 256) > 10 * GIB
    shapes = engine_input_shapes(FULL, 360, 640, plan_tiles(360, 640, (128, 128)))
    assert shapes["denoise_stats"]["guidance"] == (1, 3, 1440, 2560) and shapes["decode_stats"]["latent"] == (1, 4, 360, 640)
    assert shapes["denoise"]["norm_stats"] == (1, 5120) and shapes["decode"]["norm_stats"] == shapes["guide_decode"]["norm_stats"] == (1, 1152)
    labels = {b.label: b.shape for b in planned_buffers(FULL, 64, 64)}
    assert labels["denoise_norm"] == (1, 5120) and labels["decode_norm"] == (1, 1152) and labels["shared_norm"] == (1,)
    # a flow graph at its own scale is the x4 RAFT's model at that scale
    assert activation_bytes(FULL, "flow_x2", 180, 320) == activation_bytes(FULL, "flow", 180, 320, flow_scale=2)
    assert activation_bytes(FULL, "flow_x1", 180, 320) == activation_bytes(FULL, "flow", 180, 320, flow_scale=1)


def test_auto_stays_untiled_where_the_frame_fits_and_says_so():
    choice = choose_tile(FULL, 180, 320, 75 * GIB, flow_scale=4)
    assert choice.tile is None and choice.reason.startswith("untiled 320x180: needs ")
    assert choice.reason.endswith("of 75.0 GiB GPU memory free")


def test_auto_picks_the_largest_tile_that_fits():
    budget = 75 * GIB
    choice = choose_tile(FULL, 540, 960, budget, flow_scale=2)
    th, tw = choice.tile
    assert th % 4 == 0 and tw % 4 == 0 and min(th, tw) >= 32 and choice.plan.total_bytes <= budget
    bigger = (min(th + 4, 540), min(tw + 4, 960))
    assert estimate_plan(FULL, 540, 960, bigger, flow_scale=2).total_bytes > budget  # the next size up does not fit
    assert choice.reason.startswith(f"tiles of {th}x{tw} (") and "untiled 960x540 would need" in choice.reason
    assert "\n" not in choice.reason


def test_a_frame_that_fits_nowhere_is_one_sentence_naming_the_size_the_need_and_the_fix():
    with pytest.raises(DeviceMemoryError) as info:
        choose_tile(FULL, 540, 960, 75 * GIB)
    message = str(info.value)
    assert message.startswith("frames of 960x540 (padded LR size) need ") and "even in the smallest tiles (--tile 36x36)" in message
    # a smaller flow scale fits: the sentence names the tile and scale that do
    assert "RAFT on the whole x4 frame alone takes " in message and message.count(". ") == 0 and "\n" not in message
    fits = choose_flow_scale(FULL, 540, 960, 75 * GIB)
    assert message.endswith(f"tiles do not cut it, so use --tile {fits.tile[0]}x{fits.tile[1]} --flow-scale {fits.flow_scale} "
                            f"({fits.plan.total_bytes / GIB:.2f} GiB).")  # fmt: skip
    with pytest.raises(DeviceMemoryError, match="only 0.50 GiB of GPU memory is free; use smaller frames"):
        choose_tile(FULL, 180, 320, GIB // 2, flow_scale=1)
    assert tile_advice(FULL, 540, 960, 75 * GIB, flow_scale=2).startswith("--tile ")
    assert tile_advice(FULL, 540, 960, 75 * GIB).endswith(f"--flow-scale {fits.flow_scale} fits ({fits.plan.total_bytes / GIB:.2f} GiB)")


def test_the_cpu_plan_counts_one_arena_per_session_at_its_peak_and_the_weights():
    each = estimate_plan(FULL, 96, 128, backend="ort")
    shared = estimate_plan(FULL, 96, 128, backend="ort", shared_arena=True)
    vae = activation_bytes(FULL, "decode", 96, 128, fused=False)
    assert each.device == "host" and each.contexts == each.programs == 0
    assert each.scratch_bytes - shared.scratch_bytes >= vae  # guide_decode and decode hold the attention each
    assert each.engine_bytes == UNTILED_WEIGHTS  # float32 weights of the sessions an untiled run opens
    # the measurements (one frame, one step: the guide never runs) lie within 20% of the plan less the guide's arena
    for (h, w), measured in (((96, 128), 4.9 * GIB), ((160, 224), 14.3 * GIB)):
        plan = estimate_plan(FULL, h, w, backend="ort")
        without_guide = plan.total_bytes - activation_bytes(FULL, "guide_decode", h, w, fused=False)
        assert 0.8 * measured < without_guide < 1.2 * measured
    choice = choose_tile(FULL, 180, 320, 16 * GIB, backend="ort", flow_scale=2)
    assert choice.tile is not None and "GiB memory budget" in choice.reason


# -- --flow-scale auto ---------------------------------------------------------------------------------
def test_auto_flow_scale_keeps_4_where_a_tile_fits_at_4():
    choice = choose_flow_scale(FULL, 360, 640, 24 * GIB)
    assert choice.flow_scale == 4 and choice.flow_reason is None and choice.tile is not None
    assert (choice.tile, choice.reason) == tuple(choose_tile(FULL, 360, 640, 24 * GIB, flow_scale=4))  # tiles first, the flow kept


def test_auto_flow_scale_takes_the_largest_smaller_scale_where_no_tile_fits_at_4_and_says_why():
    choice = choose_flow_scale(FULL, 540, 960, 75 * GIB)
    with pytest.raises(DeviceMemoryError):
        choose_tile(FULL, 540, 960, 75 * GIB, flow_scale=4)
    if choice.flow_scale == 1:  # then 2 did not fit either
        with pytest.raises(DeviceMemoryError):
            choose_tile(FULL, 540, 960, 75 * GIB, flow_scale=2)
    assert choice.flow_scale in (2, 1) and choice.plan.total_bytes <= 75 * GIB
    assert choice.flow_reason.startswith("at flow scale 4 the frame needs ") and "even in the smallest tiles of 75.0 GiB GPU memory free" in choice.flow_reason
    assert "RAFT on the whole x4 frame alone" in choice.flow_reason and "\n" not in choice.flow_reason


def test_auto_flow_scale_for_a_given_tile_and_untiled_and_the_sizes_raft_accepts():
    untiled = choose_flow_scale(FULL, 180, 320, 75 * GIB, tile=None)
    assert untiled.tile is None and untiled.flow_scale == 4
    # at 360x640 untiled, RAFT's x4 correlation (16x the area of x2, 256x the scores) is what does not fit 16 GiB
    assert estimate_plan(FULL, 360, 640, None, flow_scale=4).total_bytes > 16 * GIB
    fixed = choose_flow_scale(FULL, 360, 640, 18 * GIB, tile=(128, 128))
    assert fixed.tile == (128, 128) and fixed.flow_scale < 4 and fixed.flow_reason.startswith("at flow scale 4 the frame needs ")
    assert "in tiles of 128x128" in fixed.flow_reason
    # frames under 64 px per side: RAFT at x2 would see < 128 px, so auto never tries 2 (nor 1) there
    with pytest.raises(DeviceMemoryError) as refused:
        choose_flow_scale(FULL, 60, 200, 1 * GIB // 64, tile=None)
    assert "even at --flow-scale 4" in str(refused.value) and str(refused.value).count(". ") == 0


def test_nothing_fits_at_any_flow_scale_is_one_sentence():
    with pytest.raises(DeviceMemoryError) as refused:
        choose_flow_scale(FULL, 1080, 1920, 2 * GIB)
    message = str(refused.value)
    assert message.startswith("frames of 1920x1080 (padded LR size) need ") and "--flow-scale 1)" in message
    assert message.endswith("use smaller frames, fp16 engines or a machine with more memory.") and "\n" not in message
