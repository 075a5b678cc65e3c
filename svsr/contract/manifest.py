"""manifest.json: the contract between export, engines, runtime and any C++ host (torch-free).

Written by svsr-export beside the graphs; validated against MANIFEST_SCHEMA on every load, so a
wrong or missing field is one clear sentence instead of a KeyError deep inside a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

from svsr.contract.errors import ManifestError
from svsr.contract.graphs import GRAPH_NAMES, STATS_GRAPHS
from svsr.contract.paths import MANIFEST_NAME, check_onnx_external_data, inside_build_folder
from svsr.contract.sizes import MIN_SIDE, PAD_MULTIPLE, SCALE

SCHEMA_VERSION = 3
# 1: graphs flow, denoise (6 step coefficients), guide, decode. 2: guide split into guide_decode + warp,
# blend added, denoise with x0_history and 8 step coefficients (tiles, DDIM, DPM-Solver++).
# 3: flow_x2 / flow_x1 (--flow-scale), denoise_stats / decode_stats and the norm_stats + shared_norm
# inputs of denoise, guide_decode and decode (GroupNorm statistics shared across tiles).
_GRAPH_PATTERN = "^(" + "|".join(GRAPH_NAMES) + ")$"
# Bounds of the numbers a manifest may hold: it comes from elsewhere, and a count of 10**12 or a
# NaN must be one sentence here, not a huge allocation or a silent NaN video later.
MAX_SIDE = 16384  # LR pixels per side
MAX_DIM = 1 << 20  # any fixed tensor dimension
MAX_BYTES = 1 << 50  # file sizes, device memory
MAX_FLOPS = 1e21  # per call at the trace size
MAX_TRAIN_TIMESTEPS = 100_000
MAX_FILE_NAME = 4096
_file_name = {"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME}
_optional_file_name = {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_FILE_NAME}
_side = {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}

_tensor = {
    "type": "object",
    "required": ["name", "dtype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "dtype": {"enum": ["float32", "float16", "bfloat16", "int64"]},
        "shape": {
            "type": "array",
            "maxItems": 8,
            "items": {
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": MAX_DIM},
                    {"enum": ["batch", "height", "width", "height4", "width4", "channels", "denoise_stats", "decode_stats"]},
                ]
            },
        },
    },
}

_graph_file = {
    "type": "object",
    "required": ["file", "sha256", "precision"],
    "properties": {
        "file": _file_name,
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "external_data": _optional_file_name,
        "ort_cpu_file": _file_name,
        "ort_cpu_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "ort_cpu_external_data": _optional_file_name,
        "precision": {"enum": ["fp32", "fp16", "bf16"]},
        "kept_float32": {"type": "array", "items": {"type": "string"}},
        "io_dtype": {"type": "string"},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "svsr build manifest",
    "type": "object",
    "required": ["schema_version", "checkpoint", "exporter", "graphs", "scheduler", "vae_scaling_factor", "sizes", "norm_stats"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "svsr_version": {"type": "string"},
        "checkpoint": {
            "type": "object",
            "required": ["fingerprint"],
            "properties": {"fingerprint": {"type": "string"}, "source": {"type": "string"}, "preset": {"type": ["string", "null"]}},
        },
        "exporter": {
            "type": "object",
            "required": ["opset", "method"],
            "properties": {"opset": {"type": "integer", "minimum": 17, "maximum": 1000}, "method": {"type": "string"}},
        },
        "graphs": {
            "type": "object",
            "required": list(GRAPH_NAMES),
            "additionalProperties": False,
            "patternProperties": {
                _GRAPH_PATTERN: {
                    "type": "object",
                    "required": ["file", "sha256", "inputs", "outputs", "flops"],
                    "properties": {
                        "file": _file_name,
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "external_data": _optional_file_name,
                        "inputs": {"type": "array", "items": _tensor, "minItems": 1, "maxItems": 64},
                        "outputs": {"type": "array", "items": _tensor, "minItems": 1, "maxItems": 64},
                        "size_bytes": {"type": "integer", "minimum": 0, "maximum": MAX_BYTES},
                        "flops": {
                            "type": "object",
                            "required": ["per_call", "lr_height", "lr_width"],
                            "properties": {
                                "per_call": {"type": "integer", "minimum": 0, "maximum": MAX_FLOPS},
                                "lr_height": _side,
                                "lr_width": _side,
                                "linear": {"type": "number", "minimum": -MAX_FLOPS, "maximum": MAX_FLOPS},
                                "quadratic": {"type": "number", "minimum": 0, "maximum": MAX_FLOPS},
                            },
                        },
                        "typed": {"type": "object", "additionalProperties": _graph_file},
                    },
                }
            },
        },
        "scheduler": {
            "type": "object",
            "required": ["config", "alphas_cumprod"],
            "properties": {
                "config": {
                    "type": "object",
                    "required": ["num_train_timesteps", "prediction_type"],
                    "properties": {
                        "num_train_timesteps": {"type": "integer", "minimum": 1, "maximum": MAX_TRAIN_TIMESTEPS},
                        "prediction_type": {"enum": ["epsilon", "v_prediction", "sample"]},
                    },
                },
                # cumulative products of (1 - beta): each in (0, 1]
                "alphas_cumprod": {
                    "type": "array",
                    "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    "minItems": 1,
                    "maxItems": MAX_TRAIN_TIMESTEPS,
                },
                "init_noise_sigma": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
            },
        },
        "vae_scaling_factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
        "latent_channels": {"type": "integer", "minimum": 1, "maximum": 64},
        # per stats graph: the length of its GroupNorm statistics vector and what it pools the frame by
        "norm_stats": {
            "type": "object",
            "required": list(STATS_GRAPHS),
            "additionalProperties": False,
            "properties": {
                name: {
                    "type": "object",
                    "required": ["size", "stride"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 2, "maximum": MAX_DIM},
                        "stride": {"enum": [1, 2, 4, 8]},
                    },
                }
                for name in STATS_GRAPHS
            },
        },
        "sizes": {
            "type": "object",
            "required": ["min_side", "pad_multiple", "scale"],
            "properties": {
                # the size rules every layer applies (svsr/contract/sizes.py); a build made under others is refused
                "min_side": {"const": MIN_SIDE},
                "pad_multiple": {"const": PAD_MULTIPLE},
                "scale": {"const": SCALE},
                "padding": {"type": "string"},
            },
        },
        "flow": {
            "type": "object",
            "properties": {"num_flow_updates": {"type": "integer", "minimum": 1, "maximum": 1000}, "arch": {"type": "string"}},
        },
        # one build record per "<graph>.<precision>"; svsr.contract.engine_records validates the records
        "engines": {
            "type": "object",
            "propertyNames": {"pattern": "^(" + "|".join(GRAPH_NAMES) + ")\\.(fp32|fp16|bf16)$"},
            "additionalProperties": {"type": "object", "required": ["graph", "precision", "file", "sha256"]},
        },
    },
}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class _NonFinite:
    """What ``json.loads`` makes of NaN / Infinity / -Infinity (which JSON does not have), so the field can be named."""

    def __init__(self, text: str) -> None:
        self.text = text


def non_finite_field(data: Any, path: str = "") -> tuple[str, str] | None:
    """(json path, value) of the first NaN or infinite number in ``data``; None when every number is finite."""
    if isinstance(data, _NonFinite):
        return path or "(top level)", data.text
    if isinstance(data, float) and not math.isfinite(data):
        return path or "(top level)", repr(data)
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = non_finite_field(value, f"{path}/{key}" if path else str(key))
        if found:
            return found
    return None


def parse_manifest_text(text: str, where: str = MANIFEST_NAME) -> Any:
    """``json.loads`` that refuses what JSON does not have (NaN, Infinity; Python's json takes them) naming the field."""
    try:
        data = json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where} is not valid JSON (line {exc.lineno}); re-run svsr-export --force.") from None
    except RecursionError:
        raise ManifestError(f"{where} nests its JSON too deeply to be an svsr manifest; re-run svsr-export --force.") from None
    return data


def older_schema_problem(data: Any, where: str = MANIFEST_NAME) -> str | None:
    """One sentence for a manifest written by another svsr (another ``schema_version``), naming the re-export; else None."""
    if not isinstance(data, dict) or data.get("schema_version") == SCHEMA_VERSION:
        return None
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        return None  # not a version at all: the schema check names it
    folder = Path(where).parent if Path(where).name == MANIFEST_NAME else Path(where)
    checkpoint = data.get("checkpoint") if isinstance(data.get("checkpoint"), dict) else {}
    preset, source = checkpoint.get("preset"), checkpoint.get("source")
    weights = f"--preset {preset}" if isinstance(preset, str) and preset else f"--weights {source}" if isinstance(source, str) and source else "--weights CHECKPOINT"
    newer = "an older" if version < SCHEMA_VERSION else "a newer"
    advice = (
        f"re-export it: svsr-export {weights} --out {folder} --force"
        if version < SCHEMA_VERSION
        else "update svsr (pip install -U svsr) or re-export the build folder with this one"
    )
    what = "flow scales and GroupNorm statistics shared across tiles changed the graphs" if version < SCHEMA_VERSION else "its graphs may differ"
    return f"{where} was written by {newer} svsr (manifest schema {version}; this svsr reads schema {SCHEMA_VERSION}, {what}); {advice}."


def validate_manifest(data: Any, where: str = MANIFEST_NAME) -> dict[str, Any]:
    """Return ``data`` if it follows MANIFEST_SCHEMA, else raise ManifestError naming the first problem."""
    try:
        bad = non_finite_field(data)
    except RecursionError:
        raise ManifestError(f"{where} nests its JSON too deeply to be an svsr manifest; re-run svsr-export --force.") from None
    if bad is not None:
        raise ManifestError(
            f"{where} holds {bad[1]} at {bad[0]}, and every number in a manifest must be finite; re-run svsr-export --force for this build folder."
        )
    older = older_schema_problem(data, where)
    if older is not None:
        raise ManifestError(older)
    try:
        jsonschema.validate(data, MANIFEST_SCHEMA)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ManifestError(
            f"{where} is not a valid svsr manifest at {path}: {exc.message}; re-run svsr-export for this build folder."
        ) from None
    scheduler = data["scheduler"]
    if len(scheduler["alphas_cumprod"]) != scheduler["config"]["num_train_timesteps"]:
        raise ManifestError(
            f"{where} has {len(scheduler['alphas_cumprod'])} alphas_cumprod values for "
            f"{scheduler['config']['num_train_timesteps']} train timesteps; re-run svsr-export."
        )
    return data


def load_manifest(build_dir: str | Path, check_files: bool = True) -> dict[str, Any]:
    """Load and validate ``build_dir/manifest.json``; with ``check_files``, also each graph's sha256."""
    build_dir = Path(build_dir)
    path = build_dir / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"{build_dir} has no {MANIFEST_NAME}; run svsr-export --out {build_dir} first.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} cannot be read ({exc.__class__.__name__}); re-run svsr-export --force.") from None
    data = parse_manifest_text(text, str(path))
    validate_manifest(data, str(path))
    check_named_paths(build_dir, data, str(path))
    if check_files:
        for name, graph in data["graphs"].items():
            check_graph_file(build_dir, name, graph)
    return data


def named_paths(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, name) of every file a validated manifest names: graphs, typed graphs and their CPU twins,
    external data, engine plans."""
    found = []
    for graph, entry in data["graphs"].items():
        versions = [(f"the {graph} graph", entry)]
        versions += [(f"the {precision} {graph} graph", typed) for precision, typed in (entry.get("typed") or {}).items()]
        for label, version in versions:
            for key, what in (("file", "file"), ("external_data", "external data"), ("ort_cpu_file", "CPU twin"), ("ort_cpu_external_data", "CPU twin's external data")):
                if version.get(key) is not None:
                    found.append((f"{label}'s {what}" if key != "file" else f"{label} file", version[key]))
    for key, record in (data.get("engines") or {}).items():
        found.append((f"the {key} engine plan", record.get("file")))
    return found


def check_named_paths(build_dir: str | Path, data: dict[str, Any], where: str = MANIFEST_NAME) -> None:
    """Refuse (ManifestError, one sentence) a manifest naming any file outside its build folder (svsr.contract.paths)."""
    for what, name in named_paths(data):
        inside_build_folder(build_dir, name, what, where)


def check_graph_file(build_dir: Path, name: str, entry: dict[str, Any]) -> Path:
    """The graph file of a manifest entry, after checking that it and its external-data file stay inside
    the build folder (svsr.contract.paths), that it exists and has the recorded sha256.

    Loaders that hand the file to ONNX Runtime, onnx or ModelOpt call :func:`check_onnx_graph` as well.
    """
    build_dir = Path(build_dir)
    file = inside_build_folder(build_dir, entry["file"], f"the {name} graph file")
    if entry.get("external_data") is not None:
        inside_build_folder(build_dir, entry["external_data"], f"the {name} graph's external data")
    if not file.is_file():
        raise ManifestError(f"graph {name} ({file}) named in the manifest is missing; re-run svsr-export --force.")
    if sha256_file(file) != entry["sha256"]:
        raise ManifestError(
            f"graph {name} ({file}) does not match the sha256 in the manifest; re-run svsr-export --force to rebuild it."
        )
    return file


def check_onnx_graph(build_dir: str | Path, name: str, entry: dict[str, Any]) -> Path:
    """:func:`check_graph_file`, then the ONNX file itself: well-formed, and every external-data location
    it names inside the build folder (read without loading any data, before any runtime opens it)."""
    file = check_graph_file(Path(build_dir), name, entry)
    check_onnx_external_data(build_dir, file, name)
    return file


def write_manifest(build_dir: str | Path, data: dict[str, Any]) -> Path:
    """Validate and write the manifest atomically (temporary file, then rename)."""
    build_dir = Path(build_dir)
    validate_manifest(data)
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".json", dir=build_dir)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    final = build_dir / MANIFEST_NAME
    os.replace(tmp, final)
    return final


def graph_flops(entry: dict[str, Any], lr_height: int, lr_width: int, batch: int = 1) -> float:
    """FLOPs of one call of a graph at an LR size, from the manifest's fit (exact at the export size)."""
    flops = entry["flops"]
    if "linear" not in flops:
        scale = (lr_height * lr_width) / (flops["lr_height"] * flops["lr_width"])
        return batch * flops["per_call"] * scale
    pixels = lr_height * lr_width
    return batch * (flops["linear"] * pixels + flops["quadratic"] * pixels**2)


def stats_sizes(data: dict[str, Any]) -> dict[str, int]:
    """The statistics lengths of a validated manifest, keyed by symbolic dim (for concrete_shape(stats=...))."""
    return {name: int(data["norm_stats"][name]["size"]) for name in STATS_GRAPHS}
