"""Typed (fp16/bf16) graphs made by ModelOpt AutoCast, checked against float32 on the CPU (tiny preset).

Slow conversions live in session fixtures: every graph is converted once per precision. Torch runs
single-threaded here (the tiny networks are thousands of small ops, and two spinning OpenMP
threads on a shared 2-core machine made the same reference run take 1 s or 50 s).
Typed graphs run through their CPU emulation graphs (float32 arithmetic, every fp16/bf16 value
rounded where it is produced): ONNX Runtime's CPU provider has no bf16 kernels and runs fp16 nodes
without a CPU kernel in float32 with the casts between them removed, which hides fp16 overflow
(see svsr/engines/precision.py and the overflow test).
"""

from __future__ import annotations

import builtins
import importlib.util
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from svsr.contract.errors import InputError, MissingDependencyError
from svsr.contract.graphs import FLOAT32_ONLY_GRAPHS, GRAPH_NAMES, GRAPHS

# the graphs that get fp16/bf16 versions (warp and blend always run in float32)
TYPED = tuple(g for g in GRAPH_NAMES if g not in FLOAT32_ONLY_GRAPHS)

HAVE_AUTOCAST = importlib.util.find_spec("modelopt") is not None
needs_autocast = pytest.mark.skipif(not HAVE_AUTOCAST, reason="needs ModelOpt AutoCast: pip install 'svsr[precision]'")

# calibration for the suite: the default clip frames (3, 48x36) and a 3-step run (steps 0, 1, 2 recorded)
CALIBRATION_STEPS = 3
RESOLUTIONS = [(36, 44), (40, 52)]  # LR: the trace size and another one
# RAFT needs >= 128 px per side of what it sees: the x2 / x1 flow graphs' trace sizes and another one
FLOW_RESOLUTIONS = {"flow_x2": [(68, 76), (64, 72)], "flow_x1": [(132, 140), (128, 136)]}


@contextmanager
def torch_threads(n: int):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return _ort_session(path).run(None, feed)


def _graph_inputs(name: str, height: int, width: int, manifest: dict | None = None) -> dict[str, np.ndarray]:
    """Sample inputs; ``manifest`` gives the statistics lengths of graphs with a norm_stats input."""
    from svsr.contract.manifest import stats_sizes
    from svsr.export.exporter import sample_inputs

    stats = stats_sizes(manifest) if manifest is not None else None
    return {spec.name: t.numpy() for spec, t in zip(GRAPHS[name].inputs, sample_inputs(name, height, width, stats=stats))}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_components(tiny_checkpoint):
    from svsr.reference.checkpoint import load_components

    return load_components(tiny_checkpoint)


@pytest.fixture(scope="session")
def float_build(tiny_components, tmp_path_factory):
    from svsr.export.exporter import export_all

    out = tmp_path_factory.mktemp("precision") / "build"
    export_all(tiny_components, out, preset="tiny", report=lambda _m: None)
    return out


@pytest.fixture(scope="session")
def typed_build(float_build, tiny_components):
    """The tiny build with every typed graph AutoCast to fp16 and to bf16 (calibrated from the reference)."""
    if not HAVE_AUTOCAST:
        pytest.skip("needs ModelOpt AutoCast: pip install 'svsr[precision]'")
    from svsr.engines.calibration import CalibrationSettings
    from svsr.engines.precision import make_typed_graphs
    from svsr.contract.manifest import load_manifest

    log: list[str] = []
    seconds = {}
    with torch_threads(1):
        for precision in ("fp16", "bf16"):
            start = time.perf_counter()
            make_typed_graphs(
                float_build,
                tiny_components,
                precision,
                settings=CalibrationSettings(num_inference_steps=CALIBRATION_STEPS),
                report=log.append,
            )
            seconds[precision] = time.perf_counter() - start
    return SimpleNamespace(dir=float_build, manifest=load_manifest(float_build), log=log, seconds=seconds)


def typed_file(build, name: str, precision: str, cpu: bool = True) -> Path:
    entry = build.manifest["graphs"][name]["typed"][precision]
    return build.dir / (entry.get("ort_cpu_file") if cpu and entry.get("ort_cpu_file") else entry["file"])


# -- the plan (no ModelOpt needed) ------------------------------------------------------------
def test_autocast_settings_bound_their_thresholds():
    from svsr.engines.precision import AutoCastSettings

    assert AutoCastSettings().overflow_limit == 65504.0 / 2
    with pytest.raises(InputError, match="data_max must be positive"):
        AutoCastSettings(data_max=0)
    with pytest.raises(InputError, match="fp16_headroom"):
        AutoCastSettings(fp16_headroom=0.5)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_emulation_rounds_every_low_precision_tensor(precision):
    import ml_dtypes
    import onnx
    from onnx import TensorProto, helper

    from svsr.engines.precision import emulate_low_precision

    low, elem = (np.float16, TensorProto.FLOAT16) if precision == "fp16" else (ml_dtypes.bfloat16, TensorProto.BFLOAT16)
    # x (fp32) -> Cast low -> Mul(w low) -> Add(itself) -> Cast fp32: a typed graph
    w = onnx.numpy_helper.from_array(np.array([1.0078125, 3.0, 3.0], dtype=low), "w")
    nodes = [
        helper.make_node("Cast", ["x"], ["xl"], to=elem, name="in"),
        helper.make_node("Mul", ["xl", "w"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "m"], ["s"], name="add"),
        helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT, name="out"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [w]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    x = np.array([1.2345678, 7.654321, 3.0e4], np.float32)  # 3e4 * 3 is past the fp16 range, not bf16's
    emulated = emulate_low_precision(model, precision)
    assert not any(i.data_type == elem for i in emulated.graph.initializer)
    with np.errstate(over="ignore"):
        got = _ort_session_from_model(emulated).run(None, {"x": x})[0]
        xl = x.astype(low).astype(np.float32)
        m = (xl * np.array([1.0078125, 3.0, 3.0], np.float32)).astype(low).astype(np.float32)
        expected = (m + m).astype(low).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got[:2], (x * np.array([1.0078125, 3.0, 3.0], np.float32) * 2)[:2])  # rounding happened
    assert np.isinf(got[2]) == (precision == "fp16")  # fp16 overflow shows, as on a GPU


def _ort_session_from_model(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_coordinate_nodes_are_the_warp_grid(float_build):
    import onnx

    from svsr.engines.precision import coordinate_nodes

    warp = onnx.load(str(float_build / "warp.onnx"))
    ops = {n.name: n.op_type for n in warp.graph.node}
    found = coordinate_nodes(warp)
    assert {ops[n] for n in found} >= {"CumSum", "Add", "Div", "Concat", "GridSample"}
    assert not any(ops[n] in ("Conv", "InstanceNormalization", "MatMul") for n in found)
    for vae in ("guide_decode", "decode", "decode_stats"):  # the VAE decoders hold no pixel coordinates
        assert coordinate_nodes(onnx.load(str(float_build / f"{vae}.onnx"))) == []
    flow = onnx.load(str(float_build / "flow.onnx"))
    flow_ops = {n.name: n.op_type for n in flow.graph.node}
    flow_found = coordinate_nodes(flow)
    assert sum(flow_ops[n] == "GridSample" for n in flow_found) == sum(op == "GridSample" for op in flow_ops.values())
    assert not any(flow_ops[n] == "Conv" for n in flow_found)


# -- calibration --------------------------------------------------------------------------------
@needs_autocast
def test_calibration_holds_real_inputs_in_autocast_layout(typed_build, tiny_components):
    from modelopt.onnx.quantization.calib_utils import CalibrationDataProvider

    from svsr.engines.calibration import CalibrationData
    from svsr.engines.precision import _quiet_autocast
    from svsr.contract.scheduler import step_coefficients

    data = CalibrationData.load(typed_build.dir / "calibration")
    assert sorted(data.counts) == sorted(TYPED)  # warp and blend are never typed, so never calibrated
    for name in TYPED:
        npz = np.load(typed_build.dir / "calibration" / f"{name}.npz")
        assert sorted(npz.files) == sorted(spec.name for spec in GRAPHS[name].inputs)
        # ModelOpt's own splitter must give back the samples one by one, each with the graph's shapes
        with _quiet_autocast():
            provided = CalibrationDataProvider(str(typed_build.dir / f"{name}.onnx"), {k: npz[k] for k in npz.files}).calibration_data_list
        assert len(provided) == data.counts[name]
        for sample, mine in zip(provided, data.samples(name)):
            for spec in GRAPHS[name].inputs:
                assert sample[spec.name].shape[0] == (1 if spec.shape[0] in ("batch", 1) else spec.shape[0])
                np.testing.assert_array_equal(sample[spec.name], mine[spec.name])
    denoise = list(data.samples("denoise"))
    scheduler = typed_build.manifest["scheduler"]
    steps = step_coefficients(scheduler["config"], np.asarray(scheduler["alphas_cumprod"], np.float32), CALIBRATION_STEPS)
    assert sorted({float(s["timestep"][0]) for s in denoise}) == sorted(float(s.timestep) for s in steps)  # first, middle, last
    assert {float(s["tcm_scale"][0]) for s in denoise} == {0.0, 1.0}  # first frame of a sweep and TCM calls
    for sample in denoise:
        step = next(s for s in steps if s.timestep == int(sample["timestep"][0]))
        np.testing.assert_array_equal(sample["step_coeffs"], step.coeffs)
        assert sample["step_coeffs"].shape == (8,) and not np.any(sample["x0_history"])  # DDPM reads no history
        assert sample["guidance"].shape == (1, 3, 4 * sample["z"].shape[2], 4 * sample["z"].shape[3])
        if sample["tcm_scale"][0] == 1.0:
            assert np.abs(sample["guidance"]).max() > 0.1  # a real decoded, warped frame
    last = [s for s in denoise if int(s["timestep"][0]) == steps[-1].timestep]
    assert all(np.abs(s["noise"]).max() == 0 for s in last) == (steps[-1].timestep == 0)
    assert data.counts["flow"] == 2  # one neighbour pair, both directions
    flow = list(data.samples("flow"))
    np.testing.assert_array_equal(flow[0]["frame"], flow[1]["previous"])
    # the smaller-scale flow graphs get the same pairs bicubic x2 / x4: RAFT sees the images the x4 flow's RAFT sees
    for name, factor in (("flow_x2", 2), ("flow_x1", 4)):
        assert data.counts[name] == 2
        for sample, lr in zip(data.samples(name), flow):
            assert sample["frame"].shape == (1, 3, factor * lr["frame"].shape[2], factor * lr["frame"].shape[3])
    # guide_decode sees the x0 of the frame before each TCM call: one per TCM-guided denoise sample
    assert data.counts["guide_decode"] == sum(float(s["tcm_scale"][0]) == 1.0 for s in denoise)
    assert all(np.abs(s["x0"]).max() > 0 for s in data.samples("guide_decode"))
    # untiled calls: the networks' own statistics (shared_norm 0, zero norm_stats of the manifest's length)
    for name, stats in (("denoise", "denoise_stats"), ("guide_decode", "decode_stats"), ("decode", "decode_stats")):
        for sample in data.samples(name):
            assert sample["shared_norm"].tolist() == [0.0] and not sample["norm_stats"].any()
            assert sample["norm_stats"].shape == (1, typed_build.manifest["norm_stats"][stats]["size"])
    # the stats graphs get the whole frame's inputs of the calls they serve
    assert data.counts["denoise_stats"] == data.counts["denoise"]
    for stats_sample, sample in zip(data.samples("denoise_stats"), denoise):
        for name in stats_sample:
            np.testing.assert_array_equal(stats_sample[name], sample[name])
    assert data.counts["decode_stats"] == data.counts["guide_decode"] + data.counts["decode"]


@needs_autocast
def test_calibration_records_through_the_reference_without_changing_it(tiny_reference):
    from svsr.engines.calibration import CalibrationSettings, record_calibration
    from svsr.contract.noise import NumpyNoise
    from svsr.sample_clip import sample_frames

    frames = sample_frames(2, width=40, height=32)
    with torch_threads(1):
        plain = tiny_reference.upscale(frames, num_inference_steps=2, noise=NumpyNoise(0), progress=False)
        data = record_calibration(tiny_reference, frames, CalibrationSettings(num_inference_steps=2, max_decode=5))
        again = tiny_reference.upscale(frames, num_inference_steps=2, noise=NumpyNoise(0), progress=False)
    assert "predict" not in vars(tiny_reference)  # wrappers removed
    np.testing.assert_array_equal(np.stack(plain), np.stack(again))
    assert data.counts == {"flow": 2, "flow_x2": 2, "flow_x1": 2, "denoise": 4, "denoise_stats": 4, "guide_decode": 2, "decode_stats": 4, "decode": 2}
    assert data.arrays["decode"]["z"].shape == (2, 4, 32, 40)
    with pytest.raises(InputError, match="at least 2 frames"):
        record_calibration(tiny_reference, frames[:1])


# -- typed graphs vs float32 --------------------------------------------------------------------
@needs_autocast
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_manifest_records_typed_graphs(typed_build, precision):
    import onnx

    from svsr.contract.manifest import load_manifest, sha256_file

    manifest = load_manifest(typed_build.dir)  # validates the schema and the float32 files
    assert not any("typed" in manifest["graphs"][name] for name in FLOAT32_ONLY_GRAPHS)
    for name in TYPED:
        entry = manifest["graphs"][name]["typed"][precision]
        path = typed_build.dir / entry["file"]
        assert entry["file"] == f"{name}.{precision}.onnx" and entry["precision"] == precision
        assert sha256_file(path) == entry["sha256"]
        assert entry["source_sha256"] == manifest["graphs"][name]["sha256"]
        assert entry["io_dtype"] == "float32" and entry["external_data"] is None
        assert entry["low_precision_nodes"] > 0
        model = onnx.load(str(path))
        source = onnx.load(str(typed_build.dir / f"{name}.onnx"), load_external_data=False)

        def io_dims(m):
            return [[d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in list(m.graph.input) + list(m.graph.output)]

        for vi, spec in zip(list(model.graph.input) + list(model.graph.output), GRAPHS[name].inputs + GRAPHS[name].outputs):
            assert vi.name == spec.name and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert io_dims(model) == io_dims(source)  # dynamic shapes preserved
        assert io_dims(model)[0][0] == "batch" and "height" in io_dims(model)[0] + io_dims(model)[-1] + ["height"]
        wanted = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.BFLOAT16
        assert sum(i.data_type == wanted for i in model.graph.initializer) > 0
        assert entry["ort_cpu_file"] == f"{name}.{precision}.ortcpu.onnx"
        assert sha256_file(typed_build.dir / entry["ort_cpu_file"]) == entry["ort_cpu_sha256"]
    flow = manifest["graphs"]["flow"]["typed"][precision]  # RAFT's sampling grids: coordinates stay float32
    assert any("GridSample" in n for n in flow["coordinate_float32"])
    ops = {n.name: n.op_type for n in onnx.load(str(typed_build.dir / "flow.onnx"), load_external_data=False).graph.node}
    computing = {n for n in flow["coordinate_float32"] if ops[n] != "Cast"}  # kept_float32 leaves Casts out
    assert computing and computing <= set(flow["kept_float32"])
    assert manifest["graphs"]["guide_decode"]["typed"][precision]["coordinate_float32"] == []
    denoise = manifest["graphs"]["denoise"]["typed"][precision]
    # x0's clamp takes step_coeffs[5] = 3e38 (no clipping): above the fp16 range
    assert ("/Clip" in denoise["overflow_float32"]) == (precision == "fp16")
    assert "/Clip" in denoise["kept_float32"]


# max |typed - fp32| / max |fp32| on sample inputs (typed graphs run as their CPU emulation);
# measured (ORT 1.32, ModelOpt 0.47) at 36x44 / 40x52 in the comment, limits about 3x the larger
REL_LIMITS = {
    ("flow", "fp16"): 6e-3,  # 1.9e-3 / 1.7e-3
    ("denoise", "fp16"): 3e-3,  # z_prev 7.0e-4 / 8.6e-4, x0 6.6e-4 / 1.05e-3
    ("guide_decode", "fp16"): 5e-3,  # 1.6e-3 / 1.5e-3
    ("decode", "fp16"): 4.5e-3,  # 1.45e-3 / 1.3e-3
    ("flow", "bf16"): 5e-2,  # 1.4e-2 / 1.25e-2 (0.16 with the RAFT grids in bf16)
    ("denoise", "bf16"): 3e-2,  # z_prev 8.3e-3 / 7.4e-3, x0 7.1e-3 / 6.7e-3
    ("guide_decode", "bf16"): 4e-2,  # 1.1e-2 / 1.2e-2
    ("decode", "bf16"): 4e-2,  # 1.1e-2 / 1.2e-2
    # schema 3's graphs, at their own sizes (x2 68x76 / 64x72, x1 132x140 / 128x136)
    ("flow_x2", "fp16"): 6e-3,  # 1.8e-3 / 2.0e-3
    ("flow_x1", "fp16"): 6e-3,  # 1.7e-3 / 2.0e-3
    ("denoise_stats", "fp16"): 2.5e-3,  # 7.6e-4 / 8.1e-4
    ("decode_stats", "fp16"): 1.2e-3,  # 3.7e-4 / 3.7e-4
    ("flow_x2", "bf16"): 5e-2,  # 1.5e-2 / 1.65e-2
    ("flow_x1", "bf16"): 4.5e-2,  # 1.4e-2 / 1.5e-2
    ("denoise_stats", "bf16"): 3.5e-2,  # 1.1e-2 / 6.3e-3
    ("decode_stats", "bf16"): 1.5e-2,  # 4.7e-3 / 4.5e-3
}


@needs_autocast
@pytest.mark.parametrize("size", range(len(RESOLUTIONS)))
@pytest.mark.parametrize("name,precision", list(REL_LIMITS), ids=lambda v: str(v))
def test_typed_graph_matches_float32(typed_build, name, precision, size):
    size = FLOW_RESOLUTIONS.get(name, RESOLUTIONS)[size]
    feed = _graph_inputs(name, *size, manifest=typed_build.manifest)
    reference = _run(typed_build.dir / f"{name}.onnx", feed)
    typed = _run(typed_file(typed_build, name, precision), feed)
    for spec, want, got in zip(GRAPHS[name].outputs, reference, typed):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.isfinite(got).all()
        abs_err = float(np.abs(got - want).max())
        rel = abs_err / float(np.abs(want).max())
        print(f"{name}.{precision} {size} {spec.name}: max abs {abs_err:.3g}, rel {rel:.3g}")
        assert rel < REL_LIMITS[name, precision], f"{spec.name}: relative error {rel:.3g}"
        assert rel > 0  # it really is a different, lower-precision graph


@needs_autocast
def test_coordinates_in_float32_is_what_keeps_bf16_warps_accurate(typed_build, tmp_path):
    """Converting the flow graph without the coordinate rule moves RAFT's sampling by pixels (the test can fail).

    (The guidance warp itself is the float32-only ``warp`` graph; RAFT's grids are the coordinates a typed graph holds.)
    """
    from svsr.engines.calibration import CalibrationData
    from svsr.engines.precision import AutoCastSettings, convert_graph

    data = CalibrationData.load(typed_build.dir / "calibration")
    source = tmp_path / "flow.onnx"
    shutil.copy(typed_build.dir / "flow.onnx", source)
    entry = convert_graph(source, "bf16", list(data.samples("flow")), AutoCastSettings(keep_coordinates=False))
    assert entry["coordinate_float32"] == [] and not any("GridSample" in n for n in entry["kept_float32"])
    feed = _graph_inputs("flow", 36, 44)
    want = _run(source, feed)[0]
    naive = float(np.abs(_run(tmp_path / entry["ort_cpu_file"], feed)[0] - want).max() / np.abs(want).max())
    kept = float(np.abs(_run(typed_file(typed_build, "flow", "bf16"), feed)[0] - want).max() / np.abs(want).max())
    print(f"flow bf16 rel error: coordinates bf16 {naive:.3g}, coordinates float32 {kept:.3g}")  # measured 0.135 vs 0.0122
    assert naive > 5 * kept


@needs_autocast
def test_unchanged_typed_graphs_are_reused_and_damaged_ones_redone(typed_build, tiny_components, tmp_path):
    from svsr.engines.calibration import CalibrationSettings
    from svsr.engines.precision import AutoCastSettings, make_typed_graphs
    from svsr.contract.manifest import load_manifest

    build = tmp_path / "build"
    shutil.copytree(typed_build.dir, build)
    settings = CalibrationSettings(num_inference_steps=CALIBRATION_STEPS)
    log: list[str] = []
    make_typed_graphs(build, tiny_components, "fp16", settings=settings, report=log.append)
    assert sum("reused" in line for line in log) == len(TYPED) == 8
    assert not any("converted" in line or line.strip().startswith("calibration") for line in log)
    before = load_manifest(build)["graphs"]["decode"]["typed"]["fp16"]
    (build / "decode.fp16.onnx").write_bytes(b"damaged")
    log.clear()
    with torch_threads(1):
        manifest = make_typed_graphs(build, tiny_components, {"decode": "fp16", "guide_decode": "fp16"}, settings=settings, report=log.append)
    assert any(line.split()[:3] == ["decode", "fp16", "converted"] for line in log)
    assert any("calibration reused" in line for line in log)  # the recorded inputs are kept too
    after = manifest["graphs"]["decode"]["typed"]["fp16"]
    assert after["sha256"] == before["sha256"]  # the conversion is deterministic
    assert manifest["graphs"]["denoise"]["typed"]["fp16"] == load_manifest(typed_build.dir)["graphs"]["denoise"]["typed"]["fp16"]
    log.clear()
    make_typed_graphs(build, tiny_components, {"decode": "fp16", "guide_decode": "fp16"}, settings=settings, report=log.append, autocast=AutoCastSettings(data_max=256.0))
    assert any(line.split()[:3] == ["decode", "fp16", "converted"] for line in log)  # a new plan is a new graph


@needs_autocast
def test_graphs_with_external_data_convert_and_big_results_are_split(typed_build, tmp_path, monkeypatch):
    """The full model's graphs exceed protobuf's 2 GB: external data in, external data out."""
    import onnx

    from svsr.engines import precision
    from svsr.engines.calibration import CalibrationData

    source = tmp_path / "decode.onnx"
    onnx.save_model(
        onnx.load(str(typed_build.dir / "decode.onnx")), str(source),
        save_as_external_data=True, all_tensors_to_one_file=True, location="decode.onnx.data", size_threshold=1024,
    )  # fmt: skip
    from svsr.export import onnx_files

    monkeypatch.setattr(onnx_files, "PROTOBUF_LIMIT", 100_000)  # pretend the limit is 100 kB (decode fp16's weights are ~290 kB)
    monkeypatch.setattr(onnx_files, "EXTERNAL_MARGIN", 0)
    data = CalibrationData.load(typed_build.dir / "calibration")
    entry = precision.convert_graph(source, "fp16", list(data.samples("decode")))
    assert entry["external_data"] == "decode.fp16.onnx.data" and (tmp_path / entry["external_data"]).stat().st_size > 100_000
    assert entry["ort_cpu_external_data"] == "decode.fp16.ortcpu.onnx.data"
    # the weights went out: every large initializer of the typed graph lives in its external file (on the
    # tiny preset the graph itself, with its written-out GroupNorms, is about as big as its fp16 weights)
    typed = onnx.load(str(tmp_path / entry["file"]), load_external_data=False)
    large = [t for t in typed.graph.initializer if int(np.prod(t.dims)) * 2 > 1024]
    assert large and all(t.data_location == onnx.TensorProto.EXTERNAL for t in large)
    feed = _graph_inputs("decode", 40, 52, manifest=typed_build.manifest)
    want = _run(source, feed)[0]
    for file in (entry["file"], entry["ort_cpu_file"]):
        got = _run(tmp_path / file, feed)[0]
        assert float(np.abs(got - want).max()) < REL_LIMITS["decode", "fp16"]  # |rgb| <= 1: abs ~ rel


# -- end to end -----------------------------------------------------------------------------------
# PSNR of the 4x output vs the float32 graphs (tiny preset, sample clip 3 frames 64x48, 3 steps,
# numpy noise seed 0, emulated typed graphs): measured fp16 69.1 dB, bf16 51.2 dB
PSNR_FLOORS = {"fp16": 60.0, "bf16": 45.0}


@needs_autocast
def test_end_to_end_psnr_against_float32(typed_build):
    from svsr.contract.noise import NumpyNoise
    from svsr.runtime.sampling.ort_backend import OrtBackend
    from svsr.runtime.sampling.sampler import Sampler
    from svsr.sample_clip import sample_frames

    manifest = typed_build.manifest  # on the CPU, OrtBackend runs typed graphs via their emulation twins
    frames = sample_frames(3)
    outputs = {}
    for precision in ("fp32", "fp16", "bf16"):
        backend = OrtBackend(typed_build.dir, manifest, device="cpu", precision=precision, threads=1)
        assert backend.precisions == {g: "fp32" if g in FLOAT32_ONLY_GRAPHS else precision for g in GRAPH_NAMES}
        outputs[precision] = np.stack(Sampler(backend, manifest).upscale(frames, 3, noise=NumpyNoise(0)))
    for precision, floor in PSNR_FLOORS.items():
        value = psnr(outputs[precision], outputs["fp32"])
        print(f"end to end {precision} vs fp32: {value:.1f} dB")
        assert np.isfinite(outputs[precision]).all()
        assert floor < value < 200, f"{precision}: {value:.1f} dB"
    assert psnr(outputs["fp16"], outputs["fp32"]) > psnr(outputs["bf16"], outputs["fp32"])  # fp16 has 3 more mantissa bits


# -- overflow: a VAE whose decoder exceeds the fp16 range -----------------------------------------
OVERFLOW_SCALE = 1e5  # conv2 of the last resnet: outputs ~2.7e5 (fp16 max 65504); weights stay < 1e4


@pytest.fixture(scope="session")
def overflow_build(tmp_path_factory):
    if not HAVE_AUTOCAST:
        pytest.skip("needs ModelOpt AutoCast: pip install 'svsr[precision]'")
    import torch
    from diffusers import AutoencoderKL

    from svsr.engines.calibration import CalibrationSettings
    from svsr.engines.precision import make_typed_graphs
    from svsr.export.exporter import export_all
    from svsr.contract.manifest import load_manifest
    from svsr.reference.checkpoint import load_components
    from svsr.reference.presets import write_preset
    from svsr.sample_clip import sample_frames

    root = tmp_path_factory.mktemp("overflow")
    checkpoint = write_preset("tiny", root / "checkpoint", seed=0)
    vae = AutoencoderKL.from_pretrained(checkpoint / "vae")
    conv = vae.decoder.up_blocks[-1].resnets[-1].conv2
    with torch.no_grad():
        conv.weight.mul_(OVERFLOW_SCALE)
        conv.bias.mul_(OVERFLOW_SCALE)
    vae.save_pretrained(checkpoint / "vae")
    components = load_components(checkpoint)
    peak = {}
    hook = components.vae.decoder.up_blocks[-1].resnets[-1].conv2.register_forward_hook(
        lambda _m, _i, out: peak.__setitem__("max", max(peak.get("max", 0.0), float(out.abs().max())))
    )
    build = root / "build"
    export_all(components, build, report=lambda _m: None)
    log: list[str] = []
    with torch_threads(1):
        make_typed_graphs(
            build,
            components,
            {"decode": "fp16", "guide_decode": "fp16"},
            calibration_frames=sample_frames(2, width=40, height=32),
            settings=CalibrationSettings(num_inference_steps=2),
            report=log.append,
        )
    hook.remove()
    return SimpleNamespace(dir=build, manifest=load_manifest(build), peak=peak["max"], log=log)


@needs_autocast
def test_fp16_overflow_is_caught_by_calibration(overflow_build):
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    from svsr.engines.calibration import CalibrationData
    from svsr.engines.precision import FP16_MAX, emulate_low_precision, low_precision_nodes

    assert overflow_build.peak > FP16_MAX  # the reference itself (PyTorch) saw activations beyond fp16
    entry = overflow_build.manifest["graphs"]["decode"]["typed"]["fp16"]
    conv = "/decoder/up_blocks.2/resnets.1/conv2/Conv"
    assert conv in entry["overflow_float32"] and "/decoder/up_blocks.2/resnets.1/Add" in entry["overflow_float32"]
    assert entry["calibrated_absmax"] > FP16_MAX
    typed = onnx.load(str(overflow_build.dir / entry["file"]))
    float_out = {n.name for n in typed.graph.node if n.op_type not in ("Shape", "Cast")}
    for node in entry["overflow_float32"]:
        if node in float_out:
            assert node in entry["kept_float32"], node
    assert not set(entry["overflow_float32"]) & set(low_precision_nodes(typed, "fp16", include_casts=True))
    assert entry["low_precision_nodes"] > 150  # the rest of the decoder still went to fp16
    assert any("overflow node(s) kept float32" in line for line in overflow_build.log)

    calibration = CalibrationData.load(overflow_build.dir / "calibration")
    feeds = list(calibration.samples("decode")) + [_graph_inputs("decode", 36, 44, manifest=overflow_build.manifest)]
    source = overflow_build.dir / "decode.onnx"
    # the same conversion without range checks (no calibration, no data_max, no overflow guard)
    naive = convert_to_mixed_precision(onnx_path=str(source), low_precision_type="fp16", keep_io_types=True, data_max=np.inf, init_max=np.inf)
    assert len(low_precision_nodes(naive, "fp16")) > entry["low_precision_nodes"]
    naive_path = overflow_build.dir / "decode.naive-fp16.ortcpu.onnx"
    onnx.save(emulate_low_precision(naive, "fp16"), str(naive_path))
    for feed in feeds:
        want = _run(source, feed)[0]
        got = _run(overflow_build.dir / entry["ort_cpu_file"], feed)[0]
        assert np.isfinite(want).all() and np.isfinite(got).all()
        err = float(np.abs(got - want).max())
        print(f"overflow VAE decode fp16 vs fp32: max abs {err:.3g}")
        assert err < 1e-2  # measured 1.5e-3 .. 2.3e-3
        assert not np.isfinite(_run(naive_path, feed)[0]).all()  # without the range check fp16 overflows: the test can fail


# -- this file's conversions: each exactly once (times printed with -s; about 10 minutes on 2 cores) --
@needs_autocast
def test_conversion_times_are_reported(typed_build):
    lines = [line for line in typed_build.log if "converted in" in line]
    assert len(lines) == 2 * len(TYPED) == 16  # 8 typed graphs x 2 precisions, each converted exactly once
    print("\n".join(lines))
    print({k: round(v, 1) for k, v in typed_build.seconds.items()})  # printed, not asserted: speed depends on the machine's load


def test_svsr_run_runs_typed_graphs_end_to_end(typed_build, tmp_path):
    """`svsr-run --backend ort --precision fp16|bf16` reads the typed graphs from the build folder."""
    from PIL import Image

    from svsr.cli import run_main
    from svsr.sample_clip import sample_frames

    source = tmp_path / "in"
    source.mkdir()
    for i, frame in enumerate(sample_frames(3)):
        Image.fromarray(frame).save(source / f"{i:02d}.png")
    outputs = {}
    for precision in ("fp32", "fp16", "bf16"):
        out = tmp_path / f"out_{precision}"
        assert run_main([str(source), "-o", str(out), "--model", str(typed_build.dir), "--backend", "ort",
                         "--precision", precision, "--steps", "2", "--quiet"]) == 0
        outputs[precision] = np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in sorted(out.glob("*.png"))])
    assert outputs["fp16"].shape == outputs["fp32"].shape == (3, 192, 256, 3)
    print(f"svsr-run 8-bit PSNR vs fp32: fp16 {psnr(outputs['fp16'], outputs['fp32']):.1f} dB, bf16 {psnr(outputs['bf16'], outputs['fp32']):.1f} dB")
    # 8-bit outputs, measured here: fp16 60.1 dB, bf16 50.0 dB (rounding to 1/255 caps what PSNR shows)
    assert psnr(outputs["fp16"], outputs["fp32"]) > 50
    assert psnr(outputs["bf16"], outputs["fp32"]) > 42


def test_svsr_run_per_graph_precision_overrides(typed_build):
    from svsr.cli import run_parser
    from svsr.contract.errors import InputError
    from svsr.contract.precision import Precision
    from svsr.runtime.sampling.backend_choice import open_sampler

    args = run_parser().parse_args(["in.mp4", "--precision", "fp16", "--vae-precision", "bf16"])
    precision = Precision.from_flags(args.precision, args.vae_precision, args.flow_precision)
    mapping = precision.per_graph()
    assert mapping == {"flow": "fp16", "flow_x2": "fp16", "flow_x1": "fp16", "denoise": "fp16", "denoise_stats": "fp16",
                       "guide_decode": "bf16", "decode_stats": "bf16", "warp": "fp32", "decode": "bf16", "blend": "fp32"}  # fmt: skip
    sampler = open_sampler(typed_build.dir, backend="ort", precision=precision)
    assert sampler.backend.precisions == mapping
    args = run_parser().parse_args(["in.mp4", "--flow-precision", "fp16"])
    with pytest.raises(InputError, match="fixed precision"):
        Precision.from_flags(args.precision, args.vae_precision, args.flow_precision)
