"""One plan from one typed ONNX graph, built through polygraphy's TensorRT loaders.

polygraphy (``polygraphy.backend.trt``) already does what a TensorRT build needs: the network
from an ONNX file (``NetworkFromOnnxPath``, strongly typed on TensorRT 10; TensorRT 11 networks are
strongly typed always), a builder config with optimisation profiles, optimisation level, memory
pool limits, version-compatible / exclude-lean-runtime flags and a timing cache loaded from a file
(``CreateConfig``), and the serialised engine from the network, appending its timings to the cache
file under a file lock (``EngineBytesFromNetwork``). svsr only checks the graph's inputs against the
contract and says what went wrong in one sentence. ``loaders`` stands in for the polygraphy module
in tests on machines without TensorRT.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from svsr.contract.errors import SvsrError
from svsr.contract.graphs import GRAPHS
from svsr.contract.profiles import Profile

# What svsr passes to polygraphy's loaders (tests check each against the installed polygraphy).
POLYGRAPHY_API: dict[str, tuple[str, ...]] = {
    "NetworkFromOnnxPath": ("path", "strongly_typed"),
    "CreateConfig": ("profiles", "load_timing_cache", "builder_optimization_level", "memory_pool_limits", "version_compatible", "exclude_lean_runtime"),
    "EngineBytesFromNetwork": ("network", "config", "save_timing_cache"),
    "Profile": ("add",),
}


class EngineBuildError(SvsrError):
    """TensorRT could not parse a graph or build an engine."""


def polygraphy_loaders() -> Any:
    """polygraphy's TensorRT loaders (``polygraphy.backend.trt``)."""
    from polygraphy.backend import trt as loaders

    return loaders


def strongly_typed_flag(trt: Any) -> bool:
    """Ask for a strongly typed network on TensorRT 10.x; 11+ makes only those (and deprecates the flag)."""
    major = int((re.findall(r"\d+", str(trt.__version__)) or ["0"])[0])
    return major < 11


def build_plan(
    trt: Any, graph: str, onnx_path: Path, profile: Profile, options: Mapping[str, Any], timing_cache: Path, *, loaders: Any = None,
    stats: Mapping[str, int] | None = None,
) -> bytes:
    """The serialised plan of ``graph`` from ``onnx_path`` for ``profile`` with the builder ``options`` (timings cached in ``timing_cache``).

    ``stats``: the checkpoint's statistics lengths (``manifest.stats_sizes``) for graphs with a ``norm_stats`` input.
    """
    p = loaders if loaders is not None else polygraphy_loaders()
    try:
        builder, network, parser = p.NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly_typed_flag(trt))()
    except Exception as exc:  # noqa: BLE001 - polygraphy raises its own exception after logging the parser's errors
        raise EngineBuildError(f"TensorRT could not parse {onnx_path} ({_text(exc)}); check it with svsr-export --check-trt.") from None
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    expected = {t.name for t in GRAPHS[graph].inputs}
    if names != expected:
        raise EngineBuildError(f"{onnx_path} has inputs {sorted(names)} but the {graph} graph needs {sorted(expected)}; re-run svsr-export --force.")
    shapes = p.Profile()
    for name, (lo, mid, hi) in profile.input_shapes(graph, stats).items():
        shapes.add(name, min=lo, opt=mid, max=hi)
    pools = {trt.MemoryPoolType.WORKSPACE: int(options["workspace_bytes"])} if "workspace_bytes" in options else None
    config = p.CreateConfig(
        profiles=[shapes],
        load_timing_cache=str(timing_cache) if timing_cache.exists() else None,
        builder_optimization_level=int(options["optimization_level"]),
        memory_pool_limits=pools,
        version_compatible=bool(options.get("version_compatible")),
        exclude_lean_runtime=bool(options.get("exclude_lean_runtime")),
    )
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan = p.EngineBytesFromNetwork((builder, network, parser), config=config, save_timing_cache=str(timing_cache))()
    except Exception as exc:  # noqa: BLE001
        plan, why = None, _text(exc)
    else:
        why = "TensorRT returned no engine"
    if not plan:
        raise EngineBuildError(
            f"TensorRT could not build the {graph} engine from {onnx_path} for {profile.describe()} ({why}); "
            "see TensorRT's messages above (often: not enough GPU memory for the profile's max size)."
        )
    return bytes(plan)


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
