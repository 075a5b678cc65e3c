"""manifest.json: the contract between export, engines, runtime and any C++ host (torch-free).

Written by svsr-export beside the graphs; validated against MANIFEST_SCHEMA on every load, so a
wrong or missing field is one clear sentence instead of a KeyError deep inside a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

from svsr.contract.errors import ManifestError
from svsr.contract.graphs import GRAPH_NAMES

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1

_tensor = {
    "type": "object",
    "required": ["name", "dtype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "dtype": {"enum": ["float32", "float16", "bfloat16", "int64"]},
        "shape": {"type": "array", "items": {"type": ["integer", "string"]}},
    },
}

_graph_file = {
    "type": "object",
    "required": ["file", "sha256", "precision"],
    "properties": {
        "file": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "external_data": {"type": ["string", "null"]},
        "precision": {"enum": ["fp32", "fp16", "bf16"]},
        "kept_float32": {"type": "array", "items": {"type": "string"}},
        "io_dtype": {"type": "string"},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "svsr build manifest",
    "type": "object",
    "required": ["schema_version", "checkpoint", "exporter", "graphs", "scheduler", "vae_scaling_factor", "sizes"],
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
            "properties": {"opset": {"type": "integer", "minimum": 17}, "method": {"type": "string"}},
        },
        "graphs": {
            "type": "object",
            "required": list(GRAPH_NAMES),
            "additionalProperties": False,
            "patternProperties": {
                "^(flow|denoise|guide|decode)$": {
                    "type": "object",
                    "required": ["file", "sha256", "inputs", "outputs", "flops"],
                    "properties": {
                        "file": {"type": "string"},
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "external_data": {"type": ["string", "null"]},
                        "inputs": {"type": "array", "items": _tensor, "minItems": 1},
                        "outputs": {"type": "array", "items": _tensor, "minItems": 1},
                        "flops": {
                            "type": "object",
                            "required": ["per_call", "lr_height", "lr_width"],
                            "properties": {
                                "per_call": {"type": "integer", "minimum": 0},
                                "lr_height": {"type": "integer"},
                                "lr_width": {"type": "integer"},
                                "linear": {"type": "number"},
                                "quadratic": {"type": "number"},
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
                        "num_train_timesteps": {"type": "integer", "minimum": 1},
                        "prediction_type": {"enum": ["epsilon", "v_prediction", "sample"]},
                    },
                },
                "alphas_cumprod": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                "init_noise_sigma": {"type": "number"},
            },
        },
        "vae_scaling_factor": {"type": "number", "exclusiveMinimum": 0},
        "latent_channels": {"type": "integer"},
        "sizes": {
            "type": "object",
            "required": ["min_side", "pad_multiple", "scale"],
            "properties": {
                "min_side": {"type": "integer"},
                "pad_multiple": {"type": "integer"},
                "scale": {"const": 4},
                "padding": {"type": "string"},
            },
        },
        "flow": {"type": "object"},
        # one build record per "<graph>.<precision>"; svsr.contract.engine_records validates the records
        "engines": {
            "type": "object",
            "propertyNames": {"pattern": "^(flow|denoise|guide|decode)\\.(fp32|fp16|bf16)$"},
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


def validate_manifest(data: Any, where: str = MANIFEST_NAME) -> dict[str, Any]:
    """Return ``data`` if it follows MANIFEST_SCHEMA, else raise ManifestError naming the first problem."""
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
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON (line {exc.lineno}); re-run svsr-export --force.") from None
    validate_manifest(data, str(path))
    if check_files:
        for name, graph in data["graphs"].items():
            check_graph_file(build_dir, name, graph)
    return data


def check_graph_file(build_dir: Path, name: str, entry: dict[str, Any]) -> Path:
    """The graph file of a manifest entry, after checking it exists and has the recorded sha256."""
    file = build_dir / entry["file"]
    if not file.exists():
        raise ManifestError(f"graph {name} ({file}) named in the manifest is missing; re-run svsr-export --force.")
    if sha256_file(file) != entry["sha256"]:
        raise ManifestError(
            f"graph {name} ({file}) does not match the sha256 in the manifest; re-run svsr-export --force to rebuild it."
        )
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
