"""Command-line entry points: svsr-export and svsr-run.

Every user-facing failure is an SvsrError: printed as one sentence on stderr, exit code 2, and no
partial output left behind. torch is imported only by the paths that need it (export, the
reference backend, the torch noise source).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

from svsr.errors import InputError, MissingDependencyError, SvsrError


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
        return _fail("interrupted; no output was written.", 130)


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", message=".*low cpu memory usage.*")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
    except ImportError:
        pass


def _require_export_extra(feature: str) -> None:
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"{feature} needs PyTorch and diffusers; install them with pip install 'svsr[export]'.") from None


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
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of every graph (fp16/bf16: ModelOpt AutoCast, calibrated on real inputs; default fp32)")
    p.add_argument("--vae-precision", choices=["fp32", "fp16", "bf16"], help="override for the VAE graphs (guide, decode)")
    p.add_argument("--flow-precision", choices=["fp32", "fp16", "bf16"], help="override for the RAFT flow graph")
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
    _require_export_extra("svsr-export")
    _quiet_libraries()
    from svsr.export.exporter import clean_partials, export_all
    from svsr.reference.checkpoint import load_components

    report = (lambda _msg: None) if args.quiet else print
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the build.")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise InputError(f"cannot write to {out}; choose a writable --out folder.")
    clean_partials(out)
    profile = None if args.onnx_only else _engine_profile(args)  # bad sizes fail before any work
    plan = _precision_plan(args)
    weights = args.weights
    if args.preset:
        weights = _ensure_preset(args.preset, args.seed, out / "checkpoint", report)
    start = time.perf_counter()
    report(f"svsr-export: loading {weights}")
    components = load_components(weights, prompt=args.prompt)
    report(f"svsr-export: exporting float32 ONNX graphs to {out} (opset {args.opset})")
    manifest = export_all(components, out, opset=args.opset, force=args.force, preset=args.preset, report=report)
    if plan is not None:
        from svsr.engines.precision import make_typed_graphs

        report(f"svsr-export: typed graphs ({plan.describe()}), calibrated on {args.calibration_frames or 'the sample clip'}")
        manifest = make_typed_graphs(out, components, plan, calibration_frames=args.calibration_frames, report=report, force=args.force)
    if args.check_trt:
        from svsr.export.trt_lint import format_findings, lint_model

        errors = 0
        for name, entry in manifest["graphs"].items():
            findings = lint_model(out / entry["file"], trt_version=args.trt_version)
            errors += sum(f.severity == "error" for f in findings)
            report(f"{name}: {format_findings(findings)}")
        if errors:
            return _fail(f"{errors} node(s) would not parse in TensorRT {args.trt_version}; see the report above.", 1)
    if not args.onnx_only:
        code = _build_engines(args, out, manifest, plan, profile, report)
        if code:
            return code
    report(f"svsr-export: done in {time.perf_counter() - start:.1f} s -> {out / 'manifest.json'}")
    return 0


# LR sizes an engine serves when no --resolution / --min/--max is given
DEFAULT_PROFILE = {"min": "32x32", "opt": "320x180", "max": "640x360"}


def _precision_plan(args: argparse.Namespace):
    """The per-graph precision plan, or None when every graph stays float32."""
    if args.precision == "fp32" and args.vae_precision in (None, "fp32") and args.flow_precision in (None, "fp32"):
        return None
    try:
        from svsr.engines.precision import parse_precision_args
    except ImportError:
        raise MissingDependencyError("--precision fp16/bf16 needs ModelOpt; install it with pip install 'svsr[precision]'.") from None
    return parse_precision_args(args.precision, args.vae_precision, args.flow_precision)


def _engine_profile(args: argparse.Namespace):
    """The optimisation profile the engine options describe (default: DEFAULT_PROFILE)."""
    from svsr.engines.profiles import Profile

    ranged = any(v is not None for v in (args.min_size, args.opt_size, args.max_size))
    if args.resolution is None and not ranged:
        return Profile.from_args(batch=args.batch, **DEFAULT_PROFILE)
    return Profile.from_args(resolution=args.resolution, min=args.min_size, opt=args.opt_size, max=args.max_size, batch=args.batch)


def _build_engines(args: argparse.Namespace, out: Path, manifest: dict, plan, profile, report: Callable[[str], None]) -> int:
    """Build TensorRT engines where possible; otherwise say why and fail (graphs are kept)."""
    from svsr.engines.builder import build_engines, tensorrt_build_available
    from svsr.manifest import write_manifest

    available, reason = tensorrt_build_available()
    if not available:
        return _fail(
            f"TensorRT engines were not built ({reason.rstrip('.')}); the ONNX graphs and manifest in {out} are ready "
            "(pass --onnx-only when you only want those).",
            1,
        )
    precision = plan if plan is not None else args.precision
    report(f"svsr-export: building TensorRT engines for LR {profile.describe()}")
    manifest["engines"] = build_engines(out, manifest, precision, profile, report, force=args.force)
    write_manifest(out, manifest)
    return 0


def _ensure_preset(preset: str, seed: int, folder: Path, report: Callable[[str], None]) -> Path:
    """Write the preset checkpoint once; reuse it while its preset and seed are unchanged."""
    import json

    from svsr.reference.presets import write_preset

    marker = folder / "svsr_preset.json"
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            if info.get("preset") == preset and info.get("seed") == seed:
                return folder
        except json.JSONDecodeError:
            pass
    report(f"svsr-export: writing the {preset!r} preset (random weights, seed {seed}) to {folder}")
    return write_preset(preset, folder, seed=seed)


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
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="graph precision (default auto: trt picks fp16 > bf16 > fp32 engines, ort runs fp32)")
    p.add_argument("--vae-precision", choices=["fp32", "fp16", "bf16"], help="override --precision for guide + decode")
    p.add_argument("--flow-precision", choices=["fp32", "fp16", "bf16"], help="override --precision for flow")
    p.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--noise", default="numpy", choices=["numpy", "torch"], help="noise source (torch reproduces the reference)")
    p.add_argument("--chunk", type=int, help="frames per chunk (default: from a memory budget)")
    p.add_argument("--codec", default="h264", choices=["h264", "h265", "ffv1", "vp9"], help="video codec (default h264)")
    p.add_argument("--crf", type=int, default=18, help="quality for h264/h265 (lower is better; default 18)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run(args: argparse.Namespace) -> int:
    from svsr.noise import make_noise
    from svsr.runtime.job import resolve_output, upscale_video
    from svsr.runtime.video import probe

    if args.steps < 1:
        raise InputError(f"--steps is {args.steps}; use at least 1.")
    info = probe(args.input)  # bad input fails here, before any model is loaded
    output = resolve_output(args.input, args.output)
    noise = make_noise(args.noise, args.seed)
    total = info.num_frames
    upscaler, chunk, label = _make_upscaler(args, info)
    from tqdm.auto import tqdm

    with tqdm(
        total=(total or 0) * args.steps or None, desc=f"svsr-run [{label}]", unit="frame-step", disable=args.quiet, dynamic_ncols=True
    ) as bar:
        result = upscale_video(
            args.input,
            output,
            lambda frames: upscaler(frames, args.steps, noise, bar),
            chunk_frames=chunk,
            codec=args.codec,
            crf=args.crf,
        )
    if not args.quiet:
        print(f"svsr-run: wrote {result}")
    return 0


def _make_upscaler(args: argparse.Namespace, info) -> tuple[Callable, int, str]:
    """(upscale(frames, steps, noise, bar), chunk size, label) for the chosen backend."""
    from svsr.runtime.chunking import default_chunk_frames

    if args.backend == "reference":
        if not args.weights:
            raise InputError("--backend reference needs --weights CHECKPOINT_DIR; add it.")
        _require_export_extra("--backend reference")
        _quiet_libraries()
        from svsr.reference import StableVSRReference

        reference = StableVSRReference.from_pretrained(args.weights)
        chunk = args.chunk or default_chunk_frames(info.height, info.width)

        def run_reference(frames, steps, noise, bar):
            return reference.upscale(frames, num_inference_steps=steps, noise=noise, progress=bar)

        return run_reference, chunk, "reference"
    if args.model is None:
        raise InputError("svsr-run needs --model BUILD_DIR (made by svsr-export), or --backend reference --weights DIR.")
    from svsr.runtime.session import open_sampler

    sampler, label = open_sampler(args.model, backend=args.backend, precision=_run_precision(args))
    chunk = args.chunk or default_chunk_frames(info.height, info.width)

    def run_graphs(frames, steps, noise, bar):
        return sampler.upscale(frames, num_inference_steps=steps, noise=noise, progress=bar)

    return run_graphs, chunk, label


def _run_precision(args: argparse.Namespace) -> str | dict[str, str]:
    """--precision for every graph, or a per-graph mapping when --vae-precision / --flow-precision override it."""
    if args.vae_precision is None and args.flow_precision is None:
        return args.precision
    if args.precision == "auto":
        raise InputError("--vae-precision/--flow-precision override a fixed --precision; add --precision fp32, fp16 or bf16.")
    vae = args.vae_precision or args.precision
    return {"flow": args.flow_precision or args.precision, "denoise": args.precision, "guide": vae, "decode": vae}


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
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="graph precision for ort/trt")
    p.add_argument("--resolution", default="64x48", help="LR frame size WxH (default 64x48)")
    p.add_argument("--frames", type=int, default=3, help="frames of the end-to-end clip (default 3)")
    p.add_argument("--steps", type=int, default=2, help="denoising steps end to end (default 2)")
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
    from svsr.sizes import check_frame_size

    check_frame_size(height, width)
    return width, height


def _bench(args: argparse.Namespace) -> int:
    import json

    from svsr.bench import markdown, plot, run_bench, torch_cuda_available
    from svsr.runtime.session import tensorrt_usable

    width, height = _parse_resolution(args.resolution)
    if args.frames < 1 or args.steps < 1:
        raise InputError("--frames and --steps must be at least 1; raise them.")
    backends = args.backend or ["reference", "ort"] + (["trt"] if tensorrt_usable() else []) + (["torch-fp16"] if torch_cuda_available() else [])
    rows, errors = run_bench(args.model, backends, args.precision, height, width, args.frames, args.steps, args.warmup, args.repeats, args.weights)
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
