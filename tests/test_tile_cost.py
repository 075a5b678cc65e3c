"""benchmarks/tile_cost.py: FLOPs per frame-step, untiled vs tiled, counted on the meta device (tiny preset)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from svsr.contract.tiles import plan_tiles

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "tile_cost.py"


@pytest.fixture(scope="module")
def tile_cost():
    spec = importlib.util.spec_from_file_location("tile_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tile_cost"] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("tile_cost", None)


@pytest.fixture(scope="module")
def tiny(tile_cost):
    return tile_cost.MetaModel("tiny")


def test_tiled_frame_step_is_tiles_times_one_tile_plus_the_statistics_graphs(tile_cost, tiny):
    untiled, tiled = (tile_cost.frame_step_cost(tiny, 64, 96, tile) for tile in (None, (48, 48)))
    count = len(plan_tiles(64, 96, (48, 48), tile_cost.TILE_OVERLAP).tiles)
    assert untiled["tiles"] == 1 and untiled["parts"]["stats"] == {"total": 0, "attention": 0}
    assert tiled["tiles"] == count == 6 and tiled["tile"] == [48, 48]
    one = tiny.denoise(48, 48)
    assert tiled["parts"]["tcm"]["total"] == count * one["tcm"].total > 0
    assert tiled["parts"]["unet"]["total"] == count * one["unet"].total > 0
    assert tiled["parts"]["guidance_decode"]["total"] == count * tiny.vae_decode(48, 48).total > 0
    # denoise_stats: TCM + UNet on every 2nd row and column of the frame; decode_stats: the VAE decode the same
    pooled = tiny.denoise(32, 48)
    stats = pooled["tcm"].total + pooled["unet"].total + tiny.vae_decode(32, 48).total
    assert tiled["parts"]["stats"]["total"] == stats
    assert tiled["frame_step"]["total"] == sum(part["total"] for part in tiled["parts"].values())
    assert tiled["final_decode"]["total"] == count * tiny.vae_decode(48, 48).total + tiny.vae_decode(32, 48).total
    for row in (untiled, tiled):
        assert 0 < row["frame_step"]["attention"] < row["frame_step"]["total"]
    # untiled, the parts are the whole-frame calls
    whole = tiny.denoise(64, 96)
    assert untiled["parts"]["unet"]["total"] == whole["unet"].total
    assert untiled["final_decode"] == untiled["parts"]["guidance_decode"]


def test_the_attention_term_is_the_quadratic_one(tiny):
    # the VAE's attention is self-attention over every latent position: 4x the positions, 16x its FLOPs,
    # while the rest (convolutions) grows 4x
    small, big = tiny.vae_decode(16, 24), tiny.vae_decode(32, 48)
    assert small.attention > 0 and big.attention == 16 * small.attention
    assert big.total - big.attention == 4 * (small.total - small.attention)


def test_rows_and_table(tile_cost):
    rows = tile_cost.flops_rows("tiny", 64, 96, [(48, 48)])
    assert [r["tiles"] for r in rows] == [1, 6]
    assert rows[0]["vs_untiled"] == 1.0
    assert rows[1]["vs_untiled"] == rows[1]["frame_step"]["total"] / rows[0]["frame_step"]["total"] > 1
    table = tile_cost.flops_markdown(rows, "tiny")
    assert "| untiled | 1 |" in table and "| 48x48, overlap 16 | 6 |" in table
    assert sum(line.startswith("|") for line in table.splitlines()) == 4  # header, rule and one line per row
