"""Every engine against ONNX Runtime, one graph at a time, through polygraphy's Comparator.

Each graph's inputs are the ones it saw first in the doctor's ONNX Runtime clip (a graph the clip did
not run, such as ``blend`` and the statistics graphs on an untiled clip, gets the contract's sample
inputs at the clip's size, svsr/contract/graphs.py ``sample_graph_inputs``; a flow scale whose RAFT
needs larger frames than the clip's is not compared, and the check says so); polygraphy runs the
TensorRT engine (``TrtRunner``) and the float32 ONNX graph (``OnnxrtRunner``) on them and
``Comparator.compare_accuracy`` judges each output within the precision's tolerances. A graph that
drifts is named before the whole clip runs, where the drift would be blurred by 3 steps x 4 frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from svsr.checks.check import BUG_REPORT, FAIL, OK, WARN, Check, bug_report, sentence

# (atol, rtol) per engine precision against float32 ONNX Runtime: an element fails when it is off by
# more than both. Looser than the clip's output tolerance because graph outputs (latents, flows in
# pixels) are not bounded to [0, 1].
GRAPH_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (5e-2, 5e-2), "bf16": (1e-1, 1e-1)}

RunnerFactory = Callable[[str, Path], Any]  # (graph, file) -> a polygraphy runner


def onnx_runner(graph: str, onnx_file: Path) -> Any:
    """polygraphy's ONNX Runtime runner on the CPU for ``onnx_file``."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(onnx_file), providers=["cpu"]), name=f"onnxrt-{graph}")


def engine_runner(graph: str, plan_file: Path) -> Any:
    """polygraphy's TensorRT runner for a serialised plan (full TensorRT and a GPU)."""
    from polygraphy.backend.trt import EngineFromPath, TrtRunner

    return TrtRunner(EngineFromPath(str(plan_file)), name=f"trt-{graph}")


@dataclass(frozen=True)
class GraphRunners:
    """How each side of the comparison is run (tests stand doubles in for the TensorRT side)."""

    engine: RunnerFactory = engine_runner
    onnx: RunnerFactory = onnx_runner


def compare_graph(graph: str, engine: Any, onnx: Any, feeds: Mapping[str, np.ndarray], precision: str) -> tuple[bool, dict[str, float]]:
    """(whether every output of ``engine`` is within the tolerances of ``onnx`` on ``feeds``, the max abs diff per output)."""
    from polygraphy.comparator import Comparator, SimpleCompareFunc

    atol, rtol = GRAPH_TOLERANCE[precision]
    results = Comparator.run([engine, onnx], data_loader=[dict(feeds)])
    accuracy = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=rtol, check_error_stat="elemwise"))
    (_, engine_iterations), (_, onnx_iterations) = list(results)
    got, want = engine_iterations[0], onnx_iterations[0]
    diffs = {
        name: float(np.max(np.abs(np.asarray(got[name], np.float64) - np.asarray(want[name], np.float64)))) if name in want else float("inf")
        for name in got.keys()
    }
    return bool(accuracy), diffs


def graph_feeds(graphs: Mapping[str, Any], recorded: Mapping[str, Mapping[str, np.ndarray]],
                stats: Mapping[str, int] | None = None) -> dict[str, Mapping[str, np.ndarray]]:  # fmt: skip
    """Each graph's recorded inputs; a graph the clip did not run gets the contract's sample inputs at the clip's LR size.

    The size is read from the recorded ``denoise`` latent (the clip's padded LR size); without it
    only the recorded graphs have feeds. ``stats``: the build's statistics lengths
    (``manifest.stats_sizes``) for the ``norm_stats`` inputs. A flow graph whose RAFT scale needs
    larger frames than the clip's (:func:`too_small_for_clip`) gets none.
    """
    from svsr.contract.graphs import GRAPHS, sample_graph_inputs

    feeds: dict[str, Mapping[str, np.ndarray]] = {g: recorded[g] for g in graphs if g in recorded}
    latent = (recorded.get("denoise") or {}).get("z")
    if latent is None:
        return feeds
    height, width = (int(d) for d in np.shape(latent)[-2:])
    skipped = too_small_for_clip(graphs, height, width)
    for graph in graphs:
        if graph not in feeds and graph in GRAPHS and graph not in skipped:
            feeds[graph] = sample_graph_inputs(graph, height, width, stats=dict(stats) if stats else None)
    return feeds


def too_small_for_clip(graphs: Mapping[str, Any], height: int, width: int) -> dict[str, str]:
    """The flow graphs that cannot run on the clip's padded LR ``height`` x ``width`` (RAFT at x2 / x1 needs larger frames), with why."""
    from svsr.contract.graphs import FLOW_GRAPH_NAMES
    from svsr.contract.sizes import flow_scale_min_side

    skipped = {}
    for scale, graph in FLOW_GRAPH_NAMES.items():
        need = flow_scale_min_side(scale)
        if graph in graphs and min(height, width) < need:
            skipped[graph] = f"RAFT at x{scale} needs LR frames of at least {need} px per side, the clip's are {width}x{height}"
    return skipped


def check_engines_per_graph(
    build: Path, manifest: Mapping[str, Any], precision: str, graph_inputs: Mapping[str, Mapping[str, np.ndarray]],
    runners: GraphRunners = GraphRunners(),
) -> Check:  # fmt: skip
    """Each ``precision`` engine of ``build`` against its float32 ONNX graph on ONNX Runtime, on the recorded inputs."""
    from svsr.contract.manifest import stats_sizes
    from svsr.contract.precision import Precision

    name = f"TensorRT {precision} per graph vs ONNX Runtime"
    atol, rtol = GRAPH_TOLERANCE[precision]
    engines = manifest.get("engines") or {}
    feeds = graph_feeds(manifest["graphs"], graph_inputs, stats_sizes(manifest) if "norm_stats" in manifest else None)
    latent = (graph_inputs.get("denoise") or {}).get("z")
    # flow scales the clip's frames are too small for: the clip cannot run them, so there is nothing to compare
    skipped = too_small_for_clip(manifest["graphs"], *(int(d) for d in np.shape(latent)[-2:])) if latent is not None else {}
    missing = [g for g in manifest["graphs"] if g not in feeds and g not in skipped]
    if missing:
        return Check(name, WARN, f"skipped: no recorded inputs for {', '.join(missing)}", bug_report("the ONNX Runtime clip above recorded no inputs"))
    per_graph = Precision.parse(precision).per_graph()  # warp and blend are float32 engines whatever the precision
    diffs: dict[str, dict[str, float]] = {}
    failed: list[str] = []
    for graph, entry in manifest["graphs"].items():
        if graph in skipped:
            continue
        graph_precision = per_graph.get(graph, precision)
        record = engines.get(f"{graph}.{graph_precision}")
        if record is None:
            return Check(name, FAIL, f"no {graph_precision} engine for {graph} was built", BUG_REPORT)
        try:
            ok, diffs[graph] = compare_graph(
                graph, runners.engine(graph, build / record["file"]), runners.onnx(graph, build / entry["file"]), feeds[graph], graph_precision
            )
        except Exception as exc:  # noqa: BLE001 - polygraphy or a runtime failed: the check says which graph
            return Check(name, FAIL, f"the {graph} comparison failed: {sentence(exc)}", BUG_REPORT)
        if not ok:
            failed.append(graph)
    worst = {graph: max(per_output.values(), default=0.0) for graph, per_output in diffs.items()}
    figures = {"max_abs_diff": worst, "per_output": diffs, "atol": atol, "rtol": rtol, "not_compared": skipped}
    listed = ", ".join(f"{graph} {diff:.1e}" for graph, diff in worst.items())
    if skipped:
        listed += f"; not compared: {'; '.join(f'{graph} ({why})' for graph, why in skipped.items())}"
    if failed:
        return Check(
            name, FAIL, f"{', '.join(failed)} over atol {atol:g} / rtol {rtol:g} (max abs diff: {listed})",
            bug_report(f"the {precision} engines of {', '.join(failed)} drift from their ONNX graphs"), figures,
        )  # fmt: skip
    return Check(name, OK, f"every graph within atol {atol:g} / rtol {rtol:g} (max abs diff: {listed})", figures=figures)
