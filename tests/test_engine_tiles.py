"""Engines built for one tile shape (svsr-export --tile HxW): the profile's tile and which runs can use such engines.

Plain Python throughout (svsr.contract.profiles, svsr.contract.engine_records): the records are made
by make_record as the builder makes them, on a schema-3 manifest without files.
"""

from __future__ import annotations

import pytest

from svsr.contract.engine_records import BuildEnvironment, cache_key, engine_key, engine_tile, engine_tile_problem, make_record
from svsr.contract.errors import InputError, ManifestError
from svsr.contract.graphs import GRAPH_NAMES, TILED_GRAPHS
from svsr.contract.precision import Precision
from svsr.contract.profiles import Profile, parse_export_tile
from svsr.contract.video_options import api_spelling
from tests.support.engine_builds import STATS, engine_build_manifest

ENV = BuildEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
FRAMES = Profile((64, 64), (180, 320), (360, 640))
TILED = FRAMES.with_tile((128, 128))
FRAME_COMMAND = "svsr-export --weights /ckpt/tiny --precision fp32 --out build --min 64x64 --opt 320x180 --max 640x360"


def with_engines(profile: Profile, precision: str = "fp32", graphs: tuple[str, ...] = GRAPH_NAMES, manifest: dict | None = None) -> dict:
    """A manifest holding build records of ``graphs`` for ``profile`` (no plan files: nothing here opens them)."""
    manifest = manifest or engine_build_manifest()
    chosen = Precision.parse(precision)
    for graph in graphs:
        prec = chosen.of(graph)
        key = cache_key("d" * 64, ENV, profile)
        manifest["engines"][engine_key(graph, prec)] = make_record(
            graph=graph, precision=prec, plan_file=f"engines/{graph}.{prec}.{key[:16]}.plan", plan_sha256="c" * 64, plan_size=10,
            onnx_file=f"{graph}.onnx", onnx_sha256="d" * 64, onnx_source_sha256="d" * 64, env=ENV, profile=profile, key=key,
            device_memory_bytes=1 << 20, stats=STATS,
        )
    return manifest


# -- the profile's tile ---------------------------------------------------------------------------
def test_export_tile_option_follows_the_runtime_tile_rules():
    assert parse_export_tile("128x96") == (128, 96) and parse_export_tile((64, 96)) == (64, 96) and parse_export_tile("64") == (64, 64)
    assert parse_export_tile(None) is None and parse_export_tile("off") is None  # off: engines over frame sizes
    with pytest.raises(InputError, match="--tile auto is not a tile size for engines; give HxW in LR pixels such as 128x128"):
        parse_export_tile("auto")
    with pytest.raises(InputError, match="--tile 8x8 is below the smallest tile of 32x32"):
        parse_export_tile("8x8")
    with pytest.raises(InputError, match="--tile 130x128 has a side that is not a multiple of 4; use 132 instead of 130"):
        parse_export_tile("130x128")
    profile = Profile.from_args(resolution="320x180", tile="128x96")
    assert profile.tile == (128, 96) and profile.cli_args() == ["--resolution", "320x180", "--tile", "128x96"]
    assert profile.describe() == "320x180 (static), batch 1, tiles 128x96 (static)"
    assert Profile.from_args(resolution="320x180", tile="off") == Profile.static(180, 320)
    # a tile larger than every frame of the profile would never run: every frame would be one smaller tile
    with pytest.raises(InputError, match=r"--tile 184x128 is larger than the profile's largest frame 320x180 \(WxH\), so no frame would run"):
        Profile.from_args(resolution="320x180", tile="184x128")
    with pytest.raises(InputError, match="tile sides must be multiples of 4 and at least 32"):
        Profile((64, 64), (64, 64), (64, 64), tile=(30, 64))
    assert Profile.static(128, 128, tile=(128, 128)).input_shapes("decode", STATS)["z"] == ((1, 4, 128, 128),) * 3


def test_only_the_tiled_graphs_are_static_at_the_tile():
    for graph in GRAPH_NAMES:
        shapes = TILED.input_shapes(graph, STATS)
        frame_shapes = FRAMES.input_shapes(graph, STATS)
        if graph in TILED_GRAPHS:
            assert all(lo == mid == hi for lo, mid, hi in shapes.values()), graph
            assert shapes != frame_shapes
        elif graph == "blend":  # latent tiles (4 channels) up to decoded pixel tiles (4x)
            assert shapes["tile"] == ((1, 3, 128, 128), (1, 4, 128, 128), (1, 4, 512, 512))
        else:
            assert shapes == frame_shapes, graph


# -- which runs can use engines built for one tile ------------------------------------------------
def test_engine_tile_reads_the_tiled_graphs_records():
    assert engine_tile(engine_build_manifest(), "auto") is None  # no engines at all
    assert engine_tile(with_engines(FRAMES), "fp32") is None
    assert engine_tile(with_engines(TILED), "fp32") == (128, 128)
    assert engine_tile(with_engines(TILED), "auto") == (128, 128)
    # auto picks the fastest precision built per graph: here the fp16 engines of a tile build
    both = with_engines(TILED, "fp16", manifest=with_engines(FRAMES))
    assert engine_tile(both, "auto") == (128, 128) and engine_tile(both, "fp32") is None
    mixed = with_engines(FRAMES.with_tile((64, 64)), graphs=("decode",), manifest=with_engines(TILED))
    with pytest.raises(ManifestError, match=r"built for different tiles \(denoise 128x128, guide_decode 128x128, decode 64x64\); rebuild them together: svsr-export .* --tile HxW --force"):
        engine_tile(mixed, "fp32")
    plain_decode = with_engines(FRAMES, graphs=("decode",), manifest=with_engines(TILED))
    with pytest.raises(ManifestError, match="decode frame sizes"):
        engine_tile(plain_decode, "fp32")


def test_runs_that_feed_the_tile_shape_are_fine():
    tiled = with_engines(TILED)
    for asked, h, w in [
        ("auto", 180, 320), (None, 180, 320), ((128, 128), 180, 320), ("128x128", 360, 640),
        ("auto", 126, 130),  # padded to 128x132: one side is exactly the tile
        ("off", 128, 128), ((256, 256), 128, 128),  # whole frames of the tile's shape
        ((160, 128), 128, 400),  # clipped to the frame's height: 128x128 tiles
    ]:  # fmt: skip
        assert engine_tile_problem(tiled, "fp32", asked, h, w, build_dir="build") is None, (asked, h, w)
    frames = with_engines(FRAMES)
    assert all(engine_tile_problem(frames, "fp32", asked, 180, 320) is None for asked in ("auto", "off", (64, 64)))


def test_runs_the_tile_engines_cannot_take_get_one_sentence_naming_the_builds_tile():
    tiled = with_engines(TILED)
    engines = "the TensorRT engines in build were built for 128x128 tiles only (svsr-export --tile 128x128)"
    cases = {
        ((96, 96), 180, 320): f"--tile 96x96 runs 96x96 tiles, but {engines}; use --tile 128x128 (or auto), or re-export for those tiles: "
        f"{FRAME_COMMAND} --tile 96x96 --force.",
        ("off", 180, 320): f"--tile off runs whole 320x180 frames, but {engines}; use --tile auto (the build's tiles), or re-export for "
        f"whole frames: {FRAME_COMMAND} --force.",
        ("256x512", 180, 320): f"--tile 256x512 covers the frame, so it runs whole 320x180 frames, but {engines}; use --tile auto "
        f"(the build's tiles), or re-export for whole frames: {FRAME_COMMAND} --force.",
        ("auto", 96, 200): f"frames of 200x96 (padded LR size) are smaller than one tile, and {engines}, which run that shape only; "
        f"re-export for engines over frame sizes: {FRAME_COMMAND} --force (or use --backend ort).",
        ((128, 128), 94, 640): f"frames of 640x96 (padded LR size) are smaller than one tile, and {engines}, which run that shape only; "
        f"re-export for engines over frame sizes: {FRAME_COMMAND} --force (or use --backend ort).",
    }
    for (asked, h, w), sentence in cases.items():
        said = engine_tile_problem(tiled, "fp32", asked, h, w, build_dir="build")
        assert said == sentence, (asked, said)
        assert "\n" not in said and said.count("; ") <= 2
    # from Python: the option as a Python caller writes it; no folder given: the command's placeholder
    said = engine_tile_problem(tiled, "auto", (96, 96), 180, 320, spell=api_spelling)
    assert said.startswith("tile='96x96' runs 96x96 tiles, but the TensorRT engines were built for 128x128 tiles only")
    assert "use tile='128x128' (or auto)" in said and "--out BUILD " in said
    # a tile the build's frame sizes cannot hold: the command asks for the sizes too
    small = with_engines(Profile.static(180, 320, tile=(128, 128)))
    said = engine_tile_problem(small, "fp32", (256, 256), 400, 400, build_dir="build")
    assert said.endswith("re-export for those tiles: svsr-export --weights /ckpt/tiny --precision fp32 --out build --resolution WxH --tile 256x256 --force.")
    # lean builds are rebuilt lean
    lean = with_engines(TILED)
    for record in lean["engines"].values():
        record["lean"] = record["version_compatible"] = True
    assert "--tile 96x96 --lean --force." in engine_tile_problem(lean, "fp32", (96, 96), 180, 320, build_dir="build")
    # a malformed tile option is the tile rules' own sentence
    with pytest.raises(InputError, match="--tile 8x8 is below the smallest tile"):
        engine_tile_problem(tiled, "fp32", "8x8", 180, 320)
