"""The `full` preset (real StableVSR architecture, random weights) exports and matches PyTorch.

Marked slow: about 4 minutes and 10 GB of RAM on 2 cores; run with `pytest -m slow`.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from svsr.export.exporter import export_all, sample_inputs
from svsr.export.wrappers import build_wrapper
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS
from svsr.contract.manifest import load_manifest, stats_sizes
from svsr.reference import load_components, write_preset

pytestmark = pytest.mark.slow


def test_full_preset_exports_with_external_data_and_matches(tmp_path):
    checkpoint = write_preset("full", tmp_path / "full")
    components = load_components(checkpoint)
    assert sum(p.numel() for p in components.unet.parameters()) > 400e6
    build = tmp_path / "build"
    export_all(components, build, report=lambda _: None)
    manifest = load_manifest(build)
    denoise = manifest["graphs"]["denoise"]
    assert denoise["external_data"] == "denoise.onnx.data"
    assert (build / "denoise.onnx.data").stat().st_size > 2**31  # over the protobuf limit
    # the statistics vectors of the real architecture (GroupNorms of 32 groups): fixed integers in the manifest
    stats = stats_sizes(manifest)
    assert stats["denoise_stats"] > stats["decode_stats"] > 0 and stats["decode_stats"] % 64 == 0
    # RAFT needs >= 128 px per side of what it sees: x2 from 64 px LR, x1 from 128 (x1 pads 132 to 136 inside)
    sizes = {"flow_x2": (64, 68), "flow_x1": (132, 128)}
    for name in GRAPH_NAMES:
        session = ort.InferenceSession(str(build / manifest["graphs"][name]["file"]), providers=["CPUExecutionProvider"])
        module = build_wrapper(name, components)
        inputs = sample_inputs(name, *sizes.get(name, (40, 52)), seed=1, stats=stats)
        with torch.no_grad():
            expected = module(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {s.name: x.numpy() for s, x in zip(GRAPHS[name].inputs, inputs)})
        for out, ref in zip(got, expected):
            assert np.abs(out - ref.numpy()).max() <= (1e-3 if name.startswith("flow") else 1e-4), name
        del session
