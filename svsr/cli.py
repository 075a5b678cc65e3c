"""Command-line entry points: svsr-export, svsr-run, svsr-bench and svsr-doctor.

They only map arguments onto the Python API (``svsr.api``); svsr-run's video options are generated
from :class:`VideoOptions`. Every user-facing failure is an SvsrError: printed as one sentence on
stderr, exit code 2, and no partial output left behind. torch is imported only by the paths that
need it (export, the reference backend, the torch noise source).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Sequence

from svsr.contract.backends import BACKEND_NAMES
from svsr.contract.errors import InputError, SvsrError
from svsr.contract.precision import CHOICES, PRECISIONS, Precision
from svsr.contract.video_options import VideoOptions
from svsr.cli_options import (
    MAX_STEPS,
    OPSETS,
    SentenceParser,
    batch_range,
    bounded_int,
    lr_size,
    memory_size,
    ray_address,
    trt_version,
)


def _fail(message: str, code: int = 2) -> int:
    print(f"svsr: error: {message}", file=sys.stderr)
    return code


INTERNAL_ERROR = 3


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' signature
    """Warnings a user sees (a truncated input, dropped audio) as one line, without Python's source excerpt."""
    print(f"svsr: warning: {message}", file=file or sys.stderr)


def _guarded(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Run ``main``; every failure a user can reach is one sentence and a non-zero exit (``--debug``: tracebacks)."""
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option already printed as one sentence
        return int(exc.code or 0)
    if not args.debug:
        warnings.showwarning = _one_line_warning
    try:
        return main(args)
    except SvsrError as exc:
        if args.debug:
            traceback.print_exc()
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted; no output was written (svsr-run keeps its work folder: rerun to resume).", 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a bare traceback
        if args.debug:
            traceback.print_exc()
        what = " ".join(str(exc).split())[:300].rstrip(".") or "no message"
        return _fail(
            f"internal error ({type(exc).__name__}: {what}); rerun with --debug to see the traceback and please report it.",
            INTERNAL_ERROR,
        )


# -- svsr-export --------------------------------------------------------------------------------
def export_parser() -> argparse.ArgumentParser:
    p = SentenceParser(
        prog="svsr-export",
        description="Export StableVSR's networks to ONNX graphs (flow at x4/x2/x1, denoise, guide_decode, warp, decode, blend, and the "
        "whole-frame GroupNorm statistics graphs of tiled runs) with manifest.json.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="StableVSR checkpoint folder (diffusers layout) or Hugging Face id")
    src.add_argument("--preset", choices=["tiny", "demo", "full"],
                     help="write a preset checkpoint first (tiny/full: random weights from --seed; demo: the small trained model)")
    p.add_argument("--out", required=True, type=Path, help="build folder for graphs and manifest.json")
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="seed of the preset's random weights (default 0)")
    p.add_argument("--prompt", default="", help='prompt embedded once into the graphs (default "")')
    p.add_argument("--opset", type=bounded_int(*OPSETS), default=17, help=f"ONNX opset ({OPSETS[0]} to {OPSETS[1]}; default 17)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="precision of every graph (fp16/bf16: ModelOpt AutoCast, calibrated on real inputs; default fp32)")
    p.add_argument("--vae-precision", choices=PRECISIONS, help="override for the VAE graphs (guide_decode, decode, decode_stats); warp and blend always run in fp32")
    p.add_argument("--flow-precision", choices=PRECISIONS, help="override for the RAFT flow graphs (flow, flow_x2, flow_x1)")
    p.add_argument("--calibration-frames", type=Path, help="folder of PNG/JPEG frames to calibrate with (default: the sample clip)")
    p.add_argument("--onnx-only", action="store_true", help="write ONNX graphs and manifest only (no TensorRT engines)")
    engines = p.add_argument_group("TensorRT engines (need TensorRT and an NVIDIA GPU)")
    engines.add_argument("--resolution", type=lr_size, help="LR frame size WxH for static engines (fastest), e.g. 320x180")
    engines.add_argument("--min", dest="min_size", type=lr_size, help="smallest LR size WxH of a dynamic profile")
    engines.add_argument("--opt", dest="opt_size", type=lr_size, help="LR size WxH TensorRT tunes for")
    engines.add_argument("--max", dest="max_size", type=lr_size, help="largest LR size WxH of a dynamic profile")
    engines.add_argument("--lean", action="store_true",
                         help="version-compatible plans without TensorRT's lean runtime inside: hosts with only the lean runtime "
                              "of the same TensorRT version run them (pip install 'svsr[tensorrt-lean-cu13]')")
    engines.add_argument("--tile", metavar="HxW",
                         help="build the engines of the tiled graphs (denoise, guide_decode, decode) static at this tile of LR pixels "
                              "(fastest; svsr-run --tile auto then runs every frame size in tiles of it), the others over frame sizes")
    engines.add_argument("--batch", type=batch_range, help="independent clips per call: N or MIN:OPT:MAX (default 1)")
    p.add_argument("--force", action="store_true", help="re-export even when the graphs on disk are up to date")
    p.add_argument("--check-trt", action="store_true", help="lint the graphs against TensorRT's ONNX operator support")
    p.add_argument("--trt-version", type=trt_version, default="11", help="TensorRT version for --check-trt (11, 10 or 10.N; default 11)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def _export(args: argparse.Namespace) -> int:
    from svsr.api import engine_profile, engine_tile, export_model

    report = (lambda _msg: None) if args.quiet else print
    precision = Precision.from_flags(args.precision, args.vae_precision, args.flow_precision)
    if args.calibration_frames is not None and not args.calibration_frames.is_dir():
        raise InputError(f"--calibration-frames {args.calibration_frames} is not a folder; give a folder of PNG/JPEG frames.")
    # bad sizes fail before any work
    profile = None if args.onnx_only else engine_profile(args.resolution, args.min_size, args.opt_size, args.max_size, args.batch)
    if args.lean and args.onnx_only:
        raise InputError("--lean says how to build TensorRT engines, and --onnx-only builds none; drop one of them.")
    tile = None if args.tile is None else engine_tile(args.tile, spell=lambda _name, value: f"--tile {value}")
    if tile is not None and args.onnx_only:
        raise InputError("--tile says the shape of the TensorRT engines, and --onnx-only builds none; drop one of them.")
    if tile is not None:
        profile = profile.with_tile(tile)  # a tile larger than the profile's largest frame is refused here, before any export work
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
        lean=args.lean,
        tile=tile,
        report=report,
    )
    report(f"svsr-export: done in {time.perf_counter() - start:.1f} s -> {args.out / 'manifest.json'}")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    return _guarded(_export, export_parser(), argv)


# -- svsr-run -----------------------------------------------------------------------------------
OUTPUT_RULE = (
    "where the output goes. A video gives a video (default INPUT_x4.EXT beside it; -o out.mkv picks the container, which must hold "
    "the codec and the input's audio, or add --no-audio), an image gives a PNG image (IMG_x4.png), a frame folder gives a frame "
    "folder (FOLDER_x4, or a video where -o names one). -o DIR/ (or an existing folder) puts NAME_x4.EXT inside DIR; several "
    "inputs (or a glob) need it."
)  # the rule itself: svsr.runtime.video.output_rule


def run_parser() -> argparse.ArgumentParser:
    p = SentenceParser(
        prog="svsr-run",
        description="Upscale a video (or a folder of PNG/JPEG frames) 4x with StableVSR.",
    )
    p.add_argument("input", type=Path, nargs="+", help="video files (mp4, mkv, mov, webm, ...), folders of frames or globs ('videos/*.mp4')")
    p.add_argument("-o", "--output", type=str, metavar="PATH", help=OUTPUT_RULE)
    p.add_argument("--model", type=Path, help="build folder written by svsr-export")
    p.add_argument("--backend", default="auto", choices=BACKEND_NAMES, help="default auto")
    p.add_argument("--weights", help="checkpoint folder for --backend reference")
    p.add_argument("--precision", default="auto", choices=CHOICES,
                   help="graph precision (default auto: trt picks fp16 > bf16 > fp32 engines, ort runs fp32)")
    p.add_argument("--vae-precision", choices=PRECISIONS, help="override --precision for the VAE graphs (guide_decode, decode, decode_stats)")
    p.add_argument("--flow-precision", choices=PRECISIONS, help="override --precision for the flow graphs")
    VideoOptions.add_arguments(p)
    p.add_argument("--chunk", help=argparse.SUPPRESS)  # removed: refused with a sentence
    p.add_argument("--report", type=Path, help="write per-input results (frames, fps, shots, seconds, backend, status) as JSON")
    p.add_argument("--ray", type=ray_address, metavar="local|auto|ADDRESS",
                   help="spread the shots of all inputs over a Ray cluster: local (start one here), auto (join the running one) or its address")
    p.add_argument("--ray-workers", type=bounded_int(1, 4096), help="Ray workers (default: one per GPU for TensorRT, else one per CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _expand_inputs(items: Sequence[Path]) -> tuple[list[Path], bool]:
    """Files, frame folders and globs -> paths; True when a glob was used (a batch even if it matched one)."""
    import glob

    paths: list[Path] = []
    globbed = False
    for item in items:
        text = str(item)
        if glob.has_magic(text):
            globbed = True
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"no file or folder matches {text!r}; check the pattern (quote it so the shell does not expand it).")
            paths += [Path(m) for m in matches]
        else:
            paths.append(item)
    return paths, globbed


def _run(args: argparse.Namespace) -> int:
    from svsr import api

    if args.chunk is not None:
        raise InputError(
            "--chunk is gone: long videos are now processed exactly as one clip, and --host-memory SIZE bounds the memory they use."
        )
    options = VideoOptions.from_args(args)  # every later sentence spells options as on this command line
    precision = Precision.from_flags(args.precision, args.vae_precision, args.flow_precision)
    api.check_video_options(options, model=args.model, backend=args.backend, weights=args.weights)
    inputs, globbed = _expand_inputs(args.input)
    batch = len(inputs) > 1 or globbed
    if batch and args.output is None:
        raise InputError(f"{len(inputs)} inputs need an output folder; add -o DIR/ (one output per input goes there).")
    if batch and Path(args.output).exists() and not Path(args.output).is_dir():
        raise InputError(f"-o {args.output} is a file, but several inputs need an output folder; give a folder.")
    if not batch:  # bad input fails here, before any model is loaded
        api.probe_input(inputs[0], fps=options.fps)
        api.resolve_output(inputs[0], args.output, options)
    report = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    results = api.upscale_videos(
        inputs,
        args.output if batch else None,
        output=None if batch else args.output,
        model=args.model,
        backend=args.backend,
        precision=precision,
        weights=args.weights,
        ray=args.ray,
        ray_workers=args.ray_workers,
        options=options,
        skip_existing=batch,
        raise_errors=not batch,
        progress=not args.quiet,
        report=report,
    )
    if args.report:
        _write_report(args.report, results)
    if batch and not args.quiet:
        print(_summary(results), file=sys.stderr)
    elif not args.quiet and results and results[0].output:
        if results[0].note:
            print(f"svsr-run: {Path(results[0].input).name}: {results[0].note}", file=sys.stderr)
        print(f"svsr-run: wrote {results[0].output}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        return _fail(f"{len(failed)} of {len(results)} inputs failed ({failed[0].input}: {failed[0].message.rstrip('.')}).")
    return 0


def _summary(results) -> str:
    lines = ["", f"{'input':40s} {'frames':>7s} {'shots':>6s} {'seconds':>9s} {'s/frame':>8s}  status"]
    for r in results:
        spf = f"{r.seconds_per_frame:.2f}" if r.seconds_per_frame is not None else "-"
        frames = str(r.frames) if r.frames is not None else "-"
        shots = str(len(r.shots)) if r.shots else "-"
        status = r.status + (f": {r.message}" if r.message and r.status != "done" else "")
        lines.append(f"{Path(r.input).name[:40]:40s} {frames:>7s} {shots:>6s} {r.seconds:9.1f} {spf:>8s}  {status}")
    lines += [f"{Path(r.input).name}: {r.note}" for r in results if r.note]
    return "\n".join(lines)


def _write_report(path: Path, results) -> None:
    import json
    import os

    rows = [
        {"path": r.input, "output": r.output, "frames": r.frames, "fps": r.fps, "shots": r.shots, "seconds": round(r.seconds, 3),
         "backend": r.backend, "status": r.status, **({"message": r.message} if r.message else {})}
        for r in results
    ]
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps({"inputs": rows}, indent=2) + "\n")
    os.replace(tmp, path)


def run_main(argv: Sequence[str] | None = None) -> int:
    return _guarded(_run, run_parser(), argv)


# -- svsr-bench ---------------------------------------------------------------------------------
def bench_parser() -> argparse.ArgumentParser:
    p = SentenceParser(
        prog="svsr-bench",
        description="Latency per graph, per frame-step and per output frame; memory; TFLOP/s. "
        "Each backend runs in its own process; the eager PyTorch reference is the baseline.",
    )
    p.add_argument("--model", type=Path, required=True, help="build folder written by svsr-export")
    p.add_argument("--backend", action="append", choices=["reference", "ort", "trt", "torch-fp16"],
                   help="repeatable; default: reference, ort, and trt / torch-fp16 where available")
    p.add_argument("--weights", help="checkpoint for the reference rows (default: the manifest's source)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="graph precision for ort/trt")
    p.add_argument("--resolution", type=lr_size, default="64x48", help="LR frame size WxH (default 64x48)")
    p.add_argument("--frames", type=bounded_int(1, 10_000), default=3, help="frames of the end-to-end clip (default 3)")
    p.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=2, help="denoising steps end to end (default 2)")
    p.add_argument("--long-clip", type=bounded_int(0, 1_000_000), default=0, metavar="N",
                   help="also run an N-frame clip through the clip store and report host overhead (default 0: skip)")
    p.add_argument("--host-memory", type=memory_size, default=16 * 2**20, metavar="SIZE", help="clip-store RAM for --long-clip (default 16M, so it spills)")
    p.add_argument("--warmup", type=bounded_int(0, 1000), default=2, help="untimed calls per graph first (default 2)")
    p.add_argument("--repeats", type=bounded_int(1, 10_000), default=5, help="timed calls per graph (default 5)")
    p.add_argument("--json", type=Path, help="write all rows as JSON")
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart of per-graph latency")
    return p


def _bench(args: argparse.Namespace) -> int:
    import json

    from svsr.bench import check_plotting, markdown, plot, run_bench, torch_cuda_available
    from svsr.device.cuda import cuda_device_status
    from svsr.device.tensorrt import tensorrt_importable

    width, height = (int(v) for v in args.resolution.lower().split("x"))  # checked by lr_size
    trt_here = tensorrt_importable() and cuda_device_status()[0]
    backends = args.backend or ["reference", "ort"] + (["trt"] if trt_here else []) + (["torch-fp16"] if torch_cuda_available() else [])
    from svsr.api import check_steps

    check_steps(args.steps, args.model, spell=lambda _name, value: f"--steps {value}")
    if args.plot:
        check_plotting()  # optional dependencies are checked before the benchmark runs
    host_memory = args.host_memory
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


# -- svsr-doctor --------------------------------------------------------------------------------
def doctor_parser() -> argparse.ArgumentParser:
    p = SentenceParser(
        prog="svsr-doctor",
        description="Check this machine for svsr (NVIDIA driver, CUDA, TensorRT, GPU, ONNX Runtime, video encoders) and run "
        "the tiny preset end to end; exit 1 only when a check that could run failed.",
    )
    p.add_argument("--model", type=Path, help="build folder whose engine records to check against this machine")
    p.add_argument("--json", type=Path, help="also write every check (name, status, value, fix) to this JSON file, e.g. for a bug report")
    p.add_argument("--work-dir", type=Path, help="export the tiny preset here and keep it (a later run reuses it); default: a temporary folder")
    return p


def _doctor(args: argparse.Namespace) -> int:
    from svsr.doctor import doctor

    return doctor(args.model, args.json, args.work_dir)


def doctor_main(argv: Sequence[str] | None = None) -> int:
    return _guarded(_doctor, doctor_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_main())
