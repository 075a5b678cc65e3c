"""Schema-3 build folders with real, tiny ONNX files for the engine builder's tests (no TensorRT, no torch).

The builder checks every graph with ``check_onnx_graph`` (paths, sha256, the ONNX file's own
external-data locations) before TensorRT's parser sees it, so the files here are real ONNX protobufs
made with ``onnx.helper``: the graph's inputs and outputs as the contract names them, and stand-in
maths (one Identity per output), which nothing runs. :func:`onnx_reading_parser_double` makes the
recording builder double (tests/support/trt.py) read which graph a file holds from the ONNX graph's
name instead of from a text stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from svsr.contract.graphs import GRAPH_NAMES, GRAPHS, NORM_STATS_STRIDE, STATS_GRAPHS
from svsr.contract.manifest import SCHEMA_VERSION, sha256_file, validate_manifest

# statistics lengths of the stand-in checkpoint (the manifest's norm_stats.<graph>.size)
STATS = {"denoise_stats": 24, "decode_stats": 16}


def _dims(shape: tuple[int | str, ...]) -> list[int | str]:
    """Symbolic dims as the manifest and the ONNX file write them: the statistics lengths as integers."""
    return [STATS.get(d, d) if isinstance(d, str) else d for d in shape]


def write_tiny_onnx(path: Path, graph: str, *, name: str | None = None, external_data: str | None = None) -> str:
    """Write a tiny ONNX file with ``graph``'s inputs and outputs and return its sha256.

    ``name``: the ONNX graph's name (default ``graph``; a name starting with "bad" makes the parser
    double fail as TensorRT's parser would). ``external_data``: give the file one initializer stored
    in that external-data location (nothing is written there).
    """
    spec = GRAPHS[graph]
    inputs = [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, _dims(t.shape)) for t in spec.inputs]
    outputs = [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, _dims(t.shape)) for t in spec.outputs]
    nodes = [helper.make_node("Identity", [spec.inputs[0].name], [t.name]) for t in spec.outputs]
    initializers = []
    if external_data is not None:
        weights = helper.make_tensor("weights", TensorProto.FLOAT, [4], np.zeros(4, np.float32).tobytes(), raw=True)
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
        entry = weights.external_data.add()
        entry.key, entry.value = "location", external_data
        initializers.append(weights)
    model = helper.make_model(helper.make_graph(nodes, name or graph, inputs, outputs, initializers))
    path.write_bytes(model.SerializeToString())
    return sha256_file(path)


def engine_build_manifest(build_dir: Path | None = None) -> dict[str, Any]:
    """A validated schema-3 manifest whose graphs are tiny ONNX files in ``build_dir`` (None: no files, zero sha256s)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    graphs = {}
    for name in GRAPH_NAMES:
        spec = GRAPHS[name]
        graphs[name] = {
            "file": f"{name}.onnx",
            "sha256": write_tiny_onnx(build_dir / f"{name}.onnx", name) if build_dir is not None else "0" * 64,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": _dims(t.shape)} for t in spec.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": _dims(t.shape)} for t in spec.outputs],
            "flops": {"per_call": 1, "lr_height": 32, "lr_width": 32},
        }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "checkpoint": {"fingerprint": "f" * 16, "source": "/ckpt/tiny", "preset": None},
        "exporter": {"opset": 17, "method": "test"},
        "graphs": graphs,
        "scheduler": {
            "config": {"num_train_timesteps": 1000, "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 1},
            "alphas_cumprod": np.cumprod(1.0 - betas).tolist(),
        },
        "vae_scaling_factor": 0.18215,
        "latent_channels": 4,
        "norm_stats": {g: {"size": STATS[g], "stride": NORM_STATS_STRIDE[g]} for g in STATS_GRAPHS},
        "sizes": {"min_side": 32, "pad_multiple": 4, "scale": 4},
        "engines": {},
    }
    return validate_manifest(manifest)


def add_typed_graph(build_dir: Path, manifest: dict[str, Any], graph: str, precision: str) -> None:
    """A typed version of ``graph`` (another tiny ONNX file) recorded as the exporter records one."""
    file = f"{graph}.{precision}.onnx"
    sha = write_tiny_onnx(build_dir / file, graph)
    manifest["graphs"][graph].setdefault("typed", {})[precision] = {"file": file, "sha256": sha, "precision": precision}


def onnx_reading_parser_double(double: Any) -> Any:
    """Make ``double`` (a RecordingTrtBuilderDouble) parse real ONNX files: the network is the graph the file's
    ONNX graph name says (its inputs from the contract); a name starting with "bad" fails to parse as
    polygraphy does (an exception after the parser's errors). Returns ``double``."""
    network = double.classes["INetworkDefinition"]

    def NetworkFromOnnxPath(path: str, strongly_typed: bool | None = None) -> Any:
        def load() -> tuple[str, Any, str]:
            model = onnx.load(str(path), load_external_data=False)
            double.calls.append(("NetworkFromOnnxPath", Path(path).name, strongly_typed))
            if model.graph.name.startswith("bad"):
                raise RuntimeError("Could not parse ONNX correctly (node Foo: unsupported op; node Bar: bad attribute)")
            return "builder", network(model.graph.name), "parser"

        return load

    double.loaders.NetworkFromOnnxPath = NetworkFromOnnxPath
    return double
