"""Command-line entry points: svsr-export and svsr-run.

Every user-facing failure is an SvsrError: printed as one sentence on stderr, exit code 2, and no
partial output left behind. torch is imported only by the paths that need it (export, the
reference backend, the torch noise source).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from svsr.contract.errors import InputError, SvsrError
from svsr.contract.noise import DEFAULT_NOISE, NOISE_KINDS
from svsr.contract.precision import CHOICES, PRECISIONS, Precision


def _fail(message: str, code: int = 2) -> int:
    print(f"svsr: error: {message}", file=sys.stderr)
    return code


def _guarded(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return main(args)
    except SvsrError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted; no output was written (svsr-run keeps its work folder: rerun to resume).", 130)


# -- svsr-export --------------------------------------------------------------------------------
def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="svsr-export",
        description="Export StableVSR's networks to ONNX graphs (flow, denoise, guide, decode) with manifest.json.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="StableVSR checkpoint folder (diffusers layout) or Hugging Face id")
    src.add_argument("--preset", choices=["tiny", "full"], help="write a random-weight checkpoint of this preset first")
    p.add_argument("--out", required=True, type=Path, help="build folder for graphs and manifest.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the preset's random weights (default 0)")
    p.add_argument("--prompt", default="", help='prompt embedded once into the graphs (default "")')
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer; default 17)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="precision of every graph (fp16/bf16: ModelOpt AutoCast, calibrated on real inputs; default fp32)")
    p.add_argument("--vae-precision", choices=PRECISIONS, help="override for the VAE graphs (guide, decode)")
    p.add_argument("--flow-precision", choices=PRECISIONS, help="override for the RAFT flow graph")
    p.add_argument("--calibration-frames", type=Path, help="folder of PNG/JPEG frames to calibrate with (default: the sample clip)")
    p.add_argument("--onnx-only", action="store_true", help="write ONNX graphs and manifest only (no TensorRT engines)")
    engines = p.add_argument_group("TensorRT engines (need TensorRT and an NVIDIA GPU)")
    engines.add_argument("--resolution", help="LR frame size WxH for static engines (fastest), e.g. 320x180")
    engines.add_argument("--min", dest="min_size", help="smallest LR size WxH of a dynamic profile")
    engines.add_argument("--opt", dest="opt_size", help="LR size WxH TensorRT tunes for")
    engines.add_argument("--max", dest="max_size", help="largest LR size WxH of a dynamic profile")
    engines.add_argument("--batch", help="independent clips per call: N or MIN:OPT:MAX (default 1)")
    p.add_argument("--force", action="store_true", help="re-export even when the graphs on disk are up to date")
    p.add_argument("--check-trt", action="store_true", help="lint the graphs against TensorRT's ONNX operator support")
    p.add_argument("--trt-version", default="11", help="TensorRT version for --check-trt (11, 10 or 10.N; default 11)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def _export(args: argparse.Namespace) -> int:
    from svsr.api import engine_profile, export_model

    report = (lambda _msg: None) if args.quiet else print
    precision = Precision.from_flags(args.precision, args.vae_precision, args.flow_precision)
    # bad sizes fail before any work
    profile = None if args.onnx_only else engine_profile(args.resolution, args.min_size, args.opt_size, args.max_size, args.batch)
    start = time.perf_counter()
    export_model(
        f"preset:{args.preset}" if args.preset else args.weights,
        args.out,
        precision=precision,
        engines=not args.onnx_only,
        profile=profile,
        seed=args.seed,
        prompt=args.prompt,
        opset=args.opset,
        calibration_frames=args.calibration_frames,
        check_trt=args.check_trt,
        trt_version=args.trt_version,
        force=args.force,
        report=report,
    )
    report(f"svsr-export: done in {time.perf_counter() - start:.1f} s -> {args.out / 'manifest.json'}")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    return _guarded(_export, export_parser(), argv)


# -- svsr-run -----------------------------------------------------------------------------------
def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="svsr-run",
        description="Upscale a video (or a folder of PNG/JPEG frames) 4x with StableVSR.",
    )
    p.add_argument("input", type=Path, help="video file (mp4, mkv, mov, webm, ...) or folder of frames")
    p.add_argument("-o", "--output", type=Path, help="output video or folder (default: INPUT_x4.EXT)")
    p.add_argument("--model", type=Path, help="build folder written by svsr-export")
    p.add_argument("--backend", default="auto", choices=["auto", "ort", "trt", "reference"], help="default auto")
    p.add_argument("--weights", help="checkpoint folder for --backend reference")
    p.add_argument("--precision", default="auto", choices=CHOICES,
                   help="graph precision (default auto: trt picks fp16 > bf16 > fp32 engines, ort runs fp32)")
    p.add_argument("--vae-precision", choices=PRECISIONS, help="override --precision for guide + decode")
    p.add_argument("--flow-precision", choices=PRECISIONS, help="override --precision for flow")
    p.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--noise", default=DEFAULT_NOISE, choices=NOISE_KINDS,
                   help="noise source (default philox: a pure function of seed, step and frame; torch reproduces the reference)")
    p.add_argument("--host-memory", metavar="SIZE",
                   help="RAM for the clip state, e.g. 512M or 8G (default: half of the available memory); beyond it the state goes to files in the work folder")
    p.add_argument("--work-dir", type=Path, help="folder for the clip state and checkpoints (default: beside the output, named after it)")
    p.add_argument("--restart", action="store_true", help="discard the checkpoint of an interrupted run instead of resuming it")
    p.add_argument("--flows", default="store", choices=["store", "recompute"],
                   help="store the optical flows (default) or recompute them each frame-step (less memory, more compute)")
    p.add_argument("--fps", help="frame rate of a folder of frames (default 24), e.g. 30 or 30000/1001")
    p.add_argument("--chunk", type=int, help=argparse.SUPPRESS)  # removed: refused with a sentence
    p.add_argument("--codec", default="h264", choices=["h264", "h265", "ffv1", "vp9"], help="video codec (default h264)")
    p.add_argument("--crf", type=int, default=18, help="quality for h264/h265 (lower is better; default 18)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run(args: argparse.Namespace) -> int:
    from svsr.api import Upscaler
    from svsr.runtime.clip_store import parse_memory_size
    from svsr.runtime.job import resolve_output
    from svsr.runtime.video_probe import probe

    if args.chunk is not None:
        raise InputError(
            "--chunk is gone: long videos are now processed exactly as one clip, and --host-memory SIZE bounds the memory they use."
        )
    if args.steps < 1:
        raise InputError(f"--steps is {args.steps}; use at least 1.")
    host_memory = parse_memory_size(args.host_memory) if args.host_memory is not None else None
    fps = _parse_fps(args.fps) if args.fps is not None else None
    precision = Precision.from_flags(args.precision, args.vae_precision, args.flow_precision)
    probe(args.input, fps=fps)  # bad input fails here, before any model is loaded
    output = resolve_output(args.input, args.output)
    report = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    with Upscaler.open(args.model, backend=args.backend, precision=precision, weights=args.weights) as upscaler:
        result = upscaler.upscale_video(
            args.input,
            output,
            num_inference_steps=args.steps,
            seed=args.seed,
            noise=args.noise,
            codec=args.codec,
            crf=args.crf,
            host_memory=host_memory,
            work_dir=args.work_dir,
            restart=args.restart,
            flows=args.flows,
            fps=fps,
            progress=not args.quiet,
            report=report,
        )
    if not args.quiet:
        print(f"svsr-run: wrote {result}")
    return 0


def _parse_fps(text: str) -> "Fraction":
    from fractions import Fraction

    try:
        fps = Fraction(text).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--fps {text!r} is not a frame rate; write it like 24, 29.97 or 30000/1001.") from None
    if not 0 < fps <= 1000:
        raise InputError(f"--fps {text} is outside 0..1000; give the folder's real frame rate, e.g. 24.")
    return fps


def run_main(argv: Sequence[str] | None = None) -> int:
    return _guarded(_run, run_parser(), argv)


# -- svsr-bench ---------------------------------------------------------------------------------
def bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="svsr-bench",
        description="Latency per graph, per frame-step and per output frame; memory; TFLOP/s. "
        "Each backend runs in its own process; the eager PyTorch reference is the baseline.",
    )
    p.add_argument("--model", type=Path, required=True, help="build folder written by svsr-export")
    p.add_argument("--backend", action="append", choices=["reference", "ort", "trt", "torch-fp16"],
                   help="repeatable; default: reference, ort, and trt / torch-fp16 where available")
    p.add_argument("--weights", help="checkpoint for the reference rows (default: the manifest's source)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="graph precision for ort/trt")
    p.add_argument("--resolution", default="64x48", help="LR frame size WxH (default 64x48)")
    p.add_argument("--frames", type=int, default=3, help="frames of the end-to-end clip (default 3)")
    p.add_argument("--steps", type=int, default=2, help="denoising steps end to end (default 2)")
    p.add_argument("--long-clip", type=int, default=0, metavar="N",
                   help="also run an N-frame clip through the clip store and report host overhead (default 0: skip)")
    p.add_argument("--host-memory", default="16M", metavar="SIZE", help="clip-store RAM for --long-clip (default 16M, so it spills)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="write all rows as JSON")
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart of per-graph latency")
    return p


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--resolution {text!r} is not WxH; write it like 320x180.") from None
    from svsr.contract.sizes import check_frame_size

    check_frame_size(height, width)
    return width, height


def _bench(args: argparse.Namespace) -> int:
    import json

    from svsr.bench import markdown, plot, run_bench, torch_cuda_available
    from svsr.contract.tensorrt import tensorrt_importable

    width, height = _parse_resolution(args.resolution)
    if args.frames < 1 or args.steps < 1:
        raise InputError("--frames and --steps must be at least 1; raise them.")
    backends = args.backend or ["reference", "ort"] + (["trt"] if tensorrt_importable() else []) + (["torch-fp16"] if torch_cuda_available() else [])
    from svsr.runtime.clip_store import parse_memory_size

    if args.long_clip < 0:
        raise InputError(f"--long-clip is {args.long_clip}; give a frame count of 0 (skip) or more.")
    host_memory = parse_memory_size(args.host_memory)
    rows, errors = run_bench(args.model, backends, args.precision, height, width, args.frames, args.steps, args.warmup, args.repeats, args.weights,
                             long_clip=args.long_clip, host_memory=host_memory)
    if not rows:
        raise SvsrError("no backend could be measured: " + "; ".join(errors))
    table = markdown(rows, f"svsr-bench: {args.model} at LR {width}x{height}, {args.frames} frames x {args.steps} steps")
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps({"resolution": [width, height], "frames": args.frames, "steps": args.steps, "rows": rows, "skipped": errors}, indent=2))
    if args.plot:
        plot(rows, args.plot)
    return 0


def bench_main(argv: Sequence[str] | None = None) -> int:
    return _guarded(_bench, bench_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_main())
