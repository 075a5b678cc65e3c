"""Typed ONNX -> strongly typed TensorRT plans, one per graph, with timing and engine caches.

TensorRT 11 builds strongly typed networks only: each layer runs in the types written in the ONNX
graph (fp16/bf16 come from the typed graphs made by AutoCast), so no precision flag is set here,
ever. TensorRT 10.12+ is accepted by creating the network with the STRONGLY_TYPED flag.

Caches:
* engine cache: ``BUILD/engines/<graph>.<precision>.<key16>.plan`` plus a sidecar ``.json`` build
  record; the key is the sha256 of the typed-ONNX sha, TensorRT version, GPU name, compute
  capability, profile and builder options (svsr/contract/engine_records.py). A build is skipped when a
  plan with that key exists and still has its recorded sha256.
* timing cache: one file per TensorRT version and GPU model, reused by every build (``--force``
  rebuilds engines but keeps timings, which is what makes a rebuild fast).

Lean-runtime plans (``lean=True``, ``svsr-export --lean``): version-compatible plans
(``BuilderFlag.VERSION_COMPATIBLE``) that leave TensorRT's lean runtime out of the plan
(``BuilderFlag.EXCLUDE_LEAN_RUNTIME``), so a host with only the lean runtime of the same TensorRT
version (``svsr[tensorrt-lean-cu13]``, ~100 MB) runs them. These are the only builder flags ever
set. The options go into the cache key (a lean plan never replaces a normal one) and the record
says ``"version_compatible": true, "lean": true``.

Shapes (svsr/contract/profiles.py): a profile with a tile (``svsr-export --tile HxW``) builds the
graphs that run per tile static at it; a flow graph whose RAFT scale needs larger frames than the
profile's largest is skipped with its reason said (no record: no frame of the profile can use it).
Every graph file passes ``check_onnx_graph`` (inside the build folder, its sha256, its external data
inside the build folder) before TensorRT's parser opens it.

Plans are built through polygraphy's loaders (svsr/engines/polygraphy_build.py). Lean plans are
deserialised back (for their scratch size) the way they will be run: the full library loads the
lean runtime library first (``Runtime.load_runtime``, as trtexec does for ``--excludeLeanRuntime``
plans; svsr/device/tensorrt.py), never the plain full runtime. The TensorRT module and polygraphy's
loaders are passed in (``trt=``, ``loaders=``) so the whole flow runs against test doubles on a
CPU; TRT_BUILDER_API lists every TensorRT name used here.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from svsr.contract.profiles import Profile
from svsr.contract.engine_records import (
    ENGINE_DIR,
    BuildEnvironment,
    cache_key,
    engine_key,
    make_record,
    onnx_entry,
    plan_filename,
    validate_record,
)
from svsr.contract.errors import InputError, ManifestError, MissingDependencyError
from svsr.contract.precision import Precision, PrecisionLike
from svsr.device.tensorrt import INSTALL_FULL, import_tensorrt, open_plan_runtime
from svsr.engines.polygraphy_build import EngineBuildError, build_plan
from svsr.contract.graphs import GRAPH_NAMES
from svsr.contract.manifest import check_onnx_graph, sha256_file, stats_sizes

MIN_TENSORRT = (10, 12)  # first release whose ONNX parser + STRONGLY_TYPED flow this module relies on
DEFAULT_OPTIMIZATION_LEVEL = 3  # TensorRT's default; 4-5 search longer for (sometimes) faster kernels

# The only builder flags svsr sets (lean-runtime plans); precision is never a flag (strong typing).
LEAN_BUILDER_FLAGS = ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME")
LEAN_OPTIONS = {"version_compatible": True, "exclude_lean_runtime": True}  # builder options of a lean plan (in its cache key)

# Every TensorRT name this module touches, by owner (polygraphy's loaders touch the rest of the
# builder API; svsr/engines/polygraphy_build.py lists what svsr passes them). The runtime part
# (Runtime, ICudaEngine, Logger) is checked against the real tensorrt_lean_bindings module in tests.
# The others cannot be imported on a machine without TensorRT's libraries (the
# `tensorrt-cu13-bindings` wheel needs libnvinfer.so.11 from NVIDIA's index), so tests check them
# against the string table of that wheel's tensorrt.so instead, and the recording doubles implement
# exactly these names.
TRT_BUILDER_API: dict[str, tuple[str, ...]] = {
    "tensorrt": ("__version__", "Logger", "Runtime", "Builder", "OnnxParser", "MemoryPoolType", "BuilderFlag"),
    "Logger": ("WARNING",),
    "MemoryPoolType": ("WORKSPACE",),
    "BuilderFlag": LEAN_BUILDER_FLAGS,
    "INetworkDefinition": ("num_inputs", "get_input"),
    "ITensor": ("name",),
    "Runtime": ("deserialize_cuda_engine", "engine_host_code_allowed", "load_runtime"),
    "ICudaEngine": ("get_device_memory_size_for_profile_v2",),
}
# Names that exist in TensorRT's builder but must never be used here (weak typing is gone in 11).
FORBIDDEN_WEAK_TYPING = ("BuilderFlag.FP16", "BuilderFlag.BF16", "BuilderFlag.INT8", "BuilderFlag.FP8", "BuilderFlag.TF32")


Report = Callable[[str], None]


# -- availability ---------------------------------------------------------------------------------
def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def check_tensorrt_version(trt: Any) -> str:
    version = str(getattr(trt, "__version__", "0"))
    if _version_tuple(version) < MIN_TENSORRT:
        raise MissingDependencyError(
            f"TensorRT {version} is too old: svsr builds strongly typed engines and needs TensorRT "
            f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} or newer (11.x recommended)."
        )
    if not hasattr(trt, "Builder") or not hasattr(trt, "OnnxParser"):
        raise MissingDependencyError(
            f"the installed TensorRT {version} is a runtime-only package (lean/dispatch) and cannot build engines; "
            f"install the full TensorRT ({INSTALL_FULL})."
        )
    return version


def tensorrt_build_available() -> tuple[bool, str]:
    """(True, "TensorRT X on GPU") when engines can be built here, else (False, the reason in one sentence)."""
    try:
        trt = import_tensorrt("building engines")
        version = check_tensorrt_version(trt)
    except MissingDependencyError as exc:
        return False, str(exc)
    from svsr.device.cuda import cuda_device_status

    ok, what = cuda_device_status()
    if not ok:
        return False, f"TensorRT {version} is installed but {what}; engines are built on the GPU they will run on."
    return True, f"TensorRT {version} on {what}"


def current_environment(trt: Any, cuda: Any) -> BuildEnvironment:
    """This machine's TensorRT version and GPU (name + compute capability), made as every MachineEnv is."""
    from svsr.device.machine import machine_env

    return machine_env(trt=trt, lean=False, cuda=cuda).build_environment


# -- caches ---------------------------------------------------------------------------------------
def timing_cache_path(build_dir: Path, env: BuildEnvironment) -> Path:
    """One timing cache per TensorRT version and GPU model (timings do not carry across either)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", env.gpu_name).strip("-").lower()
    return build_dir / ENGINE_DIR / f"timing-trt{env.tensorrt_version}-{slug}-sm{env.compute_capability}.cache"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def cached_record(build_dir: Path, plan_path: Path, key: str) -> dict[str, Any] | None:
    """The sidecar record of a cached plan with ``key``, if the plan is there and intact."""
    sidecar = plan_path.with_suffix(".json")
    if not plan_path.exists() or not sidecar.exists():
        return None
    try:
        record = validate_record(json.loads(sidecar.read_text()), str(sidecar))
    except (ValueError, ManifestError):
        return None
    if record.get("cache_key") != key or sha256_file(plan_path) != record["sha256"]:
        return None
    return record


# -- the build ------------------------------------------------------------------------------------
def build_engines(
    build_dir: str | Path,
    manifest: Mapping[str, Any],
    precision: PrecisionLike,
    profile: Profile,
    report: Report = print,
    *,
    graphs: tuple[str, ...] = GRAPH_NAMES,
    force: bool = False,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
    workspace_bytes: int | None = None,
    timing_cache: str | Path | None = None,
    lean: bool = False,
    tile: tuple[int, int] | None = None,
    trt: Any = None,
    cuda: Any = None,
    loaders: Any = None,
) -> dict[str, dict[str, Any]]:
    """Build (or reuse) one strongly typed plan per graph and return the new ``manifest["engines"]``.

    ``precision`` is a :class:`~svsr.contract.precision.Precision` (or what ``Precision.parse``
    takes: ``"fp16"``, ``"fp16,vae=fp32"``, ``{graph: precision}``); engines are built from the matching ONNX (the exported float32 graph, or ``graphs[g].typed[p]``).
    ``tile`` (or ``profile.tile``): (height, width) in LR pixels at which the tiled graphs' engines are
    built static (``svsr-export --tile``; svsr/contract/profiles.py), the others over the profile's frames.
    Records of other graph/precision pairs already in the manifest are kept. The caller stores the
    result as ``manifest["engines"]`` and writes the manifest. ``lean``: version-compatible plans
    without the lean runtime inside, for hosts with only TensorRT's lean runtime (module docstring).
    """
    build_dir = Path(build_dir)
    if tile is not None:
        if profile.tile is not None and tuple(profile.tile) != tuple(tile):
            raise InputError(f"the profile's tile {profile.tile} and tile={tuple(tile)} differ; give the engines' tile once.")
        profile = profile.with_tile(tile)  # checked against the frame sizes: a tile larger than every frame is refused
    if trt is None:
        trt = import_tensorrt("building engines")
    check_tensorrt_version(trt)
    if cuda is None:
        from svsr.device.cuda import CudaApi

        cuda = CudaApi(0)
    env = current_environment(trt, cuda)
    options: dict[str, Any] = {"optimization_level": int(optimization_level)}
    if workspace_bytes is not None:
        options["workspace_bytes"] = int(workspace_bytes)
    if lean:
        options.update(LEAN_OPTIONS)
    cache_file = Path(timing_cache) if timing_cache is not None else timing_cache_path(build_dir, env)
    engines: dict[str, dict[str, Any]] = dict(manifest.get("engines") or {})
    report(f"svsr-export: {'lean-runtime (version-compatible) ' if lean else ''}engines for {profile.describe()} with {env.describe()}")

    tile = profile.tile
    if tile is not None and (profile.min[0] < tile[0] or profile.min[1] < tile[1]):
        # static tiled engines run only the tile's shape: a frame narrower than the tile would need a smaller one
        report(f"svsr-export: frames smaller than the {tile[0]}x{tile[1]} tile on either side will not run on these engines (--tile is HxW)")
    precision = Precision.parse(precision)
    if precision.is_auto:
        raise InputError("engines are built for a fixed precision; give --precision fp32, fp16 or bf16.")
    logger = trt.Logger(trt.Logger.WARNING)
    stats = stats_sizes(manifest)
    for graph in graphs:
        prec = precision.of(graph)
        skipped = profile.skip_reason(graph)
        if skipped is not None:
            # a record of another profile would mix two builds' frame sizes: this build has no engine of the graph
            engines.pop(engine_key(graph, prec), None)
            report(f"  {graph:13s} {prec} engine skipped: {skipped}")
            continue
        entry = onnx_entry(manifest, graph, prec, build_dir)
        # paths, sha256 and the ONNX file's own external-data locations, before TensorRT's parser reads any of it
        onnx_path = check_onnx_graph(build_dir, graph, entry)
        key = cache_key(entry["sha256"], env, profile, options)
        plan_rel = f"{ENGINE_DIR}/{plan_filename(graph, prec, key)}"
        plan_path = build_dir / plan_rel
        record = None if force else cached_record(build_dir, plan_path, key)
        if record is not None:
            report(f"  {graph:13s} {prec} engine reused  {record['size_bytes'] / 1e6:9.1f} MB  (same ONNX, TensorRT, GPU and profile)")
        else:
            start = time.perf_counter()
            plan = build_plan(trt, graph, onnx_path, profile, options, cache_file, loaders=loaders, stats=stats)
            seconds = time.perf_counter() - start
            _write_atomic(plan_path, plan)
            scratch = _scratch_bytes(trt, logger, plan, graph, host_code=bool(lean))
            record = make_record(
                graph=graph,
                precision=prec,
                plan_file=plan_rel,
                plan_sha256=sha256_file(plan_path),
                plan_size=len(plan),
                onnx_file=entry["file"],
                onnx_sha256=entry["sha256"],
                onnx_source_sha256=manifest["graphs"][graph]["sha256"],
                env=env,
                profile=profile,
                key=key,
                device_memory_bytes=scratch,
                builder_options=options,
                built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                build_seconds=seconds,
                stats=stats,
            )
            if lean:
                record = lean_record(record)
            _write_atomic(plan_path.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())
            report(f"  {graph:13s} {prec} engine built   {len(plan) / 1e6:9.1f} MB  in {seconds:6.1f} s")
        engines[engine_key(graph, prec)] = record
    return engines


def lean_record(record: dict[str, Any]) -> dict[str, Any]:
    """A build record marked as a version-compatible plan without the lean runtime inside."""
    return validate_record({**record, "version_compatible": True, "lean": True})


def _scratch_bytes(trt: Any, logger: Any, plan: bytes, graph: str, host_code: bool = False) -> int:
    """TensorRT scratch one execution context of this plan needs (recorded for the memory plan).

    A lean plan (``host_code``) is deserialised by the lean runtime the full library loads, as it
    will be run: it has no runtime of its own inside.
    """
    loaded = open_plan_runtime(trt, logger, version_compatible=host_code, lean=False)
    engine = loaded.runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(f"TensorRT built the {graph} engine but cannot load it back; rebuild with --force.")
    return int(engine.get_device_memory_size_for_profile_v2(0))
