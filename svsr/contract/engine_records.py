"""Engine build records and cache keys (plain Python, no TensorRT needed).

A TensorRT plan only runs on the TensorRT version and the GPU model it was built for, and only for
the ONNX graph and the shapes it was built from. Each built engine therefore carries a record,
stored in ``manifest.json`` under ``engines["<graph>.<precision>"]`` and beside the plan as a
sidecar JSON, with everything needed to decide whether it can be reused or loaded:

    graph, precision, file, sha256, size_bytes        the plan
    onnx_file, onnx_sha256                            the (typed) ONNX it was built from
    onnx_source_sha256                                the exported float32 graph that ONNX descends from
    tensorrt_version, gpu_name, compute_capability    where it was built (and only runs)
    profile, shapes                                   LR sizes / batch (/ tile), and per-input min/opt/max shapes
    tile                                              [h, w] of a ``svsr-export --tile`` build (the tiled graphs are
                                                      static at it), else null; :func:`engine_tile_problem` says
                                                      which runs cannot use such engines
    device_memory_bytes                               TensorRT scratch one execution context needs
    builder                                           builder options (optimisation level, workspace)
    cache_key                                         sha256 of the fields that decide reuse
    strongly_typed, built_at, build_seconds           provenance
    version_compatible, lean                          svsr-export --lean: a version-compatible plan for the lean runtime
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from svsr.contract.profiles import Profile, format_size, format_tile, pad_side
from svsr.contract.errors import InputError, ManifestError
from svsr.contract.manifest import MAX_BYTES, MAX_FILE_NAME, MAX_SIDE, non_finite_field
from svsr.contract.sizes import MIN_SIDE, PAD_MULTIPLE
from svsr.contract.graphs import GRAPH_NAMES, TILED_GRAPHS
from svsr.contract.precision import PRECISIONS, Precision, PrecisionLike
from svsr.contract.tiles import AUTO, MIN_TILE, OFF, TILE_MULTIPLE, Spell, TileOption, parse_tile, plan_tiles

CACHE_KEY_VERSION = 1
ENGINE_DIR = "engines"
MAX_BATCH = 1024

_sha = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# bounds: a record comes from elsewhere (svsr.contract.manifest explains); sizes follow the size rules
_dims = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4 * MAX_SIDE}, "maxItems": 8}
_shape3 = {"type": "object", "required": ["min", "opt", "max"], "properties": {k: _dims for k in ("min", "opt", "max")}}
_size = {
    "type": "array",
    "items": {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE, "multipleOf": PAD_MULTIPLE},
    "minItems": 2,
    "maxItems": 2,
}
_file_name = {"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME}
# a static tile (svsr-export --tile): the runtime's tile rules (svsr/contract/tiles.py), bounded like sizes
_tile = {
    "type": "array",
    "items": {"type": "integer", "minimum": MIN_TILE, "maximum": MAX_SIDE, "multipleOf": TILE_MULTIPLE},
    "minItems": 2,
    "maxItems": 2,
}

ENGINE_RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "svsr engine build record",
    "type": "object",
    "required": [
        "graph", "precision", "file", "sha256", "onnx_file", "onnx_sha256", "onnx_source_sha256",
        "tensorrt_version", "gpu_name", "compute_capability", "profile", "shapes", "cache_key",
        "device_memory_bytes", "tile",
    ],
    "properties": {
        "graph": {"enum": list(GRAPH_NAMES)},
        "precision": {"enum": list(PRECISIONS)},
        "file": _file_name,
        "sha256": _sha,
        "size_bytes": {"type": "integer", "minimum": 0, "maximum": MAX_BYTES},
        "onnx_file": _file_name,
        "onnx_sha256": _sha,
        "onnx_source_sha256": _sha,
        "tensorrt_version": {"type": "string", "pattern": r"^\d+\.\d+"},
        "gpu_name": {"type": "string", "minLength": 1},
        "compute_capability": {"type": "string", "pattern": r"^\d+\.\d+$"},
        "profile": {
            "type": "object",
            "required": ["lr_min", "lr_opt", "lr_max", "batch"],
            "properties": {
                "lr_min": _size,
                "lr_opt": _size,
                "lr_max": _size,
                "batch": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH}, "minItems": 3, "maxItems": 3},
                "tile": _tile,
            },
        },
        "tile": {"oneOf": [{"type": "null"}, _tile]},
        "shapes": {"type": "object", "additionalProperties": _shape3, "maxProperties": 64},
        "device_memory_bytes": {"type": "integer", "minimum": 0, "maximum": MAX_BYTES},
        "builder": {"type": "object"},
        "cache_key": _sha,
        "strongly_typed": {"const": True},
        "version_compatible": {"type": "boolean"},  # svsr-export --lean
        "lean": {"type": "boolean"},
        "built_at": {"type": "string"},
        "build_seconds": {"type": "number", "minimum": 0, "maximum": 1e7},
    },
}


@dataclass(frozen=True)
class BuildEnvironment:
    """What a plan is tied to: the TensorRT version and the GPU model (name + compute capability)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name} (compute capability {self.compute_capability})"


def engine_key(graph: str, precision: str) -> str:
    """The key of an engine record in ``manifest["engines"]``."""
    return f"{graph}.{precision}"


def cache_key(
    onnx_sha256: str,
    env: BuildEnvironment,
    profile: Profile,
    builder_options: Mapping[str, Any] | None = None,
) -> str:
    """sha256 over everything that makes two builds interchangeable.

    Typed-ONNX sha, TensorRT version, GPU name and compute capability, the profile, and the builder
    options (a different optimisation level gives a different plan).
    """
    payload = {
        "v": CACHE_KEY_VERSION,
        "onnx_sha256": onnx_sha256,
        "tensorrt_version": env.tensorrt_version,
        "gpu_name": env.gpu_name,
        "compute_capability": env.compute_capability,
        "profile": profile.to_json(),
        "builder": dict(builder_options or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plan_filename(graph: str, precision: str, key: str) -> str:
    """Plan file name inside the engine folder: one file per cache key, so other builds stay cached."""
    return f"{graph}.{precision}.{key[:16]}.plan"


def make_record(
    *,
    graph: str,
    precision: str,
    plan_file: str,
    plan_sha256: str,
    plan_size: int,
    onnx_file: str,
    onnx_sha256: str,
    onnx_source_sha256: str,
    env: BuildEnvironment,
    profile: Profile,
    key: str,
    device_memory_bytes: int,
    builder_options: Mapping[str, Any] | None = None,
    built_at: str | None = None,
    build_seconds: float | None = None,
    stats: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A validated build record (the manifest's ``engines[...]`` entry).

    ``stats``: the checkpoint's statistics lengths (``svsr.contract.manifest.stats_sizes``), which the
    shapes of graphs with a ``norm_stats`` input need.
    """
    record: dict[str, Any] = {
        "graph": graph,
        "precision": precision,
        "file": plan_file,
        "sha256": plan_sha256,
        "size_bytes": int(plan_size),
        "onnx_file": onnx_file,
        "onnx_sha256": onnx_sha256,
        "onnx_source_sha256": onnx_source_sha256,
        "tensorrt_version": env.tensorrt_version,
        "gpu_name": env.gpu_name,
        "compute_capability": env.compute_capability,
        "profile": profile.to_json(),
        "shapes": profile.shapes_json(graph, stats),
        "tile": None if profile.tile is None else list(profile.tile),
        "device_memory_bytes": int(device_memory_bytes),
        "builder": dict(builder_options or {}),
        "cache_key": key,
        "strongly_typed": True,
    }
    if built_at is not None:
        record["built_at"] = built_at
    if build_seconds is not None:
        record["build_seconds"] = round(float(build_seconds), 3)
    return validate_record(record)


def validate_record(record: Any, where: str = "engine record") -> dict[str, Any]:
    """Return ``record`` if it follows ENGINE_RECORD_SCHEMA (numbers finite, profile ordered), else ManifestError naming the field."""
    bad = non_finite_field(record)
    if bad is not None:
        raise ManifestError(f"{where} holds {bad[1]} at {bad[0]}, and every number must be finite; rebuild the engines with svsr-export --force.")
    try:
        jsonschema.validate(record, ENGINE_RECORD_SCHEMA)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ManifestError(f"{where} is malformed at {path}: {exc.message}; rebuild the engines with svsr-export --force.") from None
    try:
        Profile.from_json(record["profile"])
    except InputError:  # said with the field, not with the CLI options Profile's own sentence names
        raise ManifestError(
            f"{where} is malformed at profile: its sizes and batches are not ordered min <= opt <= max, or its tile is larger "
            "than its largest frame; rebuild the engines with svsr-export --force."
        ) from None
    if record["tile"] != record["profile"].get("tile"):
        raise ManifestError(f"{where} is malformed at tile: it differs from its profile's tile; rebuild the engines with svsr-export --force.")
    return record


def validate_engines(engines: Any, where: str = "manifest.json") -> dict[str, dict[str, Any]]:
    """Validate a whole ``manifest["engines"]`` object: ``{"<graph>.<precision>": record}``."""
    if not isinstance(engines, Mapping):
        raise ManifestError(f"{where} has an 'engines' entry that is not an object; rebuild the engines with svsr-export --force.")
    for key, record in engines.items():
        validate_record(record, f"{where} engines/{key}")
        if key != engine_key(record["graph"], record["precision"]):
            raise ManifestError(
                f"{where} engines/{key} holds the {record['graph']} {record['precision']} engine; rebuild the engines with svsr-export --force."
            )
    return dict(engines)

def onnx_entry(manifest: Mapping[str, Any], graph: str, precision: str, build_dir: str | Path) -> dict[str, Any]:
    """The manifest entry (file, sha256) of the ONNX graph an engine of ``precision`` is built from."""
    entry = manifest["graphs"][graph]
    if precision == "fp32":
        return entry
    typed = entry.get("typed", {})
    if precision not in typed:
        raise ManifestError(
            f"{build_dir} has no {precision} {graph} graph to build an engine from; run svsr-export --precision {precision} --out {build_dir}."
        )
    return typed[precision]



def rebuild_command(
    manifest: Mapping[str, Any],
    build_dir: str | Path,
    precision: PrecisionLike,
    profile: Profile | None = None,
    *,
    lean: bool = False,
) -> str:
    """The svsr-export command line that rebuilds this build folder's engines on this machine.

    ``precision``: the precision in use (a Precision, or anything Precision.parse takes); ``lean``:
    make version-compatible plans for TensorRT's lean runtime (``--lean``).
    """
    source = (manifest.get("checkpoint") or {}).get("source") or "CHECKPOINT"
    args = ["svsr-export", "--weights", str(source), *Precision.parse(precision).flags(), "--out", str(build_dir)]
    if profile is not None:
        args += profile.cli_args()
    if lean:
        args.append("--lean")
    args.append("--force")
    return " ".join(args)


@dataclass(frozen=True)
class MachineEnv:
    """Where an engine would run: the TensorRT found (version; full or lean runtime), the GPU, the driver.

    Made once per machine by ``svsr.device.machine.machine_env()`` (or by hand in tests); every
    "does this engine run here" question is :func:`problems` of a record and this.
    """

    tensorrt_version: str
    lean: bool
    gpu_name: str
    compute_capability: str  # "9.0"
    cuda_driver: str | None = None  # "13.0"; None where unknown

    @property
    def build_environment(self) -> BuildEnvironment:
        """What a plan built here is tied to."""
        return BuildEnvironment(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def describe(self) -> str:
        flavour = "lean runtime " if self.lean else ""
        return f"TensorRT {flavour}{self.tensorrt_version} on {self.gpu_name} (compute capability {self.compute_capability})"


def problems(record: Mapping[str, Any], env: MachineEnv | BuildEnvironment, *, onnx_sha256: str | None = None) -> list[str]:
    """Why the engine of ``record`` cannot run on ``env``: clauses such as "was built with TensorRT 10.13
    but this machine has TensorRT 11.4"; an empty list means it runs here.

    A plan is tied to the exact TensorRT version and to the GPU model; TensorRT's lean runtime runs
    only version-compatible plans (``svsr-export --lean``). ``onnx_sha256``: the graph the build
    folder holds now (a plan built from another version of it is stale).
    """
    found = []
    lean = bool(getattr(env, "lean", False))
    if lean and not record.get("version_compatible"):
        found.append(
            f"is not version-compatible, and only TensorRT's lean runtime ({env.tensorrt_version}) is installed here, "
            "which runs only version-compatible plans"
        )
    if record["tensorrt_version"] != env.tensorrt_version:
        found.append(f"was built with TensorRT {record['tensorrt_version']} but this machine has TensorRT {env.tensorrt_version}")
    if record["compute_capability"] != env.compute_capability or record["gpu_name"] != env.gpu_name:
        found.append(
            f"was built for {record['gpu_name']} (compute capability {record['compute_capability']}) "
            f"but this machine has {env.gpu_name} (compute capability {env.compute_capability})"
        )
    if onnx_sha256 is not None and record["onnx_sha256"] != onnx_sha256:
        found.append(f"was built from another version of its ONNX graph ({record['onnx_file']} changed since)")
    return found


def check_record(
    record: Mapping[str, Any],
    env: MachineEnv | BuildEnvironment,
    manifest: Mapping[str, Any],
    build_dir: str | Path,
    onnx_sha256: str | None = None,
    precisions: PrecisionLike = None,
) -> None:
    """Refuse (ManifestError, one sentence) an engine that :func:`problems` finds cannot run here.

    Loading a plan anywhere else is at best rejected by TensorRT with an opaque message, so the
    sentence names the first problem and the command that rebuilds it here (``precisions``: the
    whole plan in use, so the command rebuilds all of it; ``--lean`` where the lean runtime runs it
    or the plan was lean).
    """
    found = problems(record, env, onnx_sha256=onnx_sha256)
    if not found:
        return
    lean = bool(getattr(env, "lean", False) or record.get("lean") or record.get("version_compatible"))
    command = rebuild_command(manifest, build_dir, precisions or record["precision"], Profile.from_json(record["profile"]), lean=lean)
    raise ManifestError(f"the {record['graph']} {record['precision']} engine in {build_dir} {found[0]}; rebuild it with: {command}")


def choose_precision(manifest: Mapping[str, Any], precision: PrecisionLike) -> Precision:
    """``precision`` resolved for TensorRT: ``auto`` takes, per graph, the fastest precision with a built engine."""
    engines = manifest.get("engines") or {}
    return Precision.parse(precision).resolve(lambda graph, prec: engine_key(graph, prec) in engines)


# -- engines built for one tile shape (svsr-export --tile) ----------------------------------------
def _cli_spelling(name: str, value: object) -> str:
    return f"--{name.replace('_', '-')} {value}"


def engine_tile(manifest: Mapping[str, Any], precision: PrecisionLike) -> tuple[int, int] | None:
    """The (height, width) tile the engines of ``precision`` (``auto`` resolved as the TensorRT backend does)
    were built static at (``svsr-export --tile``), or None: engines over frame sizes, or none built.

    The tiled graphs' records decide (the others see whole frames); records that disagree (engines of
    two builds mixed) are refused in one sentence.
    """
    engines = manifest.get("engines") or {}
    chosen = choose_precision(manifest, precision)
    tiles = {}
    for graph in TILED_GRAPHS:
        record = engines.get(engine_key(graph, chosen.of(graph)))
        if record is not None:
            tile = record.get("tile")
            tiles[graph] = None if tile is None else (int(tile[0]), int(tile[1]))
    found = set(tiles.values())
    if len(found) > 1:
        said = ", ".join(f"{g} {format_tile(t) if t else 'frame sizes'}" for g, t in tiles.items())
        command = rebuild_command(manifest, "BUILD", chosen).replace(" --force", " --tile HxW --force")
        raise ManifestError(f"the TensorRT engines of the tiled graphs were built for different tiles ({said}); rebuild them together: {command} (or without --tile).")
    return next(iter(found), None)


def engine_tile_problem(
    manifest: Mapping[str, Any],
    precision: PrecisionLike,
    tile_asked: TileOption,
    frame_h: int,
    frame_w: int,
    *,
    build_dir: str | Path | None = None,
    spell: Spell | None = None,
) -> str | None:
    """One sentence when the TensorRT engines were built for one tile shape (:func:`engine_tile`) and a run of
    padded LR frames ``frame_h`` x ``frame_w`` with ``tile_asked`` (``auto`` or None, ``off``, (h, w) or ``"HxW"``)
    would feed the tiled graphs another shape; None when it runs on them (or the engines are not tiled).

    Engines built static at a tile run only that shape: ``auto`` means the build's tile, so it fits every
    frame at least as large as the tile; a tile of another size, or whole frames (``off``, or a tile
    covering the frame) other than the tile's size, do not. Call it where the run uses TensorRT engines.
    ``build_dir``: named in the sentence and its re-export command; ``spell``: how the option is written
    (default the command line's ``--tile 128x128``; svsr.contract.video_options.api_spelling for Python).
    """
    built = engine_tile(manifest, precision)
    if built is None:
        return None
    say = spell or _cli_spelling
    height, width = pad_side(frame_h), pad_side(frame_w)
    asked = parse_tile(AUTO if tile_asked is None else tile_asked, spell=say)
    wanted = built if asked == AUTO else (None if asked == OFF else asked)
    layout = plan_tiles(height, width, wanted)
    if layout.tile_shape == built:
        return None
    where = f"in {build_dir} " if build_dir is not None else ""
    engines = f"the TensorRT engines {where}were built for {format_tile(built)} tiles only (svsr-export --tile {format_tile(built)})"
    frame = format_size((height, width))
    folder = build_dir if build_dir is not None else "BUILD"
    if height < built[0] or width < built[1]:
        return (
            f"frames of {frame} (padded LR size) are smaller than one tile, and {engines}, which run that shape only; re-export for "
            f"engines over frame sizes: {_retile_command(manifest, folder, precision, None)} (or use --backend ort)."
        )
    if layout.single:
        what = f"{say('tile', OFF)} runs" if wanted is None else f"{say('tile', format_tile(wanted))} covers the frame, so it runs"
        return (
            f"{what} whole {frame} frames, but {engines}; use {say('tile', 'auto')} (the build's tiles), or re-export for whole frames: "
            f"{_retile_command(manifest, folder, precision, None)}."
        )
    return (
        f"{say('tile', format_tile(wanted))} runs {format_tile(layout.tile_shape)} tiles, but {engines}; use "
        f"{say('tile', format_tile(built))} (or auto), or re-export for those tiles: {_retile_command(manifest, folder, precision, layout.tile_shape)}."
    )


def _retile_command(manifest: Mapping[str, Any], build_dir: str | Path, precision: PrecisionLike, tile: tuple[int, int] | None) -> str:
    """The svsr-export command that rebuilds the engines in use with ``tile`` (None: over frame sizes) and their frame sizes."""
    chosen = choose_precision(manifest, precision)
    records = [r for g in TILED_GRAPHS if (r := (manifest.get("engines") or {}).get(engine_key(g, chosen.of(g)))) is not None]
    profile = None
    if records:
        try:
            profile = Profile.from_json(records[0]["profile"]).with_tile(tile)
        except InputError:  # the tile does not fit the build's frame sizes: the command names the sizes to give
            profile = None
    command = rebuild_command(manifest, build_dir, chosen, profile, lean=any(r.get("lean") for r in records))
    if profile is None and tile is not None:
        command = command.replace(" --force", f" --resolution WxH --tile {format_tile(tile)} --force")
    return command
