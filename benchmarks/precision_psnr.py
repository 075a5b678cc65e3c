"""PSNR of fp16 and bf16 graphs vs float32, end to end on the sample clip, plus per-graph errors.

Typed graphs are made (or reused) with ModelOpt AutoCast, calibrated from the reference
(svsr/engines/precision.py), and run on the CPU through their emulation graphs (float32 arithmetic,
every fp16/bf16 value rounded where it is produced; ONNX Runtime's CPU kernels would hide fp16
overflow and have no bf16 arithmetic):

    python benchmarks/precision_psnr.py                         # tiny preset, temporary build
    python benchmarks/precision_psnr.py --model build/full --steps 10 --json build/precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PRECISIONS = ("fp16", "bf16")
SIZES = ((36, 44), (40, 52))  # LR sizes of the per-graph check: the trace size and another


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def graph_errors(build: Path, manifest: dict, precisions, threads: int) -> list[dict]:
    from svsr.export.exporter import sample_inputs
    from svsr.contract.graphs import GRAPHS
    from svsr.runtime.sampling.ort_backend import graph_file

    rows = []
    for name, spec in GRAPHS.items():
        reference = session(build / manifest["graphs"][name]["file"], threads)
        # on the CPU the typed graphs run through their emulation twins (see graph_file)
        typed = {p: session(graph_file(build, manifest, name, p, "cpu"), threads) for p in precisions}
        for h, w in SIZES:
            feed = {s.name: t.numpy() for s, t in zip(spec.inputs, sample_inputs(name, h, w))}
            want = reference.run(None, feed)
            for p, sess in typed.items():
                got = sess.run(None, feed)
                for out, a, b in zip(spec.outputs, want, got):
                    err = float(np.abs(b.astype(np.float32) - a).max())
                    rows.append(
                        {
                            "graph": name,
                            "output": out.name,
                            "precision": p,
                            "lr_size": [h, w],
                            "max_abs": err,
                            "rel": err / float(np.abs(a).max()),
                            "finite": bool(np.isfinite(b).all()),
                        }
                    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="build folder made by svsr-export (default: a temporary tiny build)")
    parser.add_argument("--weights", type=Path, help="checkpoint the build came from (default: the manifest's source)")
    parser.add_argument("--frames", type=int, default=3, help="sample clip frames (default 3)")
    parser.add_argument("--width", type=int, default=64, help="LR width of the sample clip (default 64)")
    parser.add_argument("--height", type=int, default=48, help="LR height of the sample clip (default 48)")
    parser.add_argument("--steps", type=int, default=3, help="denoising steps of the end-to-end run (default 3)")
    parser.add_argument("--calibration-steps", type=int, default=6, help="steps of the calibration run (default 6)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated (default fp16,bf16)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1; 0 = library default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    from svsr.api import Upscaler, export_model
    from svsr.contract.manifest import load_manifest
    from svsr.contract.noise import NumpyNoise
    from svsr.sample_clip import sample_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = [p for p in args.precisions.split(",") if p]
    tmp = None
    if args.model is None:
        tmp = tempfile.TemporaryDirectory(prefix="svsr-precision-")
        source, build, label = "preset:tiny", Path(tmp.name) / "build", "tiny preset (seed 0)"
    else:
        build, label = args.model, str(args.model)
        source = str(args.weights or load_manifest(build)["checkpoint"]["source"])

    convert_log: list[str] = []
    for p in precisions:
        export_model(source, build, precision=p, engines=False, calibration_steps=args.calibration_steps, report=convert_log.append)
    manifest = load_manifest(build)

    errors = graph_errors(build, manifest, precisions, args.threads)

    frames = sample_frames(args.frames, width=args.width, height=args.height)
    outputs, seconds = {}, {}
    for p in ["fp32", *precisions]:
        with Upscaler.open(build, "ort", precision=p, threads=args.threads) as upscaler:
            start = time.perf_counter()
            outputs[p] = np.stack(upscaler.upscale(frames, args.steps, noise=NumpyNoise(0)))
            seconds[p] = time.perf_counter() - start
    end_to_end = {
        p: {
            "psnr_db": psnr(outputs[p], outputs["fp32"]),
            "min_frame_psnr_db": min(psnr(a, b) for a, b in zip(outputs[p], outputs["fp32"])),
            "max_abs": float(np.abs(outputs[p] - outputs["fp32"]).max()),
            "finite": bool(np.isfinite(outputs[p]).all()),
            "seconds": seconds[p],
        }
        for p in precisions
    }
    conversions = {
        name: {
            p: {
                "seconds": entry["typed"][p].get("convert_seconds"),
                "low_precision_nodes": entry["typed"][p].get("low_precision_nodes"),
                "kept_float32": len(entry["typed"][p].get("kept_float32", [])),
                "overflow_float32": len(entry["typed"][p].get("overflow_float32", [])),
            }
            for p in precisions
        }
        for name, entry in manifest["graphs"].items()
    }

    print(f"svsr precision check: {label}; sample clip {args.frames} frames {args.width}x{args.height} -> 4x, {args.steps} steps, numpy noise seed 0")
    print("\nend to end vs float32 (CPU, emulated typed graphs)")
    print(f"  {'precision':9s} {'PSNR dB':>8s} {'worst frame':>11s} {'max abs':>9s} {'seconds':>8s}")
    for p, r in end_to_end.items():
        print(f"  {p:9s} {r['psnr_db']:8.2f} {r['min_frame_psnr_db']:11.2f} {r['max_abs']:9.3g} {r['seconds']:8.1f}")
    print("\nper graph vs float32 on sample inputs: max abs / relative error")
    print(f"  {'graph':8s} {'output':9s} {'prec':5s} {'LR size':>8s} {'max abs':>9s} {'rel':>9s}")
    for r in errors:
        size = f"{r['lr_size'][0]}x{r['lr_size'][1]}"
        note = "" if r["finite"] else "  NOT FINITE"
        print(f"  {r['graph']:8s} {r['output']:9s} {r['precision']:5s} {size:>8s} {r['max_abs']:9.3g} {r['rel']:9.3g}{note}")
    print("\nconversion (ModelOpt AutoCast): seconds, nodes in low precision / float32 / kept for fp16 overflow")
    for name, per in conversions.items():
        cells = "   ".join(
            f"{p} {c['seconds'] if c['seconds'] is not None else '-':>6} s {c['low_precision_nodes']}/{c['kept_float32']}/{c['overflow_float32']}" for p, c in per.items()
        )
        print(f"  {name:8s} {cells}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "build": label,
            "clip": {"frames": args.frames, "width": args.width, "height": args.height, "steps": args.steps},
            "end_to_end": end_to_end,
            "graphs": errors,
            "conversions": conversions,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(r["finite"] for r in end_to_end.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
