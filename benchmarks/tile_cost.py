"""What tiles cost: FLOPs per frame-step (counted, no memory) and one frame-step's memory and time (measured).

    python benchmarks/tile_cost.py flops                                  # full preset, LR 180x320, tiles 128x128 and 64x64
    python benchmarks/tile_cost.py flops --preset tiny --frame 64x96 --tiles 32x32
    python benchmarks/tile_cost.py memory --model build/full --frames 96x128 160x224 224x320 --tile 64x64

Sizes are LR pixels, HEIGHTxWIDTH (as ``--tile``), so 180x320 is a 320 px wide, 180 px high frame.

``flops``: the preset's UNet, TCM (ControlNet) and VAE are built on the meta device (shapes only, no
weights, no memory) and run under ``torch.utils.flop_counter.FlopCounterMode`` with the math SDPA
kernel, as the exporter counts (2 FLOPs per multiply-add; convolutions and matrix products, not
element-wise work). One frame-step is the guidance decode (VAE decode of the previous x0), the TCM and
the UNet. Tiled, each of them runs once per tile at the tile's shape (``svsr.contract.tiles.plan_tiles``,
overlap 16), plus the statistics graphs once per frame-step: TCM + UNet on every 2nd row and column of
the frame (``denoise_stats``) and the VAE decoder the same (``decode_stats``). The attention term
(the batched products QK^T and scores x V, all of the ``bmm`` FLOPs here) is shown apart: it is
what grows with the square of what a graph sees.

``memory``: each (frame size, layout) pair is one child process that opens the build on ONNX Runtime's
CPU backend and upscales ONE frame with ONE step (``Sampler.upscale``); the parent reads the child's
peak RSS from the kernel (``wait4``) and the child reports the seconds of its frame-step
(``Sampler.run_step``: the denoise, with ``denoise_stats`` when tiled; one frame has no guidance) and of
the whole call (session start and the final decode included). ``--memory-cap`` bounds each child's
address space, so a size that does not fit ends as an allocation failure in that child instead of
waking the kernel's OOM killer on a shared machine; how each child ended is part of the result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

TILE_OVERLAP = 16
DENOISE_STRIDE, DECODE_STRIDE = 2, 2  # svsr.contract.graphs.NORM_STATS_STRIDE: every how many rows/columns the statistics graphs sample


def parse_size(text: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` -> (height, width)."""
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


# -- FLOPs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """FLOPs of one call (2 per multiply-add) and the attention's share of them (QK^T and scores x V)."""

    total: int
    attention: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.total + other.total, self.attention + other.attention)

    def __mul__(self, count: int) -> "Cost":
        return Cost(self.total * count, self.attention * count)


ZERO = Cost(0, 0)


class MetaModel:
    """A preset's UNet, TCM and VAE on the meta device: FLOPs of each part at any latent size, without memory."""

    def __init__(self, preset: str) -> None:
        import torch
        from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

        from svsr.reference.presets import PRESETS

        p = PRESETS[preset]
        with torch.device("meta"):
            self.unet = UNet2DConditionModel(**p.unet).eval()
            # the TCM as presets.write_preset makes it (from_unet), without copying weights that do not exist
            self.tcm = ControlNetModel.from_unet(self.unet, conditioning_embedding_out_channels=p.tcm_embedding_channels,
                                                 load_weights_from_unet=False).eval()  # fmt: skip
            self.vae = AutoencoderKL(**p.vae).eval()
        self.embed_shape = (1, p.prompt_tokens, p.unet["cross_attention_dim"])
        self.latent_channels = p.vae["latent_channels"]
        self._cache: dict[tuple[str, int, int], Cost] = {}

    @staticmethod
    def _counted(fn: Callable[[], Any]) -> tuple[Cost, Any]:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        # the math SDPA kernel: the counter sees attention as two batched matmuls (as the exporter counts it)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            out = fn()
        ops = counter.get_flop_counts().get("Global", {})
        attention = sum(v for op, v in ops.items() if "bmm" in str(op) or "scaled_dot_product" in str(op))
        return Cost(int(counter.get_total_flops()), int(attention)), out

    def _inputs(self, height: int, width: int) -> tuple[Any, ...]:
        import torch

        with torch.device("meta"):
            x = torch.empty(1, self.latent_channels + 3, height, width)  # z and the LR frame, concatenated
            guidance = torch.empty(1, 3, 4 * height, 4 * width)
            embeds = torch.empty(self.embed_shape)
            t = torch.tensor([501])
        return x, guidance, embeds, t

    def denoise(self, height: int, width: int) -> dict[str, Cost]:
        """TCM and UNet (with the TCM's residuals) on a latent of ``height`` x ``width``."""
        key = ("tcm", height, width)
        if key not in self._cache:
            x, guidance, embeds, t = self._inputs(height, width)
            tcm, (down, mid) = self._counted(lambda: self.tcm(x, t, encoder_hidden_states=embeds, controlnet_cond=guidance,
                                                              conditioning_scale=1.0, return_dict=False))  # fmt: skip
            unet, _ = self._counted(lambda: self.unet(x, t, encoder_hidden_states=embeds, down_block_additional_residuals=down,
                                                      mid_block_additional_residual=mid))  # fmt: skip
            self._cache[key], self._cache[("unet", height, width)] = tcm, unet
        return {"tcm": self._cache[key], "unet": self._cache[("unet", height, width)]}

    def vae_decode(self, height: int, width: int) -> Cost:
        """The VAE decode (post-quant conv + decoder) of a latent of ``height`` x ``width``."""
        import torch

        key = ("vae", height, width)
        if key not in self._cache:
            with torch.device("meta"):
                latent = torch.empty(1, self.latent_channels, height, width)
            self._cache[key], _ = self._counted(lambda: self.vae.decode(latent).sample)
        return self._cache[key]


def frame_step_cost(model: MetaModel, height: int, width: int, tile: tuple[int, int] | None, overlap: int = TILE_OVERLAP) -> dict[str, Any]:
    """FLOPs of one frame-step on a padded LR frame of ``height`` x ``width``, untiled (``tile`` None) or tiled.

    Parts: ``guidance_decode`` (VAE decode of the previous x0), ``tcm``, ``unet`` (each per tile x tiles
    when tiled) and ``stats`` (tiled only: TCM + UNet and the VAE decode on the frame subsampled by 2). ``final_decode`` is per output frame, not per frame-step (its tiled form pays ``decode_stats`` too).
    """
    from svsr.contract.tiles import plan_tiles

    layout = plan_tiles(height, width, tile, overlap)
    n, (th, tw) = len(layout.tiles), layout.tile_shape
    denoise = model.denoise(th, tw)
    parts = {"guidance_decode": model.vae_decode(th, tw) * n, "tcm": denoise["tcm"] * n, "unet": denoise["unet"] * n, "stats": ZERO}
    final = model.vae_decode(th, tw) * n
    if not layout.single:
        pooled = model.denoise(-(-height // DENOISE_STRIDE), -(-width // DENOISE_STRIDE))
        decode_stats = model.vae_decode(-(-height // DECODE_STRIDE), -(-width // DECODE_STRIDE))
        parts["stats"] = pooled["tcm"] + pooled["unet"] + decode_stats
        final = final + decode_stats
    total = sum(parts.values(), ZERO)
    return {
        "frame": [height, width],
        "tile": None if layout.single else [th, tw],
        "tiles": n,
        "overlap": layout.overlap,
        "parts": {name: asdict(cost) for name, cost in parts.items()},
        "frame_step": asdict(total),
        "final_decode": asdict(final),
    }


def flops_rows(preset: str, height: int, width: int, tiles: list[tuple[int, int]], overlap: int = TILE_OVERLAP) -> list[dict[str, Any]]:
    """The untiled frame-step and one row per tile size, each with its ratio to the untiled total."""
    model = MetaModel(preset)
    rows = [frame_step_cost(model, height, width, None)] + [frame_step_cost(model, height, width, t, overlap) for t in tiles]
    for row in rows:
        row["vs_untiled"] = row["frame_step"]["total"] / rows[0]["frame_step"]["total"]
    return rows


def flops_markdown(rows: list[dict[str, Any]], preset: str) -> str:
    def cell(cost: dict[str, int]) -> str:
        return f"{cost['total'] / 1e12:.3f} ({cost['attention'] / 1e12:.3f})"

    h, w = rows[0]["frame"]
    lines = [
        f"`{preset}` preset, LR {h}x{w} (HxW), TFLOP per frame-step; in brackets the attention term (QK^T and scores x V)",
        "",
        "| layout | tiles | guidance decode (VAE) | TCM | UNet | stats graphs | frame-step | attention share | vs untiled | final decode per frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, total = r["parts"], r["frame_step"]
        layout = "untiled" if r["tile"] is None else f"{r['tile'][0]}x{r['tile'][1]}, overlap {r['overlap']}"
        stats = cell(p["stats"]) if r["tile"] is not None else "-"
        lines.append(f"| {layout} | {r['tiles']} | {cell(p['guidance_decode'])} | {cell(p['tcm'])} | {cell(p['unet'])} | {stats} | "
                     f"{cell(total)} | {100 * total['attention'] / total['total']:.1f}% | {r['vs_untiled']:.2f}x | {cell(r['final_decode'])} |")  # fmt: skip
    return "\n".join(lines)


# -- memory and seconds of one frame-step (child processes) ---------------------------------------------
def one_step(model: Path, height: int, width: int, tile: tuple[int, int] | None, out: Path) -> None:
    """In the child: one frame, one step on ONNX Runtime's CPU backend; seconds written to ``out`` as JSON."""
    import numpy as np

    from svsr.api import Upscaler
    from svsr.bench import GraphTimer
    from svsr.contract.noise import PhiloxNoise

    start = time.perf_counter()
    upscaler = Upscaler.open(model, backend="ort")
    opened = time.perf_counter() - start
    sampler = upscaler.pipeline
    timer = GraphTimer(sampler.backend)
    calls: dict[str, int] = {}
    timed_run = timer.run

    def counted_run(graph: str, inputs: Any, outputs: Any) -> None:
        calls[graph] = calls.get(graph, 0) + 1  # which graphs ran how often (the tiled path runs the statistics graphs)
        timed_run(graph, inputs, outputs)

    timer.run = counted_run  # type: ignore[method-assign]
    sampler.backend = timer
    step_seconds: list[float] = []
    run_step = sampler.run_step

    def timed_step(*args: Any, **kwargs: Any) -> None:
        begin = time.perf_counter()
        run_step(*args, **kwargs)
        step_seconds.append(time.perf_counter() - begin)

    sampler.run_step = timed_step  # the frame-step alone: one frame, so one sweep is one frame-step
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    begin = time.perf_counter()
    sampler.upscale([frame], num_inference_steps=1, noise=PhiloxNoise(0), tile=tile)
    upscale = time.perf_counter() - begin
    out.write_text(json.dumps({"open_s": opened, "upscale_s": upscale, "frame_step_s": sum(step_seconds), "graph_s": timer.graph_seconds, "graph_calls": calls}))
    upscaler.close()


@dataclass(frozen=True)
class ChildResult:
    frame: tuple[int, int]
    tile: tuple[int, int] | None
    ended: str  # "ok", or how the child ended (exit status, signal, its last line)
    peak_rss_gib: float
    wall_s: float
    seconds: dict[str, float] | None


def _limit_address_space(cap: int | None) -> Callable[[], None] | None:
    if cap is None:
        return None

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return limit


def measure_child(model: Path, height: int, width: int, tile: tuple[int, int] | None, memory_cap: int | None) -> ChildResult:
    """One frame-step in a child process at low priority; its peak RSS from ``wait4``, however it ended."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err_path = Path(tmp) / "seconds.json", Path(tmp) / "stderr.txt"
        cmd = [sys.executable, __file__, "_one-step", str(model), f"{height}x{width}", "off" if tile is None else f"{tile[0]}x{tile[1]}", str(out)]
        start = time.perf_counter()
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_limit_address_space(memory_cap),
                                    env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            ended, seconds = "ok", json.loads(out.read_text())
        else:
            tail = [line for line in err_path.read_text(errors="replace").splitlines() if line.strip()][-1:] or ["no output"]
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            ended, seconds = f"{how}: {tail[0][:300]}", None
        return ChildResult((height, width), tile, ended, usage.ru_maxrss / 2**20, wall, seconds)


def memory_markdown(results: list[ChildResult], memory_cap: int | None) -> str:
    cap = f"address space capped at {memory_cap / 2**30:.0f} GiB per child" if memory_cap else "no memory cap"
    lines = [f"ONNX Runtime CPU, one frame, one step, {cap}", "",
             "| LR (HxW) | layout | peak RSS GiB | frame-step s | whole call s (open + upscale) | graph calls | how it ended |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        layout = "untiled" if r.tile is None else f"{r.tile[0]}x{r.tile[1]} tiles"
        step = f"{r.seconds['frame_step_s']:.1f}" if r.seconds else "-"
        whole = f"{r.seconds['open_s'] + r.seconds['upscale_s']:.1f}" if r.seconds else f"({r.wall_s:.1f} until it ended)"
        calls = ", ".join(f"{g} {n}" for g, n in r.seconds["graph_calls"].items() if g != "blend") if r.seconds else "-"
        lines.append(f"| {r.frame[0]}x{r.frame[1]} | {layout} | {r.peak_rss_gib:.2f} | {step} | {whole} | {calls} | {r.ended} |")
    return "\n".join(lines)


def _memory_size(text: str) -> int:
    from svsr.contract.video_options import parse_memory_size

    return parse_memory_size(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_one-step"]:  # the child of `memory`
        model, frame, tile, out = argv[1:5]
        one_step(Path(model), *parse_size(frame), None if tile == "off" else parse_size(tile), Path(out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("flops", help="FLOPs per frame-step on the meta device (no memory)")
    f.add_argument("--preset", default="full")
    f.add_argument("--frame", type=parse_size, default=(180, 320), help="padded LR frame, HEIGHTxWIDTH (default 180x320)")
    f.add_argument("--tiles", type=parse_size, nargs="+", default=[(128, 128), (64, 64)])
    f.add_argument("--overlap", type=int, default=TILE_OVERLAP)
    m = sub.add_parser("memory", help="peak RSS and seconds of one frame-step per frame size, untiled and tiled (child processes)")
    m.add_argument("--model", type=Path, required=True, help="a build folder (schema 3: with the statistics graphs)")
    m.add_argument("--frames", type=parse_size, nargs="+", default=[(96, 128), (160, 224), (224, 320)])
    m.add_argument("--tile", type=parse_size, default=(64, 64))
    m.add_argument("--memory-cap", type=_memory_size, default=None, metavar="SIZE", help="address-space limit of each child (e.g. 14G)")
    for p in (f, m):
        p.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.what == "flops":
        rows = flops_rows(args.preset, *args.frame, args.tiles, args.overlap)
        print(flops_markdown(rows, args.preset))
        data: Any = rows
    else:
        results = []
        for height, width in args.frames:
            for tile in (None, args.tile):
                results.append(measure_child(args.model, height, width, tile, args.memory_cap))
                print(memory_markdown(results[-1:], args.memory_cap).splitlines()[-1], flush=True)
        print(memory_markdown(results, args.memory_cap))
        data = [asdict(r) for r in results]
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
