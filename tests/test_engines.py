"""Engine building decided in plain Python: profiles, cache keys, build records, mismatch errors, the build flow.

The build flow runs against RecordingTrtBuilderDouble (tests/support/trt.py), a test double of the
TensorRT names the builder uses and of polygraphy's loaders, on schema-3 build folders of real, tiny
ONNX files (tests/support/engine_builds.py); the TensorRT names it offers are checked
against the real TensorRT 11 wheels (runtime names by import of `tensorrt_lean_bindings`, the others
in the string table of `tensorrt-cu13-bindings`, which cannot be imported without NVIDIA's
libraries) and the polygraphy arguments against the installed polygraphy.
"""

from __future__ import annotations

import importlib.util
import json
import re
import types
from pathlib import Path

import pytest

from svsr.engines import builder as builder_mod
from svsr.engines.builder import TRT_BUILDER_API, EngineBuildError, build_engines, tensorrt_build_available, timing_cache_path
from svsr.engines.polygraphy_build import POLYGRAPHY_API, strongly_typed_flag
from svsr.contract.profiles import Profile, parse_batch, parse_size
from svsr.contract.engine_records import (
    BuildEnvironment,
    cache_key,
    check_record,
    make_record,
    plan_filename,
    rebuild_command,
    validate_engines,
    validate_record,
)
from svsr.contract.errors import InputError, ManifestError, MissingDependencyError
from svsr.contract.graphs import GRAPH_NAMES
from svsr.contract.precision import Precision
from svsr.contract.manifest import sha256_file, validate_manifest
from tests.support.engine_builds import STATS, add_typed_graph, engine_build_manifest, onnx_reading_parser_double, write_tiny_onnx
from tests.support.trt import H100, GpuQueryDouble, RecordingTrtBuilderDouble

REPO = Path(__file__).resolve().parents[1]


# -- profiles -------------------------------------------------------------------------------------
def test_sizes_are_width_by_height_and_padded_to_multiples_of_4():
    assert parse_size("320x180") == (180, 320)
    assert parse_size("318X178") == (180, 320)
    assert parse_size(" 33 x 32 ") == (32, 36)
    for bad, phrase in [("320", "is not a size"), ("320x180x3", "is not a size"), ("31x200", "too small"), ("axb", "is not a size")]:
        with pytest.raises(InputError, match=phrase):
            parse_size(bad, "--min")
    assert parse_batch("2") == (2, 2, 2) and parse_batch(1) == (1, 1, 1) and parse_batch("1:2:4") == (1, 2, 4)
    for bad in ("0", "4:2:1", "1:2", "x"):
        with pytest.raises(InputError, match="--batch"):
            parse_batch(bad)


def test_profiles_from_cli_options():
    static = Profile.from_args(resolution="320x180")
    assert static == Profile((180, 320), (180, 320), (180, 320)) and static.is_static
    ranged = Profile.from_args(min="256x144", max="640x360")
    assert (ranged.min, ranged.opt, ranged.max) == ((144, 256), (360, 640), (360, 640)) and not ranged.is_static
    assert Profile.from_args(min="256x144", opt="320x180", max="640x360", batch="1:2:4").opt == (180, 320)
    with pytest.raises(InputError, match="either --resolution WxH .* not both"):
        Profile.from_args(resolution="320x180", max="640x360")
    with pytest.raises(InputError, match="engines need a target size: give --resolution WxH"):
        Profile.from_args(min="256x144")
    with pytest.raises(InputError, match="heights are not ordered .* --min <= --opt <= --max"):
        Profile.from_args(min="256x360", max="640x144")
    with pytest.raises(InputError, match="multiples of 4"):
        Profile((180, 322), (180, 322), (180, 322))


def test_profile_shapes_follow_the_graphs_symbolic_dims():
    static = Profile.static(180, 320)
    denoise = static.input_shapes("denoise", STATS)
    # tcm_scale, timestep, step_coeffs and shared_norm are fixed in the graph
    assert list(denoise) == ["z", "lr", "guidance", "noise", "x0_history", "norm_stats"]
    assert denoise["z"] == ((1, 4, 180, 320),) * 3
    assert denoise["guidance"] == ((1, 3, 720, 1280),) * 3
    assert denoise["norm_stats"] == ((1, STATS["denoise_stats"]),) * 3  # the checkpoint's statistics length, batch symbolic
    assert static.input_shapes("flow")["previous"][0] == (1, 3, 180, 320)
    assert static.input_shapes("warp")["flow"][2] == (1, 2, 720, 1280)
    assert static.input_shapes("warp")["image"][0] == (1, 3, 720, 1280)
    assert static.input_shapes("guide_decode", STATS) == {"x0": ((1, 4, 180, 320),) * 3, "norm_stats": ((1, 16),) * 3}
    assert list(static.input_shapes("decode", STATS)) == ["z", "norm_stats"]
    assert list(static.input_shapes("blend")) == ["acc", "tile", "weight"]
    # the statistics graphs take the whole frame (they pool inside): frame sizes, no norm_stats input
    assert static.input_shapes("denoise_stats") == {
        "z": ((1, 4, 180, 320),) * 3, "lr": ((1, 3, 180, 320),) * 3, "guidance": ((1, 3, 720, 1280),) * 3,
    }  # fmt: skip
    assert static.input_shapes("decode_stats") == {"latent": ((1, 4, 180, 320),) * 3}
    # a graph with a norm_stats input needs the checkpoint's lengths: a guessed one would build an engine no run can feed
    for graph in ("denoise", "guide_decode", "decode"):
        with pytest.raises(ValueError, match="statistics length"):
            static.input_shapes(graph)
    ranged = Profile((144, 256), (180, 320), (360, 640), batch=(1, 2, 4))
    lo, mid, hi = ranged.input_shapes("warp")["flow"]
    assert (lo, mid, hi) == ((1, 2, 576, 1024), (2, 2, 720, 1280), (4, 2, 1440, 2560))
    assert ranged.input_shapes("denoise", STATS)["norm_stats"] == ((1, 24), (2, 24), (4, 24))
    assert ranged.covers(1, 180, 320) and ranged.covers(4, 360, 640)
    assert not ranged.covers(5, 180, 320) and not ranged.covers(1, 364, 320) and not ranged.covers(1, 180, 252)
    assert static.covers(1, 180, 320) and not static.covers(1, 184, 320)
    assert ranged.shapes_json("decode", STATS) == {
        "z": {"min": [1, 4, 144, 256], "opt": [2, 4, 180, 320], "max": [4, 4, 360, 640]},
        "norm_stats": {"min": [1, 16], "opt": [2, 16], "max": [4, 16]},
    }


def test_smaller_flow_scales_raise_their_minimum_or_are_skipped_with_the_reason():
    """flow_x2 / flow_x1 see the LR frames at x2 / x1 and RAFT needs 128 px there: 64 / 128 LR px per side."""
    ranged = Profile((48, 64), (100, 200), (360, 640))
    assert ranged.input_shapes("flow")["frame"] == ((1, 3, 48, 64), (1, 3, 100, 200), (1, 3, 360, 640))
    assert ranged.input_shapes("flow_x2")["frame"] == ((1, 3, 64, 64), (1, 3, 100, 200), (1, 3, 360, 640))
    # the minimum raised to 128 per side, and the opt with it where it was below
    assert ranged.input_shapes("flow_x1")["previous"] == ((1, 3, 128, 128), (1, 3, 128, 200), (1, 3, 360, 640))
    assert ranged.frame_sizes("flow_x1") == ((128, 128), (128, 200), (360, 640))
    assert all(ranged.skip_reason(g) is None for g in GRAPH_NAMES)
    # the other graphs keep the profile's smallest frame
    assert ranged.input_shapes("decode_stats")["latent"][0] == (1, 4, 48, 64)
    small = Profile((36, 44), (36, 44), (100, 100))
    assert small.skip_reason("flow_x2") is None and small.input_shapes("flow_x2")["frame"][0] == (1, 3, 64, 64)
    assert small.skip_reason("flow_x1") == (
        "RAFT at --flow-scale 1 needs frames of at least 128 px per side and the profile's largest frame is 100x100, "
        "so no frame it covers runs at that flow scale"
    )
    with pytest.raises(InputError, match="no flow_x1 engine is built for 44x36..100x100 .*: RAFT at --flow-scale 1 needs"):
        small.input_shapes("flow_x1")
    tiny = Profile.static(36, 44)
    assert [g for g in GRAPH_NAMES if tiny.skip_reason(g)] == ["flow_x2", "flow_x1"]
    assert "at least 64 px per side" in tiny.skip_reason("flow_x2")
    # one side long enough is not enough: RAFT needs both
    assert Profile.static(128, 640).skip_reason("flow_x1") is None and Profile.static(124, 640).skip_reason("flow_x1") is not None


def test_profile_round_trips_through_json_and_cli_args():
    for profile in (Profile.static(180, 320), Profile((144, 256), (180, 320), (360, 640), batch=(1, 2, 4)), Profile.static(36, 44, batch=2),
                    Profile((144, 256), (180, 320), (360, 640), tile=(128, 96))):
        assert Profile.from_json(json.loads(json.dumps(profile.to_json()))) == profile
        args = profile.cli_args()
        options = dict(zip(args[::2], args[1::2]))
        assert Profile.from_args(**{k.lstrip("-"): v for k, v in options.items()}) == profile
    assert Profile.static(180, 320).cli_args() == ["--resolution", "320x180"]
    assert Profile.static(180, 320).describe() == "320x180 (static), batch 1"
    assert Profile((144, 256), (180, 320), (360, 640), (1, 2, 4)).describe() == "256x144..640x360 (opt 320x180), batch 1..4"
    # a profile without a tile keeps the JSON (and so the cache key) it always had
    assert Profile.static(180, 320).to_json() == {"lr_min": [180, 320], "lr_opt": [180, 320], "lr_max": [180, 320], "batch": [1, 1, 1]}


# -- cache keys and build records -----------------------------------------------------------------
def test_cache_key_covers_onnx_tensorrt_gpu_profile_and_builder_options():
    profile = Profile.static(180, 320)
    base = cache_key("a" * 64, H100, profile, {"optimization_level": 3})
    assert re.fullmatch("[0-9a-f]{64}", base)
    assert base == cache_key("a" * 64, BuildEnvironment(*vars(H100).values()), Profile.from_args(resolution="320x180"), {"optimization_level": 3})
    others = [
        cache_key("b" * 64, H100, profile, {"optimization_level": 3}),
        cache_key("a" * 64, BuildEnvironment("11.4.1.2", H100.gpu_name, "9.0"), profile, {"optimization_level": 3}),
        cache_key("a" * 64, BuildEnvironment(H100.tensorrt_version, "NVIDIA H100 PCIe", "9.0"), profile, {"optimization_level": 3}),
        cache_key("a" * 64, BuildEnvironment(H100.tensorrt_version, H100.gpu_name, "9.1"), profile, {"optimization_level": 3}),
        cache_key("a" * 64, H100, Profile.static(184, 320), {"optimization_level": 3}),
        cache_key("a" * 64, H100, Profile.static(180, 320, batch=2), {"optimization_level": 3}),
        cache_key("a" * 64, H100, profile, {"optimization_level": 5}),
    ]
    assert len({base, *others}) == 1 + len(others)
    assert plan_filename("denoise", "fp16", base) == f"denoise.fp16.{base[:16]}.plan"


def _record(**overrides):
    fields = dict(
        graph="denoise", precision="fp16", plan_file="engines/denoise.fp16.0123456789abcdef.plan", plan_sha256="c" * 64, plan_size=10,
        onnx_file="denoise.fp16.onnx", onnx_sha256="d" * 64, onnx_source_sha256="e" * 64, env=H100, profile=Profile.static(180, 320),
        key="f" * 64, device_memory_bytes=1 << 30, builder_options={"optimization_level": 3}, stats=STATS,
    )
    fields.update(overrides)
    return make_record(**fields)


def test_build_record_fields_and_validation():
    record = _record(built_at="2026-11-24T12:00:00+00:00", build_seconds=12.3456)
    assert record["tensorrt_version"] == "11.4.0.106" and record["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert record["compute_capability"] == "9.0" and record["precision"] == "fp16" and record["strongly_typed"] is True
    assert record["profile"] == {"lr_min": [180, 320], "lr_opt": [180, 320], "lr_max": [180, 320], "batch": [1, 1, 1]}
    assert record["shapes"]["guidance"] == {"min": [1, 3, 720, 1280], "opt": [1, 3, 720, 1280], "max": [1, 3, 720, 1280]}
    assert record["onnx_sha256"] == "d" * 64 and record["file"].endswith(".plan") and record["sha256"] == "c" * 64
    assert record["build_seconds"] == 12.346
    assert record["shapes"]["norm_stats"] == {"min": [1, 24], "opt": [1, 24], "max": [1, 24]}
    assert record["tile"] is None and "tile" not in record["profile"]
    json.dumps(record)
    tiled = _record(profile=Profile.static(180, 320, tile=(64, 128)))
    assert tiled["tile"] == [64, 128] and tiled["profile"]["tile"] == [64, 128]
    assert tiled["shapes"]["z"] == {"min": [1, 4, 64, 128], "opt": [1, 4, 64, 128], "max": [1, 4, 64, 128]}
    for field, value, where in [
        ("compute_capability", "sm90", "compute_capability"), ("sha256", "xyz", "sha256"), ("graph", "unet", "graph"),
        ("tile", [30, 64], "tile"), ("tile", [64, 66], "tile"), ("tile", [64], "tile"), ("tile", [64, 1 << 20], "tile"), ("tile", "64x64", "tile"),
    ]:  # fmt: skip
        broken = dict(record, **{field: value})
        with pytest.raises(ManifestError, match=f"engine record is malformed at {where}(/[0-9])?: .*; rebuild the engines with svsr-export --force"):
            validate_record(broken)
    for field in ("gpu_name", "tile"):
        missing = {k: v for k, v in record.items() if k != field}
        with pytest.raises(ManifestError, match=f"'{field}' is a required property"):
            validate_record(missing)
    # the record's tile is its profile's: one said without the other is a damaged record
    with pytest.raises(ManifestError, match="malformed at tile: it differs from its profile's tile"):
        validate_record(dict(record, tile=[64, 64]))
    with pytest.raises(ManifestError, match="malformed at profile: .* or its tile is larger than its largest frame"):
        validate_record(dict(tiled, profile=dict(tiled["profile"], tile=[256, 128]), tile=[256, 128]))
    assert validate_engines({"denoise.fp16": record}) == {"denoise.fp16": record}
    with pytest.raises(ManifestError, match="engines/denoise.fp32 holds the denoise fp16 engine"):
        validate_engines({"denoise.fp32": record})
    with pytest.raises(ManifestError, match="not an object"):
        validate_engines([record])


def test_mismatch_errors_are_one_sentence_naming_the_rebuild_command():
    manifest = engine_build_manifest()
    record = _record()
    check_record(record, H100, manifest, "build", onnx_sha256="d" * 64)  # same machine, same graph: fine
    command = "svsr-export --weights /ckpt/tiny --precision fp16 --out build --resolution 320x180 --force"
    cases = [
        (BuildEnvironment("11.5.0.1", H100.gpu_name, "9.0"), None, "was built with TensorRT 11.4.0.106 but this machine has TensorRT 11.5.0.1"),
        (BuildEnvironment(H100.tensorrt_version, "NVIDIA L4", "8.9"), None, "was built for NVIDIA H100 80GB HBM3 (compute capability 9.0) but this machine has NVIDIA L4 (compute capability 8.9)"),
        (BuildEnvironment(H100.tensorrt_version, "NVIDIA H100 PCIe", "9.0"), None, "but this machine has NVIDIA H100 PCIe"),
        (H100, "0" * 64, "was built from another version of its ONNX graph (denoise.fp16.onnx changed since)"),
    ]
    for env, onnx_sha, phrase in cases:
        with pytest.raises(ManifestError) as info:
            check_record(record, env, manifest, "build", onnx_sha256=onnx_sha)
        message = str(info.value)
        assert message.startswith("the denoise fp16 engine in build ") and phrase in message
        assert message.endswith(f"; rebuild it with: {command}") and "\n" not in message
    ranged = Profile((144, 256), (180, 320), (360, 640))
    assert rebuild_command(manifest, "out", "bf16", ranged) == (
        "svsr-export --weights /ckpt/tiny --precision bf16 --out out --min 256x144 --opt 320x180 --max 640x360 --force"
    )
    # an engine of a --tile build is rebuilt with its tile
    with pytest.raises(ManifestError, match="; rebuild it with: svsr-export .* --resolution 320x180 --tile 64x128 --force$"):
        check_record(_record(profile=Profile.static(180, 320, tile=(64, 128))), BuildEnvironment("11.5.0.1", H100.gpu_name, "9.0"), manifest, "build")


# -- the build flow, against a recording double of TensorRT's builder -----------------------------
def build(tmp_path, double, precision="fp32", profile=None, **kwargs):
    """build_engines on a schema-3 build folder of tiny ONNX files (default profile: static 44x36, where flow_x2/flow_x1 are skipped)."""
    manifest = kwargs.pop("manifest", None) or engine_build_manifest(tmp_path)
    messages: list[str] = []
    onnx_reading_parser_double(double)
    engines = build_engines(
        tmp_path, manifest, precision, profile or Profile.static(36, 44), messages.append, trt=double.trt, cuda=GpuQueryDouble(), loaders=double.loaders,
        **kwargs,
    )
    return engines, messages, manifest


SMALL_FLOW_GRAPHS = ("flow_x2", "flow_x1")  # what a 44x36 profile skips: RAFT at x2 / x1 needs larger frames
# a range every graph builds for (flow_x1's engine starts at 128 px per side)
EVERY_GRAPH = Profile((36, 44), (36, 44), (128, 160))


def test_build_engines_makes_strongly_typed_plans_with_records(tmp_path):
    double = RecordingTrtBuilderDouble()
    engines, messages, manifest = build(tmp_path, double, profile=EVERY_GRAPH)
    assert sorted(engines) == sorted(f"{g}.fp32" for g in GRAPH_NAMES) and len(GRAPH_NAMES) == 10
    # through polygraphy's loaders: TensorRT 11 networks are strongly typed always (the deprecated flag is not asked for)
    assert [c[1:] for c in double.calls if c[0] == "NetworkFromOnnxPath"] == [(f"{g}.onnx", False) for g in GRAPH_NAMES]
    shapes = [c for c in double.calls if c[0] == "profile.add"]
    assert ("profile.add", "guidance", (1, 3, 144, 176), (1, 3, 144, 176), (1, 3, 512, 640)) in shapes
    assert ("profile.add", "norm_stats", (1, 24), (1, 24), (1, 24)) in shapes and ("profile.add", "norm_stats", (1, 16), (1, 16), (1, 16)) in shapes
    assert ("profile.add", "frame", (1, 3, 128, 128), (1, 3, 128, 128), (1, 3, 128, 160)) in shapes  # flow_x1: raised to 128 px
    assert {c[1] for c in shapes} == {
        "frame", "previous", "z", "lr", "guidance", "noise", "x0_history", "norm_stats", "x0", "latent", "image", "flow", "acc", "tile", "weight",
    }  # fmt: skip
    configs = [c[1] for c in double.calls if c[0] == "CreateConfig"]
    assert len(configs) == len(GRAPH_NAMES) and all(c["builder_optimization_level"] == 3 and c["memory_pool_limits"] is None for c in configs)
    assert not any(c["version_compatible"] or c["exclude_lean_runtime"] for c in configs)
    for g in GRAPH_NAMES:
        record = engines[f"{g}.fp32"]
        plan = tmp_path / record["file"]
        assert plan.read_bytes().startswith(f"plan {g} ".encode()) and sha256_file(plan) == record["sha256"]
        assert record["onnx_sha256"] == manifest["graphs"][g]["sha256"] == record["onnx_source_sha256"]
        assert record["device_memory_bytes"] == 4096 and record["builder"] == {"optimization_level": 3} and record["tile"] is None
        assert json.loads(plan.with_suffix(".json").read_text()) == record
    # the records go into the manifest as they are, and survive the exporter's "same source graph" filter
    manifest["engines"] = engines
    validate_manifest(manifest)
    kept = {k: v for k, v in engines.items() if manifest["graphs"].get(v.get("graph"), {}).get("sha256") == v.get("onnx_source_sha256")}
    assert kept == engines
    assert any(m.split()[:4] == ["flow", "fp32", "engine", "built"] for m in messages) and "44x36..160x128 (opt 44x36)" in messages[0]
    assert any(m.split()[:4] == ["guide_decode", "fp32", "engine", "built"] for m in messages)
    assert any(m.split()[:4] == ["denoise_stats", "fp32", "engine", "built"] for m in messages)


def test_a_flow_scale_no_frame_of_the_profile_can_use_builds_no_engine_and_says_why(tmp_path):
    double = RecordingTrtBuilderDouble()
    first, _, manifest = build(tmp_path, double, profile=EVERY_GRAPH)
    manifest["engines"] = first
    double.calls.clear()
    engines, messages, _ = build(tmp_path, double, manifest=manifest)  # static 44x36: below 64 and 128 px
    assert sorted(engines) == sorted(f"{g}.fp32" for g in GRAPH_NAMES if g not in SMALL_FLOW_GRAPHS)
    # the larger profile's records of those graphs are gone too: one build's engines, one profile
    assert not {f"{g}.fp32" for g in SMALL_FLOW_GRAPHS} & set(engines)
    assert not [c for c in double.calls if c[0] == "NetworkFromOnnxPath" and c[1].startswith(SMALL_FLOW_GRAPHS)]
    skipped = [m for m in messages if "engine skipped" in m]
    assert [m.split()[0] for m in skipped] == list(SMALL_FLOW_GRAPHS)
    assert skipped[1].endswith(
        "engine skipped: RAFT at --flow-scale 1 needs frames of at least 128 px per side and the profile's largest frame is 44x36, "
        "so no frame it covers runs at that flow scale"
    )
    manifest["engines"] = engines
    validate_manifest(manifest)


def test_tile_builds_make_the_tiled_graphs_static_at_the_tile(tmp_path):
    """svsr-export --tile 64x48: denoise, guide_decode and decode static at the tile; blend for its latent and 4x pixel
    tiles; flow graphs, warp and the statistics graphs over frame sizes; the tile in every record and in the cache key."""
    double = RecordingTrtBuilderDouble()
    frames = Profile((64, 64), (180, 320), (360, 640))
    plain, _, manifest = build(tmp_path, double, profile=frames)
    double.calls.clear()
    tiled_profile = Profile.from_args(min="64x64", opt="320x180", max="640x360", tile="64x48")
    assert tiled_profile == frames.with_tile((64, 48))
    engines, messages, _ = build(tmp_path, double, profile=frames, tile=(64, 48), manifest=manifest)  # the same as profile=tiled_profile
    assert sorted(engines) == sorted(f"{g}.fp32" for g in GRAPH_NAMES)
    assert messages[0].startswith("svsr-export: engines for 64x64..640x360 (opt 320x180), batch 1, tiles 64x48 (static) with TensorRT")
    by_graph = {}
    for call in double.calls:
        if call[0] == "NetworkFromOnnxPath":
            graph = call[1].removesuffix(".onnx")
        elif call[0] == "profile.add":
            by_graph.setdefault(graph, {})[call[1]] = call[2:]
    assert by_graph["denoise"]["z"] == ((1, 4, 64, 48),) * 3 and by_graph["denoise"]["guidance"] == ((1, 3, 256, 192),) * 3
    assert by_graph["guide_decode"]["x0"] == ((1, 4, 64, 48),) * 3 and by_graph["decode"]["z"] == ((1, 4, 64, 48),) * 3
    assert by_graph["blend"]["acc"] == ((1, 3, 64, 48), (1, 4, 64, 48), (1, 4, 256, 192))
    assert by_graph["blend"]["weight"] == ((1, 1, 64, 48), (1, 1, 64, 48), (1, 1, 256, 192))
    frame_range = ((1, 3, 64, 64), (1, 3, 180, 320), (1, 3, 360, 640))
    assert by_graph["flow"]["frame"] == by_graph["denoise_stats"]["lr"] == frame_range
    assert by_graph["flow_x1"]["frame"] == ((1, 3, 128, 128), (1, 3, 180, 320), (1, 3, 360, 640))
    assert by_graph["decode_stats"]["latent"] == ((1, 4, 64, 64), (1, 4, 180, 320), (1, 4, 360, 640))
    assert by_graph["warp"]["image"] == ((1, 3, 256, 256), (1, 3, 720, 1280), (1, 3, 1440, 2560))
    for g in GRAPH_NAMES:
        record = engines[f"{g}.fp32"]
        assert record["tile"] == [64, 48] and record["profile"]["tile"] == [64, 48]
        assert record["cache_key"] != plain[f"{g}.fp32"]["cache_key"] and (tmp_path / plain[f"{g}.fp32"]["file"]).exists()
    assert engines["decode.fp32"]["shapes"]["z"] == {"min": [1, 4, 64, 48], "opt": [1, 4, 64, 48], "max": [1, 4, 64, 48]}
    manifest["engines"] = engines
    validate_manifest(manifest)
    assert not any("will not run" in m for m in messages)
    again, _, _ = build(tmp_path, double, profile=tiled_profile, manifest=manifest)
    assert again == engines
    with pytest.raises(InputError, match=r"the profile's tile \(64, 48\) and tile=\(64, 64\) differ"):
        build(tmp_path, double, profile=tiled_profile, tile=(64, 64), manifest=manifest)
    with pytest.raises(InputError, match="--tile 64x48 is larger than the profile's largest frame 44x36"):
        build(tmp_path, double, profile=Profile.static(36, 44), tile=(64, 48), manifest=manifest)
    # frames of the profile smaller than the tile cannot use such engines: the build says so
    _, messages, _ = build(tmp_path, double, profile=Profile((36, 44), (180, 320), (360, 640), tile=(64, 48)), manifest=manifest, graphs=("decode",))
    assert messages[1] == "svsr-export: frames smaller than the 64x48 tile on either side will not run on these engines (--tile is HxW)"


def test_tensorrt_10_sets_the_strongly_typed_flag(tmp_path):
    double = RecordingTrtBuilderDouble(version="10.12.0.36")
    build(tmp_path, double, graphs=("decode",))
    assert [c[2] for c in double.calls if c[0] == "NetworkFromOnnxPath"] == [True]
    assert strongly_typed_flag(types.SimpleNamespace(__version__="11.0.0")) is False


def test_cached_engines_are_reused_and_force_or_a_new_profile_rebuilds(tmp_path):
    double = RecordingTrtBuilderDouble()
    first, _, manifest = build(tmp_path, double)
    manifest["engines"] = first
    double.calls.clear()
    again, messages, _ = build(tmp_path, double, manifest=manifest)
    assert again == first
    assert not [c for c in double.calls if c[0] in ("NetworkFromOnnxPath", "EngineBytesFromNetwork")]
    assert all("engine reused" in m or "engine skipped" in m for m in messages[1:])
    assert sum("engine reused" in m for m in messages) == len(GRAPH_NAMES) - len(SMALL_FLOW_GRAPHS)
    forced, _, _ = build(tmp_path, double, manifest=manifest, force=True, graphs=("decode",))
    assert forced["decode.fp32"]["file"] == first["decode.fp32"]["file"]
    assert [c[1] for c in double.calls if c[0] == "EngineBytesFromNetwork"] == ["decode"]
    other, _, _ = build(tmp_path, double, manifest=manifest, profile=Profile.static(40, 48), graphs=("decode",))
    assert other["decode.fp32"]["file"] != first["decode.fp32"]["file"]
    assert (tmp_path / first["decode.fp32"]["file"]).exists()  # the other profile's engine stays cached
    assert other["flow.fp32"] == first["flow.fp32"]  # untouched records are kept
    # a damaged plan is not reused
    (tmp_path / first["guide_decode.fp32"]["file"]).write_bytes(b"truncated")
    double.calls.clear()
    build(tmp_path, double, manifest=manifest, graphs=("guide_decode",))
    assert [c[1] for c in double.calls if c[0] == "EngineBytesFromNetwork"] == ["guide_decode"]


def test_timing_cache_is_kept_on_disk_and_reused(tmp_path):
    double = RecordingTrtBuilderDouble()
    build(tmp_path, double, graphs=("decode", "guide_decode"))
    cache = timing_cache_path(tmp_path, H100)
    assert cache.name == "timing-trt11.4.0.106-nvidia-h100-80gb-hbm3-sm9.0.cache"
    loads = [c[1]["load_timing_cache"] for c in double.calls if c[0] == "CreateConfig"]
    assert loads == [None, str(cache)]  # the second build starts from what the first saved
    assert [c[2] for c in double.calls if c[0] == "EngineBytesFromNetwork"] == [str(cache)] * 2  # polygraphy appends to it
    assert cache.read_bytes() == b"+t+t"
    double.calls.clear()
    build(tmp_path, double, graphs=("flow",), optimization_level=5, workspace_bytes=1 << 30)
    (config,) = [c[1] for c in double.calls if c[0] == "CreateConfig"]
    assert config["memory_pool_limits"] == {"WORKSPACE": 1 << 30} and config["builder_optimization_level"] == 5


def test_precision_plans_pick_typed_graphs(tmp_path):
    manifest = engine_build_manifest(tmp_path)
    unet = Precision.parse({"denoise": "fp16"})  # the UNet's graphs (denoise, denoise_stats) in fp16, the rest fp32
    for g in GRAPH_NAMES:
        if unet.of(g) == "fp16":
            add_typed_graph(tmp_path, manifest, g, "fp16")
    double = RecordingTrtBuilderDouble()
    engines, _, _ = build(tmp_path, double, precision=unet, manifest=manifest)
    assert sorted(engines) == sorted(f"{g}.{unet.of(g)}" for g in GRAPH_NAMES if g not in SMALL_FLOW_GRAPHS) and "denoise.fp16" in engines
    record = engines["denoise.fp16"]
    assert record["onnx_file"] == "denoise.fp16.onnx" and record["onnx_source_sha256"] == manifest["graphs"]["denoise"]["sha256"]
    assert ("NetworkFromOnnxPath", "denoise.fp16.onnx", False) in double.calls
    with pytest.raises(ManifestError, match="has no fp16 flow graph to build an engine from; run svsr-export --precision fp16"):
        build(tmp_path, double, precision="fp16", manifest=manifest)
    with pytest.raises(InputError, match="precision 'int8'"):
        build(tmp_path, double, precision="int8", manifest=manifest)
    # warp and blend are float32 engines whatever the precision: built from the exported graphs, never a typed one
    fp16 = Precision.parse("fp16")
    typed = [g for g in GRAPH_NAMES if fp16.of(g) == "fp16"]
    assert {"flow", "denoise", "guide_decode", "decode"} <= set(typed) and not {"warp", "blend"} & set(typed)
    for g in typed:
        if unet.of(g) != "fp16":
            add_typed_graph(tmp_path, manifest, g, "fp16")
    double.calls.clear()
    engines, _, _ = build(tmp_path, double, precision="fp16", manifest=manifest)
    assert sorted(engines) == sorted(f"{g}.{fp16.of(g)}" for g in GRAPH_NAMES if g not in SMALL_FLOW_GRAPHS)
    assert engines["warp.fp32"]["onnx_file"] == "warp.onnx" and engines["blend.fp32"]["onnx_file"] == "blend.onnx"
    assert engines["decode.fp16"]["onnx_file"] == "decode.fp16.onnx"
    assert not [c for c in double.calls if c[0] == "NetworkFromOnnxPath" and c[1].startswith(("warp", "blend"))]  # the fp32 plans are reused


def test_lean_builds_are_version_compatible_plans_without_the_lean_runtime(tmp_path, monkeypatch):
    from svsr.device import tensorrt as trt_device

    monkeypatch.setattr(trt_device, "lean_library_path", lambda version: "/libs/libnvinfer_lean.so.11")
    double = RecordingTrtBuilderDouble()
    normal, _, manifest = build(tmp_path, double, graphs=("decode", "guide_decode"))
    assert not [c for c in double.calls if c[0] in ("runtime.load_runtime", "runtime.engine_host_code_allowed")]
    assert not any(c[1]["version_compatible"] for c in double.calls if c[0] == "CreateConfig")
    assert "version_compatible" not in normal["decode.fp32"] and "lean" not in normal["decode.fp32"]
    double.calls.clear()
    lean, messages, _ = build(tmp_path, double, graphs=("decode", "guide_decode"), lean=True)
    # both flags on every build's config; the plan carries them
    configs = [c[1] for c in double.calls if c[0] == "CreateConfig"]
    assert [(c["version_compatible"], c["exclude_lean_runtime"]) for c in configs] == [(True, True)] * 2
    for g in ("decode", "guide_decode"):
        record = lean[f"{g}.fp32"]
        assert record["version_compatible"] is True and record["lean"] is True
        assert record["builder"] == {"optimization_level": 3, "version_compatible": True, "exclude_lean_runtime": True}
        assert validate_record(dict(record)) == record and json.loads((tmp_path / record["file"]).with_suffix(".json").read_text()) == record
        assert b"flags=EXCLUDE_LEAN_RUNTIME,VERSION_COMPATIBLE" in (tmp_path / record["file"]).read_bytes()
        # the cache key (and so the plan file) tells lean plans from normal ones; both stay cached
        assert record["cache_key"] != normal[f"{g}.fp32"]["cache_key"] and record["file"] != normal[f"{g}.fp32"]["file"]
        assert (tmp_path / normal[f"{g}.fp32"]["file"]).exists()
    # the scratch probe deserialises the plan as it will run: through the lean runtime the full library loads
    # (as trtexec does for --excludeLeanRuntime plans), with host code allowed; never the plain full runtime
    probes = [c for c in double.calls if c[0].startswith("runtime.")]
    assert probes == [
        ("runtime.load_runtime", "/libs/libnvinfer_lean.so.11"), ("runtime.engine_host_code_allowed", True),
        ("runtime.deserialize_cuda_engine", "/libs/libnvinfer_lean.so.11"),
    ] * 2  # fmt: skip
    assert "lean-runtime (version-compatible) engines for" in messages[0]
    # a lean rebuild reuses the lean plans, a normal one the normal plans
    manifest["engines"] = lean
    double.calls.clear()
    again, messages, _ = build(tmp_path, double, manifest=manifest, graphs=("decode", "guide_decode"), lean=True)
    assert again == lean and not [c for c in double.calls if c[0] == "EngineBytesFromNetwork"]
    back, _, _ = build(tmp_path, double, manifest=manifest, graphs=("decode",))
    assert back["decode.fp32"] == normal["decode.fp32"] and back["guide_decode.fp32"] == lean["guide_decode.fp32"]
    # the key itself: same inputs, lean options -> another key
    profile = Profile.static(36, 44)
    assert cache_key("a" * 64, H100, profile, {"optimization_level": 3}) != cache_key("a" * 64, H100, profile, {"optimization_level": 3, **builder_mod.LEAN_OPTIONS})


def test_lean_builder_flags_exist_in_the_real_tensorrt_wheels():
    """VERSION_COMPATIBLE / EXCLUDE_LEAN_RUNTIME / set_flag in the full builder's string table, and the lean runtime's names by import."""
    assert TRT_BUILDER_API["BuilderFlag"] == builder_mod.LEAN_BUILDER_FLAGS == ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME")
    assert {"engine_host_code_allowed", "load_runtime"} <= set(TRT_BUILDER_API["Runtime"])
    assert {"version_compatible", "exclude_lean_runtime"} <= set(POLYGRAPHY_API["CreateConfig"])  # polygraphy sets the flags
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is not None and spec.submodule_search_locations:
        so = next(Path(next(iter(spec.submodule_search_locations))).glob("tensorrt*.so"), None)
        if so is not None:
            table = so.read_bytes()
            missing = [n for n in ("BuilderFlag", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "load_runtime", "engine_host_code_allowed") if n.encode() + b"\0" not in table]
            assert not missing, f"not in {so.name}: {missing}"
    lean = pytest.importorskip("tensorrt_lean_bindings", reason="install tensorrt-lean-cu13-bindings and tensorrt-lean-cu13-libs (dev extra)")
    for flag in builder_mod.LEAN_BUILDER_FLAGS:
        assert hasattr(lean.BuilderFlag, flag)
    prop = lean.Runtime.__dict__["engine_host_code_allowed"]
    assert isinstance(prop, property) and prop.fset is not None  # settable, as the loaders set it


def test_unusable_tensorrt_and_failed_builds_say_why(tmp_path):
    with pytest.raises(MissingDependencyError, match="TensorRT 10.8.0 is too old: .* needs TensorRT 10.12 or newer"):
        build(tmp_path, RecordingTrtBuilderDouble(version="10.8.0"))
    with pytest.raises(MissingDependencyError, match="runtime-only package .* cannot build engines"):
        build(tmp_path, RecordingTrtBuilderDouble(with_builder=False))
    manifest = engine_build_manifest(tmp_path)
    manifest["graphs"]["flow"]["sha256"] = write_tiny_onnx(tmp_path / "flow.onnx", "flow", name="bad flow")  # the parser double refuses it
    with pytest.raises(EngineBuildError, match="could not parse .*flow.onnx \\(.*node Foo: unsupported op; node Bar: bad attribute.*check it with svsr-export --check-trt"):
        build(tmp_path, RecordingTrtBuilderDouble(), manifest=manifest)
    double = RecordingTrtBuilderDouble()
    double.fail_build = True
    with pytest.raises(EngineBuildError, match="could not build the decode engine .* 44x36 \\(static\\)"):
        build(tmp_path, double, graphs=("decode",))
    write_tiny_onnx(tmp_path / "guide_decode.onnx", "guide_decode", name="changed")
    with pytest.raises(ManifestError, match="does not match the sha256 in the manifest"):
        build(tmp_path, RecordingTrtBuilderDouble(), manifest=manifest)


def test_graphs_are_checked_as_onnx_files_before_the_parser_sees_them(tmp_path):
    """check_onnx_graph: a damaged file and external data outside the build folder are refused before TensorRT opens anything."""
    manifest = engine_build_manifest(tmp_path)
    double = RecordingTrtBuilderDouble()
    (tmp_path / "decode.onnx").write_bytes(b"onnx decode")  # a text stand-in is no ONNX file: refused as damaged
    manifest["graphs"]["decode"]["sha256"] = sha256_file(tmp_path / "decode.onnx")
    with pytest.raises(ManifestError, match=r"graph decode \(.*decode.onnx\) is damaged .*, not a readable ONNX file; re-export it"):
        build(tmp_path, double, manifest=manifest, graphs=("decode",))
    (tmp_path / "outside.bin").write_bytes(bytes(16))
    inner = tmp_path / "build"
    inner.mkdir()
    manifest = engine_build_manifest(inner)
    manifest["graphs"]["guide_decode"]["sha256"] = write_tiny_onnx(inner / "guide_decode.onnx", "guide_decode", external_data="../outside.bin")
    with pytest.raises(ManifestError, match=r"guide_decode.onnx names external data '../outside.bin', which climbs out of the build folder"):
        build(inner, double, manifest=manifest, graphs=("guide_decode",))
    # and a typed graph's external data as well
    manifest = engine_build_manifest(inner)
    add_typed_graph(inner, manifest, "denoise", "fp16")
    typed = manifest["graphs"]["denoise"]["typed"]["fp16"]
    typed["sha256"] = write_tiny_onnx(inner / typed["file"], "denoise", external_data=str(tmp_path / "outside.bin"))
    with pytest.raises(ManifestError, match=r"denoise.fp16.onnx names external data .*outside.bin', which is an absolute path, outside the build folder"):
        build(inner, double, precision={"denoise": "fp16"}, manifest=manifest, graphs=("denoise",))
    assert not [c for c in double.calls if c[0] in ("NetworkFromOnnxPath", "EngineBytesFromNetwork")]
    # data inside the folder is fine
    manifest = engine_build_manifest(inner)
    (inner / "weights.bin").write_bytes(bytes(16))
    manifest["graphs"]["decode"]["sha256"] = write_tiny_onnx(inner / "decode.onnx", "decode", external_data="weights.bin")
    engines, _, _ = build(inner, double, manifest=manifest, graphs=("decode",))
    assert list(engines) == ["decode.fp32"] and ("NetworkFromOnnxPath", "decode.onnx", False) in double.calls


def test_build_availability_reason_without_tensorrt():
    from svsr.device.tensorrt import import_tensorrt

    try:
        import_tensorrt()
    except MissingDependencyError:
        ok, reason = tensorrt_build_available()
        assert not ok and "svsr[tensorrt-cu13]" in reason and "https://pypi.nvidia.com" in reason and "\n" not in reason
        if importlib.util.find_spec("tensorrt_lean_bindings") is not None:  # the dev extra: only the lean runtime imports
            assert reason.startswith("building engines need the full TensorRT, but only its lean runtime (tensorrt_lean_bindings 11.")
            assert "cannot build them" in reason
        elif importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_bindings") is None:
            assert reason.startswith("TensorRT is not installed")
    else:
        ok, reason = tensorrt_build_available()
        assert isinstance(ok, bool) and reason


def test_no_weak_typing_flags_anywhere():
    paths = [*sorted((REPO / "svsr" / "engines").glob("*.py")), *sorted((REPO / "svsr" / "runtime" / "sampling").glob("trt_*.py"))]
    assert len(paths) >= 8
    for path in paths:
        source = path.read_text()
        for flag in builder_mod.FORBIDDEN_WEAK_TYPING:
            hits = [line for line in source.splitlines() if flag in line and "FORBIDDEN_WEAK_TYPING" not in line and not line.strip().startswith('"')]
            assert not hits, f"{path.name} uses {flag}"
        assert "precision_constraints" not in source.lower()
        # the only builder flags ever set are the lean-runtime ones (precision is never a flag)
        flags = re.findall(r"set_flag\(([^)]*)\)", source)
        assert all(f in {f"trt.BuilderFlag.{name}" for name in builder_mod.LEAN_BUILDER_FLAGS} for f in flags), flags
        assert not re.search(r"\.flags\s*[|]?=", source), f"{path.name} sets builder flags as a bitmask"
        # polygraphy's CreateConfig sets precision flags from keyword arguments: never passed
        assert not re.search(r"\b(fp16|bf16|int8|fp8|tf32)\s*=", source), f"{path.name} asks polygraphy for a precision flag"


def test_the_polygraphy_arguments_exist_in_the_installed_polygraphy():
    """What svsr passes to polygraphy's loaders, against the installed package's own signatures."""
    import inspect

    loaders = pytest.importorskip("polygraphy.backend.trt", reason="polygraphy is not installed")
    from polygraphy.backend.trt.config import _CreateConfigCommon

    for owner, arguments in POLYGRAPHY_API.items():
        target = getattr(loaders, owner)
        if owner == "Profile":
            missing = [a for a in arguments if not hasattr(target, a)]
            assert set(inspect.signature(target.add).parameters) >= {"name", "min", "opt", "max"}
        else:
            parameters = set(inspect.signature(target.__init__).parameters)
            if owner == "CreateConfig":
                parameters |= set(inspect.signature(_CreateConfigCommon.__init__).parameters)
            missing = [a for a in arguments if a not in parameters]
        assert not missing, f"polygraphy {owner} has no {missing}"


# -- the names used exist in the real TensorRT 11 wheels ------------------------------------------
def test_the_builder_double_offers_only_declared_names():
    double = RecordingTrtBuilderDouble()
    for owner, cls in double.classes.items():
        public = {n for n in vars(cls) if not n.startswith("_")}
        assert public <= set(TRT_BUILDER_API[owner]), owner
    assert set(vars(double.trt)) - {"__version__"} <= set(TRT_BUILDER_API["tensorrt"])


RUNTIME_OWNERS = ("Logger", "Runtime", "ICudaEngine")


def test_builder_runtime_names_exist_in_the_lean_bindings():
    trt = pytest.importorskip("tensorrt_lean_bindings", reason="install tensorrt-lean-cu13-bindings and tensorrt-lean-cu13-libs (dev extra)")
    missing = [f"{o}.{a}" for o in RUNTIME_OWNERS for a in TRT_BUILDER_API[o] if not hasattr(getattr(trt, o), a)]
    missing += [a for a in ("__version__", "Logger", "Runtime") if not hasattr(trt, a)]
    assert not missing


def test_builder_only_names_are_in_the_real_tensorrt_wheel():
    """`tensorrt-cu13-bindings` cannot be imported here (it needs libnvinfer.so.11 from NVIDIA's index),
    so every builder name is looked up in the string table of its compiled module instead."""
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorrt-cu13-bindings is not installed (dev extra)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    so = next(folder.glob("tensorrt*.so"), None)
    if so is None:
        pytest.skip(f"no compiled module in {folder}")
    version = re.search(r'__version__ = "([^"]+)"', (folder / "__init__.py").read_text())
    assert version and version.group(1).startswith(("10.", "11."))
    table = so.read_bytes()
    names = {n for owner, attrs in TRT_BUILDER_API.items() if owner not in RUNTIME_OWNERS for n in (owner, *attrs)}
    names -= {"tensorrt", "__version__"}
    missing = sorted(n for n in names if n.encode() + b"\0" not in table)
    assert not missing, f"not in {so.name} {version.group(1)}: {missing}"
    # and the weak-typing flags really are gone from the TensorRT 11 builder
    if version.group(1).startswith("11."):
        assert b"\0FP16\0" not in table and b"\0INT8\0" not in table


def test_precision_of_every_form_and_its_rebuild_options():
    from svsr.contract.precision import Precision

    # the graphs of schema 2 (the new graphs' precisions are tested with svsr.contract.precision, tests/test_precision.py)
    graphs = ("flow", "denoise", "guide_decode", "warp", "decode", "blend")  # warp and blend always fp32

    def of(precision):
        return [precision.per_graph()[g] for g in graphs]

    assert of(Precision.parse("fp16")) == ["fp16", "fp16", "fp16", "fp32", "fp16", "fp32"]
    assert of(Precision.parse({"denoise": "bf16"})) == ["fp32", "bf16", "fp32", "fp32", "fp32", "fp32"]
    mixed = Precision("fp16", vae="bf16", flow="fp32")
    assert of(mixed) == ["fp32", "fp16", "bf16", "fp32", "bf16", "fp32"]
    assert Precision.parse("fp16").flags() == ["--precision", "fp16"]
    assert mixed.flags() == ["--precision", "fp16", "--vae-precision", "bf16", "--flow-precision", "fp32"]
    assert Precision.parse(Precision("fp16").per_graph()).flags() == ["--precision", "fp16"]
    manifest = engine_build_manifest()
    assert rebuild_command(manifest, "b", {"denoise": "fp16", "guide_decode": "fp16", "decode": "fp16"}) == (
        "svsr-export --weights /ckpt/tiny --precision fp16 --flow-precision fp32 --out b --force"
    )
