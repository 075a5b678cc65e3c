"""float32 ONNX -> typed (mixed fp16/bf16) ONNX with ModelOpt AutoCast, calibrated from the reference.

TensorRT 11 builds strongly typed networks only, so an engine's precision is whatever its ONNX graph
says. This module writes that graph: each exported float32 graph is converted by
``modelopt.onnx.autocast.convert_to_mixed_precision`` into ``<name>.<precision>.onnx`` beside it,
with calibration inputs recorded from a real reference run (:mod:`svsr.engines.calibration`), I/O
kept float32 (the runtime's buffers are float32) and dynamic dims untouched.

Two range guards decide which nodes stay float32:

- overflow (fp16 only, ours): every float tensor of the float32 graph is measured on the
  calibration samples; a node with an input or output whose |value| exceeds
  ``FP16_MAX / fp16_headroom`` is excluded from conversion by name. This is how the x4 VAE
  decoder's known fp16 overflow is caught; the nodes are listed as ``overflow_float32`` in the
  manifest, with the largest value seen (``calibrated_absmax``).
- precision (AutoCast's ``data_max`` rule): nodes whose calibrated I/O exceed ``data_max``
  (default 512, AutoCast's own default) stay float32 too. We apply that rule ourselves from the
  same streamed ranges and call AutoCast with ``data_max=inf``, which skips its reference runner:
  that runner deep-copies the model and keeps every activation of every sample, and on the full
  StableVSR denoise graph (2.7 GB) it went past 24 GiB and was killed; our ranges take ~4 GiB.

What stayed float32 is read back from the converted graph (every node other than Cast/Constant
with a float32 output) and recorded as ``kept_float32``.

ONNX Runtime's CPU provider is not a faithful judge of a typed graph: it has almost no bf16
kernels, and fp16 nodes without a CPU kernel run in float32 with the casts between them removed
(so fp16 overflow never shows). Each typed graph therefore also gets an emulation graph
(``<name>.<precision>.ortcpu.onnx``: float32 arithmetic, every fp16/bf16 tensor rounded where it
is produced), recorded as ``ort_cpu_file``; the ONNX Runtime backend runs those on a CPU
(svsr/runtime/sampling/ort_backend.py ``graph_file``).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

import svsr
from svsr.contract.paths import inside_build_folder
from svsr.engines.calibration import (
    CALIBRATION_DIR,
    TYPED_GRAPHS,
    CalibrationData,
    CalibrationSettings,
    calibration_key,
    default_frames,
    load_frames,
)
from svsr.contract.errors import InputError, MissingDependencyError, SvsrError
from svsr.contract.manifest import check_onnx_graph, load_manifest, sha256_file, write_manifest
from svsr.contract.precision import LOW_PRECISIONS, Precision, PrecisionLike
from svsr.export.onnx_files import needs_external_data, save_model

FP16_MAX = 65504.0
DEFAULT_DATA_MAX = 512.0  # AutoCast's default: |I/O| above it keeps a node float32
DEFAULT_FP16_HEADROOM = 2.0  # overflow guard at FP16_MAX / 2: calibration does not see every input
EXTRA = "svsr[precision]"
# bump when the conversion recipe changes, so typed graphs on disk are redone
METHOD_VERSION = 3  # 3: data_max applied from our streamed ranges, AutoCast without its reference runner
AUTOCAST_LOGGERS = ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast", "root")


class ConversionError(SvsrError):
    """AutoCast could not convert a graph."""


# -- the AutoCast thresholds (precision itself is svsr.contract.precision.Precision) ------------
@dataclass(frozen=True)
class AutoCastSettings:
    """The range thresholds of the conversion: which nodes stay float32 besides what the precision says."""

    data_max: float = DEFAULT_DATA_MAX
    fp16_headroom: float = DEFAULT_FP16_HEADROOM
    keep_coordinates: bool = True  # pixel-coordinate arithmetic (warp/RAFT grids) stays float32

    def __post_init__(self) -> None:
        if not self.data_max > 0:
            raise InputError(f"data_max must be positive, got {self.data_max}.")
        if not self.fp16_headroom >= 1:
            raise InputError(f"fp16_headroom must be at least 1, got {self.fp16_headroom}.")

    @property
    def overflow_limit(self) -> float:
        return FP16_MAX / self.fp16_headroom


# -- optional dependency ----------------------------------------------------------------------
def require_autocast() -> Callable[..., Any]:
    """``convert_to_mixed_precision``, or MissingDependencyError naming the extra to install."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as exc:  # modelopt itself, or one of its ONNX helpers
        missing = getattr(exc, "name", None) or str(exc).splitlines()[0]
        raise MissingDependencyError(
            f"fp16/bf16 graphs are made with NVIDIA ModelOpt AutoCast, which cannot be imported here (missing: {missing}); "
            f"install it with pip install '{EXTRA}', or use --precision fp32."
        ) from None
    return convert_to_mixed_precision


def _modelopt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-modelopt")
    except PackageNotFoundError:
        return "unknown"


@contextmanager
def _quiet_autocast(level: int = logging.ERROR) -> Iterator[None]:
    """AutoCast logs one INFO line per skipped node; keep only errors while converting."""
    loggers = [logging.getLogger(n if n != "root" else None) for n in AUTOCAST_LOGGERS]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, saved):
            lg.setLevel(old)


# -- range analysis and graph inspection ------------------------------------------------------
def _elem_types(model) -> dict[str, int]:
    """Element type of every typed tensor name (inputs, outputs, value_info, initializers, Constant outputs)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=False)
    except Exception:  # shape inference is best effort here; fall back to what the model states
        inferred = model
    types: dict[str, int] = {}
    graph = inferred.graph
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def calibrated_absmax(model_path: str | Path, samples: Iterable[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Largest |value| of every float32 tensor of a float32 graph over the calibration samples.

    Runs ONNX Runtime (CPU) with every float tensor marked as an output, one sample at a time,
    keeping only the running maximum (memory stays one sample's activations).
    """
    import onnx
    import onnxruntime as ort

    model_path = Path(model_path)
    model = onnx.load(str(model_path), load_external_data=False)
    types = _elem_types(model)
    existing = {o.name for o in model.graph.output}
    inputs = {i.name for i in model.graph.input}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out and out not in existing and types.get(out) == onnx.TensorProto.FLOAT:
                model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
                existing.add(out)
    tmp = model_path.with_name(f".{model_path.stem}.ranges.onnx")  # beside the source: external data resolves
    onnx.save_model(model, str(tmp))
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    finally:
        tmp.unlink(missing_ok=True)
    names = [o.name for o in session.get_outputs()]
    absmax: dict[str, float] = {}
    for feed in samples:
        for name, value in feed.items():
            if name in inputs and value.dtype == np.float32 and value.size:
                absmax[name] = max(absmax.get(name, 0.0), float(np.max(np.abs(value))))
        for name, value in zip(names, session.run(names, dict(feed))):
            if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.size:
                absmax[name] = max(absmax.get(name, 0.0), float(np.max(np.abs(value))))
    return absmax


def nodes_over(model_path: str | Path, absmax: Mapping[str, float], limit: float) -> dict[str, float]:
    """{node name: largest |I/O|} for nodes of a graph with a float input or output above ``limit``."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    found: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        values = [absmax[t] for t in list(node.input) + list(node.output) if t in absmax]
        if values and max(values) > limit:
            found[node.name] = max(values)
    return found


# Pixel-coordinate arithmetic: grids made by Range/CumSum, moved by flows, normalised for GridSample.
# Coordinates need an absolute precision far below a pixel at any size (fp16 has a ULP of 1 at
# 1024..2048, bf16 at 128..256), and calibration at a small size cannot see the magnitudes of a
# large one, so these nodes stay float32 whatever their calibrated range.
COORDINATE_SOURCES = ("Range", "CumSum")
COORDINATE_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Neg")  # one coordinate input makes coordinates
COORDINATE_MOVE = (
    "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Slice", "Gather", "Expand", "Split", "Tile", "Cast", "Identity", "Flatten",
)  # only input 0 carries data; the others are shapes and indices
COORDINATE_SINKS = ("GridSample",)  # input 1 is the sampling grid


def coordinate_nodes(model) -> list[str]:
    """Nodes computing pixel coordinates, in graph order (only nodes with a float output, plus sinks).

    A tensor is a coordinate when a Range/CumSum makes it, an elementwise op has one as an input,
    a data-movement op has one as its data input, or a Concat joins nothing but coordinates (so
    the grid's x/y concat counts, a concat of a flow with feature maps does not). GridSample
    nodes sampling at coordinates are listed too: their grid input must stay float32.
    """
    import onnx

    types = _elem_types(model)
    coords: set[str] = set()
    found: list[str] = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        inputs = [i for i in node.input if i]
        if node.op_type in COORDINATE_SOURCES:
            hit = True
        elif node.op_type in COORDINATE_ELEMENTWISE:
            hit = any(i in coords for i in inputs)
        elif node.op_type in COORDINATE_MOVE:
            hit = bool(inputs) and inputs[0] in coords
        elif node.op_type == "Concat":
            hit = bool(inputs) and all(i in coords for i in inputs)
        elif node.op_type in COORDINATE_SINKS:
            if len(inputs) > 1 and inputs[1] in coords:
                found.append(node.name)
            continue
        else:
            hit = False
        if hit:
            coords.update(o for o in node.output if o)
            if any(types.get(o) == onnx.TensorProto.FLOAT for o in node.output):
                found.append(node.name)
    return found


def _coordinate_nodes_of(path: Path) -> list[str]:
    import onnx

    return coordinate_nodes(onnx.load(str(path), load_external_data=False))


def float32_nodes(model) -> list[str]:
    """Nodes of a typed graph that still compute in float32: not Cast/Constant, with a float32 output."""
    import onnx

    types = _elem_types(model)
    kept = []
    for node in model.graph.node:
        if node.op_type in ("Cast", "Constant", "CastLike"):
            continue
        if any(types.get(out) == onnx.TensorProto.FLOAT for out in node.output if out):
            kept.append(node.name)
    return kept


def low_precision_nodes(model, precision: str, include_casts: bool = False) -> list[str]:
    """Nodes of a typed graph with an output in ``precision`` (fp16|bf16); Casts only with ``include_casts``."""
    import onnx

    wanted = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.BFLOAT16
    skip = ("Constant",) if include_casts else ("Cast", "Constant")
    types = _elem_types(model)
    return [n.name for n in model.graph.node if n.op_type not in skip and any(types.get(o) == wanted for o in n.output if o)]


# -- emulation for ONNX Runtime's CPU kernels ---------------------------------------------------
def emulate_low_precision(model, precision: str = "bf16"):
    """Same graph with float32 arithmetic and every fp16/bf16 tensor rounded where it is produced
    (a Cast to the low type and back); initializers and constants widened exactly.

    Why: ONNX Runtime's CPU provider has almost no bf16 kernels, and for fp16 it silently runs
    nodes without an fp16 kernel in float32 and drops the casts between such neighbours, so a
    typed graph run as is on a CPU neither fails nor overflows where a GPU engine would (measured:
    an all-fp16 VAE decoder with activations of 2.7e5 gave finite output). Rounding each value
    where it is produced is what an engine stores, so this graph shows fp16 overflow (inf) and
    bf16/fp16 rounding; it differs from an engine only in accumulation order (float32 here).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if precision not in LOW_PRECISIONS:
        raise InputError(f"emulation is for fp16 or bf16 graphs, not {precision!r}.")
    low = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.BFLOAT16
    fp32 = TensorProto.FLOAT
    tag = precision
    model = copy.deepcopy(model)
    types = _elem_types(model)
    graph = model.graph

    def to_fp32(tensor):
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)

    for i, init in enumerate(graph.initializer):
        if init.data_type == low:
            graph.initializer[i].CopyFrom(to_fp32(init))
    new_nodes = []
    for node in graph.node:
        if node.op_type in ("Constant", "ConstantOfShape"):  # low-precision values are exact in float32
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == low:
                    attr.t.CopyFrom(to_fp32(attr.t))
            new_nodes.append(node)
            continue
        is_cast_to_low = node.op_type == "Cast" and any(a.name == "to" and a.i == low for a in node.attribute)
        rounded = [(index, out) for index, out in enumerate(node.output) if out and types.get(out) == low]
        new_nodes.append(node)
        for index, out in rounded:
            if is_cast_to_low:  # already rounds: only come back to float32
                node.output[index] = f"{out}__{tag}"
            else:
                node.output[index] = f"{out}__fp32"
                new_nodes.append(helper.make_node("Cast", [f"{out}__fp32"], [f"{out}__{tag}"], to=low, name=f"{node.name}__round_{tag}_{index}"))
            new_nodes.append(helper.make_node("Cast", [f"{out}__{tag}"], [out], to=fp32, name=f"{node.name}__to_fp32_{index}"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    for vi in list(graph.input) + list(graph.output):
        if vi.type.tensor_type.elem_type == low:
            vi.type.tensor_type.elem_type = fp32
    del graph.value_info[:]
    if not needs_external_data(model):
        onnx.checker.check_model(model)
    return model


# -- conversion -------------------------------------------------------------------------------
@dataclass
class TypedResult:
    name: str
    precision: str
    entry: dict[str, Any]
    seconds: float
    reused: bool


def typed_key(source_sha256: str, precision: str, settings: AutoCastSettings, calibration: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a typed graph depends on; equal keys mean the file on disk can be reused."""
    import onnx

    return {
        "source_sha256": source_sha256,
        "precision": precision,
        "data_max": settings.data_max,
        "overflow_limit": settings.overflow_limit if precision == "fp16" else None,
        "keep_coordinates": settings.keep_coordinates,
        "keep_io_types": True,
        "calibration": dict(calibration),
        "modelopt": _modelopt_version(),
        "onnx": onnx.__version__,
        "svsr": svsr.__version__,
        "method": METHOD_VERSION,
    }


def convert_graph(
    source: str | Path,
    precision: str,
    samples: Sequence[Mapping[str, np.ndarray]],
    settings: AutoCastSettings = AutoCastSettings(),
    out: str | Path | None = None,
    ort_emulation: bool = True,
) -> dict[str, Any]:
    """AutoCast one float32 graph file to ``precision``; write ``<stem>.<precision>.onnx``; return its typed entry.

    ``samples`` are the calibration feeds: their streamed ranges drive both range guards.
    """
    if precision not in LOW_PRECISIONS:
        raise InputError(f"convert_graph makes fp16 or bf16 graphs, not {precision!r}.")
    convert = require_autocast()
    source = Path(source)
    out = Path(out) if out is not None else source.with_name(f"{source.stem}.{precision}.onnx")
    start = time.perf_counter()
    absmax = calibrated_absmax(source, samples)
    overflow = nodes_over(source, absmax, settings.overflow_limit) if precision == "fp16" else {}
    large_data = nodes_over(source, absmax, settings.data_max)  # AutoCast's data_max rule, see module docstring
    coordinates = _coordinate_nodes_of(source) if settings.keep_coordinates else []
    exclude = [f"^{re.escape(name)}$" for name in sorted(set(overflow) | set(large_data) | set(coordinates))]
    try:
        with _quiet_autocast():
            model = convert(
                onnx_path=str(source),
                low_precision_type=precision,
                nodes_to_exclude=exclude,
                data_max=np.inf,  # ranges already applied through `exclude`; skips the reference runner
                keep_io_types=True,
            )
    except Exception as exc:
        raise ConversionError(f"AutoCast could not convert {source.name} to {precision}: {type(exc).__name__}: {exc}") from exc
    kept = float32_nodes(model)
    low = low_precision_nodes(model, precision)
    still_fp16 = sorted(set(overflow) & set(low_precision_nodes(model, precision, include_casts=True))) if overflow else []
    if still_fp16:
        raise ConversionError(
            f"{source.name}: nodes {still_fp16[:5]} exceed the fp16 range on the calibration data but were converted to fp16."
        )
    emulated = emulate_low_precision(model, precision) if ort_emulation else None  # before saving: saving may move tensors out
    external = save_model(model, out)
    entry: dict[str, Any] = {
        "file": out.name,
        "sha256": sha256_file(out),
        "external_data": external,
        "precision": precision,
        "io_dtype": "float32",
        "kept_float32": kept,
        "overflow_float32": sorted(overflow),
        "coordinate_float32": coordinates,
        "calibrated_absmax": max(absmax.values()) if absmax else 0.0,
        "low_precision_nodes": len(low),
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "autocast": {
            "tool": "modelopt.onnx.autocast.convert_to_mixed_precision",
            "modelopt": _modelopt_version(),
            "data_max": settings.data_max,
            "overflow_limit": settings.overflow_limit if precision == "fp16" else None,
            "keep_io_types": True,
        },
    }
    if emulated is not None:
        emu_path = out.with_name(f"{source.stem}.{precision}.ortcpu.onnx")
        emu_external = save_model(emulated, emu_path)
        entry["ort_cpu_file"] = emu_path.name
        entry["ort_cpu_sha256"] = sha256_file(emu_path)
        entry["ort_cpu_external_data"] = emu_external
    entry["convert_seconds"] = round(time.perf_counter() - start, 2)
    return entry


def _reusable(entry: Mapping[str, Any] | None, build_dir: Path, key: Mapping[str, Any]) -> bool:
    if not entry or entry.get("key") != key:
        return False
    for file, sha in ((entry.get("file"), entry.get("sha256")), (entry.get("ort_cpu_file"), entry.get("ort_cpu_sha256"))):
        if file is None:
            continue
        path = inside_build_folder(build_dir, file, "a typed graph file")
        if not path.is_file() or sha256_file(path) != sha:
            return False
    externals = [e for e in (entry.get("external_data"), entry.get("ort_cpu_external_data")) if e]
    return all(inside_build_folder(build_dir, e, "a typed graph's external data").is_file() for e in externals)


def _load_or_record_calibration(
    build_dir: Path,
    components: Any,
    manifest: Mapping[str, Any],
    frames: list[np.ndarray],
    settings: CalibrationSettings,
    key: Mapping[str, Any],
    graphs: Sequence[str],
    report: Callable[[str], None],
) -> tuple[CalibrationData, dict[str, Path]]:
    # recorded data is read from, and written to, this folder: it must not lead out of the build folder
    folder = inside_build_folder(build_dir, CALIBRATION_DIR, "the calibration folder")
    try:
        data = CalibrationData.load(folder)
        if data.info.get("key") == dict(key) and all(g in data.arrays for g in graphs):
            report(f"  calibration reused ({folder})")
            return data, {g: folder / f"{g}.npz" for g in data.arrays}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        pass
    from svsr.engines.calibration import record_calibration
    from svsr.reference import StableVSRReference

    start = time.perf_counter()
    h, w = frames[0].shape[:2]
    report(f"  calibration: reference run on {len(frames)} frames {w}x{h}, {settings.num_inference_steps} steps")
    data = record_calibration(StableVSRReference(components), frames, settings, graphs=TYPED_GRAPHS)
    data.info["key"] = dict(key)
    paths = data.save(folder)
    counts = ", ".join(f"{g} {n}" for g, n in data.counts.items())
    report(f"  calibration recorded in {time.perf_counter() - start:.1f} s ({counts} samples) -> {folder}")
    return data, paths


def make_typed_graphs(
    build_dir: str | Path,
    components: Any,
    precision: PrecisionLike,
    calibration_frames: str | Path | Sequence[np.ndarray] | None = None,
    report: Callable[[str], None] = print,
    settings: CalibrationSettings = CalibrationSettings(),
    force: bool = False,
    ort_emulation: bool = True,
    autocast: AutoCastSettings = AutoCastSettings(),
) -> dict[str, Any]:
    """Make the typed graphs ``precision`` asks for beside the float32 graphs of ``build_dir``; return the manifest.

    ``components``: the loaded checkpoint (:func:`svsr.reference.checkpoint.load_components`) the
    graphs were exported from; it drives the calibration run. ``calibration_frames``: a folder of
    PNG/JPEG frames or a list of HxWx3 uint8 arrays (default: the bundled sample clip). Typed
    graphs whose source sha256, plan and calibration are unchanged are reused. Records each in
    ``manifest["graphs"][name]["typed"][precision]`` and writes the manifest.
    """
    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir)
    todo = Precision.parse(precision).typed()
    if not todo:
        return manifest
    require_autocast()
    if manifest["checkpoint"]["fingerprint"] != components.fingerprint:
        raise InputError(
            f"{build_dir} was exported from another checkpoint than the one loaded; re-run svsr-export for these weights."
        )
    frames = default_frames() if calibration_frames is None else load_frames(calibration_frames)
    cal_key = calibration_key(components.fingerprint, frames, settings)
    keys = {}
    pending = []
    for name, precision in todo.items():
        entry = manifest["graphs"][name]
        keys[name] = typed_key(entry["sha256"], precision, autocast, cal_key) | {"ort_emulation": ort_emulation}
        previous = entry.get("typed", {}).get(precision)
        if not force and _reusable(previous, build_dir, keys[name]):
            report(f"  {name:13s} {precision} reused   (unchanged graph, plan and calibration)")
        else:
            pending.append((name, precision))
    if pending:
        data, _npz_files = _load_or_record_calibration(
            build_dir, components, manifest, frames, settings, cal_key, sorted({n for n, _ in pending}), report
        )
        for name, precision in pending:
            entry = manifest["graphs"][name]
            source = check_onnx_graph(build_dir, name, entry)  # external data inside the folder before onnx opens it
            typed = convert_graph(source, precision, list(data.samples(name)), autocast, ort_emulation=ort_emulation)
            typed["source_sha256"] = entry["sha256"]
            typed["key"] = keys[name]
            entry.setdefault("typed", {})[precision] = typed
            note = f"; {len(typed['overflow_float32'])} overflow node(s) kept float32" if typed["overflow_float32"] else ""
            report(
                f"  {name:13s} {precision} converted in {typed['convert_seconds']:6.1f} s: "
                f"{typed['low_precision_nodes']} nodes {precision}, {len(typed['kept_float32'])} float32{note} -> {typed['file']}"
            )
            write_manifest(build_dir, manifest)  # after each graph: an interruption keeps the finished ones
    write_manifest(build_dir, manifest)
    return manifest
