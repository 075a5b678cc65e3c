"""Trace the graphs of svsr/contract/graphs.py to float32 ONNX and write manifest.json.

Exporter choice: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. It traces diffusers'
UNet/ControlNet, the VAE and torchvision's RAFT (12 refinements unrolled) with dynamic
batch/height/width and ONNX Runtime matches PyTorch to ~1e-6 at sizes other than the traced one
(docs/field-notes.md). The dynamo exporter needs onnxscript and has not been shown to handle these
models here. One trick matters: diffusers' UNet decides in Python whether to pass explicit upsample
sizes (only when a side is not a multiple of 2**upsamplers); we trace at an LR size that is not, so
the graph always carries the sizes and serves every multiple of 4.

The statistics lengths (``norm_stats``, symbolic ``denoise_stats`` / ``decode_stats`` in
svsr/contract/graphs.py) are measured once per export by running the stats graphs' wrappers in
record mode, checked against the GroupNorms the networks hold, and written as integers into the
graph files and the manifest: they are fixed per checkpoint, and a fixed dim keeps TensorRT
profiles and C++ hosts simple.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch
from torch.utils.flop_counter import FlopCounterMode

import svsr
from svsr.export.onnx_files import save_model
from svsr.export.wrappers import build_wrapper
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS, NORM_STATS_STRIDE, STATS_DIMS, STATS_GRAPHS, TensorSpec, sample_graph_inputs
from svsr.contract.manifest import MANIFEST_NAME, SCHEMA_VERSION, sha256_file, write_manifest
from svsr.contract.paths import escape_reason
from svsr.reference.checkpoint import Components
from svsr.contract.sizes import MIN_SIDE, PAD_MULTIPLE, SCALE

DEFAULT_OPSET = 17
MIN_OPSET = 17  # GroupNormalization-free patterns TensorRT 10 and 11 both parse
# Trace size (LR): multiples of 4 but not of 8 or 16, see the module docstring.
TRACE_HEIGHT, TRACE_WIDTH = 36, 44
# RAFT needs >= 128 px per side of what it sees (svsr.contract.sizes.flow_scale_min_side): the smaller-scale
# flow graphs trace at sizes it accepts, still multiples of 4 but not of 8 (flow_x1 then pads inside)
TRACE_SIZES = {"flow_x2": (68, 76), "flow_x1": (132, 140)}
FLOPS_METHOD = "FlopCounterMode, math SDPA, fit at P and 4P"  # part of the reuse key
FILE_FORMAT = 2  # bump when the written file changes for the same trace (2: declared I/O shapes)
EXPORT_METHOD = "torch.onnx.export (TorchScript tracing, dynamo=False)"
NAME_WIDTH = max(len(name) for name in GRAPH_NAMES)  # progress lines line up


@dataclass
class GraphResult:
    name: str
    path: Path
    seconds: float
    size_bytes: int
    reused: bool


def trace_size(name: str) -> tuple[int, int]:
    """The LR size graph ``name`` is traced and its FLOPs counted at."""
    return TRACE_SIZES.get(name, (TRACE_HEIGHT, TRACE_WIDTH))


def sample_inputs(name: str, height: int, width: int, batch: int = 1, seed: int = 0,
                  stats: dict[str, int] | None = None) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """:func:`svsr.contract.graphs.sample_graph_inputs` as torch tensors, in graph input order.

    ``stats``: the checkpoint's statistics lengths (:func:`norm_stats_sizes`); the ``norm_stats`` inputs need them.
    """
    feeds = sample_graph_inputs(name, height, width, batch, seed, stats=stats)
    return tuple(torch.from_numpy(feeds[spec.name]) for spec in GRAPHS[name].inputs)


def norm_stats_sizes(components: Components) -> dict[str, int]:
    """The length of each stats graph's output (2 x the groups of every GroupNorm call, in call order),
    measured by running its wrapper once at the trace size.

    The reference's count of the GroupNorms its networks hold (the size of the zeros its untiled run
    reports to calibration) must agree: a GroupNorm that were not called once per forward would
    shift every statistic after it.
    """
    from svsr.reference.pipeline import StableVSRReference

    measured = {}
    for name in STATS_GRAPHS:
        with torch.no_grad():
            out = build_wrapper(name, components)(*sample_inputs(name, *trace_size(name)))
        measured[name] = int(out.shape[1])
    held = StableVSRReference(components).norm_stats_sizes()
    if measured != held:
        raise RuntimeError(f"the networks' GroupNorm calls give statistics of {measured} values but they hold GroupNorms for {held}")
    return measured


def resolved_specs(specs: tuple[TensorSpec, ...], stats: dict[str, int]) -> tuple[TensorSpec, ...]:
    """``specs`` with the statistics dims (fixed per checkpoint) replaced by their lengths."""
    return tuple(TensorSpec(t.name, t.dtype, tuple(stats[d] if d in STATS_DIMS else d for d in t.shape)) for t in specs)


def count_flops(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one call, attention included: the math SDPA backend is forced because the counter
    has no formula for the fused CPU attention kernels and would silently skip them."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


def flops_model(flops: int, flops_at_4x_pixels: int, pixels: int = TRACE_HEIGHT * TRACE_WIDTH) -> dict[str, float]:
    """Fit FLOPs = linear * P + quadratic * P**2 (P = LR pixels) from counts at P and 4P.

    Convolutions grow with P, the VAE's full-resolution self-attention with P**2; the fit lets a
    benchmark turn the manifest into FLOPs at any resolution (svsr.contract.manifest.graph_flops).
    """
    # f1 = aP + bP^2, f4 = 4aP + 16bP^2  =>  b = (f4 - 4 f1) / (12 P^2), a = (f1 - b P^2) / P
    quadratic = max(0.0, (flops_at_4x_pixels - 4 * flops) / (12 * pixels**2))
    linear = (flops - quadratic * pixels**2) / pixels
    return {"linear": linear, "quadratic": quadratic}


def _export_key(components: Components, name: str, opset: int) -> dict[str, Any]:
    """Everything a graph file depends on; equal keys mean the file on disk can be reused."""
    return {
        "checkpoint": components.fingerprint,
        "graph": name,
        "opset": opset,
        "svsr": svsr.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "trace_size": list(trace_size(name)),
        "flops_method": FLOPS_METHOD,
        "file_format": FILE_FORMAT,
        # a graph's wrapper changes with the schema (denoise gained x0_history in schema 2): never reuse across it
        "schema_version": SCHEMA_VERSION,
    }


def _trace(module: torch.nn.Module, name: str, path: Path, opset: int, stats: dict[str, int]) -> None:
    specs = resolved_specs(GRAPHS[name].inputs + GRAPHS[name].outputs, stats)
    dynamic = {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in specs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes are expected
        torch.onnx.export(
            module,
            sample_inputs(name, *trace_size(name), stats=stats),
            str(path),
            input_names=[t.name for t in GRAPHS[name].inputs],
            output_names=[t.name for t in GRAPHS[name].outputs],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )


def declare_io_shapes(model: onnx.ModelProto, name: str, stats: dict[str, int]) -> None:
    """Write the graph's I/O shapes exactly as svsr/contract/graphs.py declares them, the statistics
    dims as this checkpoint's lengths.

    The tracer names some fixed dims symbolically (flow's 2 channels came out as 'Mulflow_dim_1');
    TensorRT profiles and C++ hosts read these declarations, so they must match the contract.
    """
    spec = GRAPHS[name]
    for value, tensor in zip(list(model.graph.input) + list(model.graph.output), resolved_specs(spec.inputs + spec.outputs, stats)):
        if value.name != tensor.name:
            raise RuntimeError(f"{name} graph I/O {value.name} does not match the spec's {tensor.name}")
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in tensor.shape:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def _finalise_file(traced: Path, final: Path, name: str, stats: dict[str, int]) -> str | None:
    """Declare the I/O shapes and save to ``final``; graphs over the protobuf limit get one external data file."""
    model = onnx.load(str(traced), load_external_data=True)
    declare_io_shapes(model, name, stats)
    return save_model(model, final)


def tensor_entries(specs) -> list[dict[str, Any]]:
    return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in specs]


def export_graph(components: Components, name: str, out_dir: Path, opset: int,
                 stats: dict[str, int] | None = None) -> tuple[dict[str, Any], GraphResult]:  # fmt: skip
    """Trace one graph into ``out_dir/<name>.onnx``, check it, count its FLOPs; return its manifest entry.

    ``stats``: the checkpoint's statistics lengths (:func:`norm_stats_sizes`, measured when not given).
    """
    start = time.perf_counter()
    stats = stats if stats is not None else norm_stats_sizes(components)
    module = build_wrapper(name, components)
    final = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory(prefix=f".{name}.partial-", dir=out_dir) as tmp:
        traced = Path(tmp) / f"{name}.onnx"
        _trace(module, name, traced, opset, stats)
        external = _finalise_file(traced, final, name, stats)
    onnx.checker.check_model(str(final), full_check=True)
    height, width = trace_size(name)
    flops = count_flops(module, sample_inputs(name, height, width, stats=stats))
    flops_2x = count_flops(module, sample_inputs(name, 2 * height, 2 * width, stats=stats))
    seconds = time.perf_counter() - start
    size = final.stat().st_size + ((out_dir / external).stat().st_size if external else 0)
    entry = {
        "file": final.name,
        "sha256": sha256_file(final),
        "external_data": external,
        "inputs": tensor_entries(resolved_specs(GRAPHS[name].inputs, stats)),
        "outputs": tensor_entries(resolved_specs(GRAPHS[name].outputs, stats)),
        "summary": GRAPHS[name].summary,
        "flops": {"per_call": flops, "lr_height": height, "lr_width": width, **flops_model(flops, flops_2x, height * width)},
        "export_key": _export_key(components, name, opset),
        "export_seconds": round(seconds, 2),
        "size_bytes": size,
    }
    return entry, GraphResult(name, final, seconds, size, reused=False)


def _reusable(old: dict[str, Any] | None, out_dir: Path, key: dict[str, Any]) -> bool:
    if not old or old.get("export_key") != key:
        return False
    file = out_dir / old["file"]
    if not file.exists() or sha256_file(file) != old["sha256"]:
        return False
    return not old.get("external_data") or (out_dir / old["external_data"]).exists()


def scheduler_entry(components: Components) -> dict[str, Any]:
    # _use_default_values says which keys the checkpoint left out: DDIM/DPM-Solver++ take their own defaults there
    config = {k: v for k, v in dict(components.scheduler.config).items() if not k.startswith("_") or k == "_use_default_values"}
    config = json.loads(json.dumps(config, default=lambda o: list(o) if isinstance(o, (tuple, np.ndarray)) else str(o)))
    return {
        "config": config,
        "alphas_cumprod": [float(v) for v in components.scheduler.alphas_cumprod.tolist()],
        "init_noise_sigma": float(components.scheduler.init_noise_sigma),
    }


def export_all(
    components: Components,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    preset: str | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export every graph (reusing unchanged ones unless ``force``) and write the manifest."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; use {MIN_OPSET} or newer")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old_graphs: dict[str, Any] = {}
    old_manifest = out_dir / MANIFEST_NAME
    if old_manifest.exists() and not force:
        try:
            old_graphs = json.loads(old_manifest.read_text()).get("graphs", {})
        except (json.JSONDecodeError, AttributeError):
            old_graphs = {}
    graphs: dict[str, Any] = {}
    stats = norm_stats_sizes(components)
    for name in GRAPH_NAMES:
        key = _export_key(components, name, opset)
        if _reusable(old_graphs.get(name), out_dir, key):
            graphs[name] = old_graphs[name]
            report(f"  {name:{NAME_WIDTH}s} reused   {graphs[name]['size_bytes'] / 1e6:9.1f} MB  (unchanged checkpoint and exporter)")
            continue
        entry, result = export_graph(components, name, out_dir, opset, stats)
        graphs[name] = entry
        report(f"  {name:{NAME_WIDTH}s} exported {result.size_bytes / 1e6:9.1f} MB  in {result.seconds:6.1f} s")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "svsr_version": svsr.__version__,
        # resolved: the build folder is used from elsewhere (svsr-bench, svsr-doctor, rebuild commands); only a default
        "checkpoint": {"fingerprint": components.fingerprint, "source": str(Path(components.source).resolve()), "preset": preset},
        "exporter": {
            "method": EXPORT_METHOD,
            "opset": opset,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "diffusers": _version("diffusers"),
            "torchvision": _version("torchvision"),
        },
        "graphs": graphs,
        "scheduler": scheduler_entry(components),
        "vae_scaling_factor": components.scaling_factor,
        "latent_channels": int(components.unet.config.in_channels) - 3,
        "norm_stats": {name: {"size": stats[name], "stride": NORM_STATS_STRIDE[name]} for name in STATS_GRAPHS},
        "sizes": {
            "min_side": MIN_SIDE,
            "pad_multiple": PAD_MULTIPLE,
            "scale": SCALE,
            "padding": "edge replication on the bottom and right up to a multiple of pad_multiple; the 4x output is cropped back",
        },
        "flow": {"arch": components.flow_arch, "num_flow_updates": components.num_flow_updates},
        "engines": {},
    }
    old = _read_json(old_manifest)
    if isinstance(old, dict):
        _remove_retired_graphs(out_dir, old, report)
    if old and not force:
        # keep records of typed graphs / engines made from graphs that did not change
        for name, entry in graphs.items():
            previous = old.get("graphs", {}).get(name, {})
            if previous.get("sha256") == entry["sha256"] and "typed" in previous:
                entry["typed"] = previous["typed"]
        manifest["engines"] = {
            k: v for k, v in old.get("engines", {}).items() if graphs.get(v.get("graph"), {}).get("sha256") == v.get("onnx_source_sha256")
        }
    write_manifest(out_dir, manifest)
    return manifest


def _retired_files(entry: Any) -> list[Any]:
    """The files a manifest's graph entry names: the graph, its external data, its typed graphs and their emulations."""
    if not isinstance(entry, dict):
        return []
    named = [entry.get("file"), entry.get("external_data")]
    typed = entry.get("typed") if isinstance(entry.get("typed"), dict) else {}
    for t in (t for t in typed.values() if isinstance(t, dict)):
        named += [t.get("file"), t.get("external_data"), t.get("ort_cpu_file"), t.get("ort_cpu_external_data")]
    return [n for n in named if n]


def _remove_retired_graphs(out_dir: Path, old: dict[str, Any], report: Callable[[str], None]) -> None:
    """Delete the files of graphs an older schema had and this one has not (schema 1's ``guide``).

    Only names that resolve inside the build folder are touched: the old manifest came from elsewhere.
    """
    old_graphs = old.get("graphs") if isinstance(old.get("graphs"), dict) else {}
    for name, entry in old_graphs.items():
        if name in GRAPH_NAMES:
            continue
        removed = []
        for file in _retired_files(entry):
            if escape_reason(out_dir, file) is not None or Path(file).name.split(".")[0] in GRAPH_NAMES:
                continue  # outside the folder, or a current graph's file
            path = out_dir / file
            if path.is_file():
                path.unlink()
                removed.append(file)
        if removed:
            report(f"  {name:{NAME_WIDTH}s} removed  (a graph of manifest schema {old.get('schema_version')}: {', '.join(removed)})")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def clean_partials(out_dir: Path) -> None:
    """Remove temporary folders an interrupted export left behind."""
    for partial in out_dir.glob(".*.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)
