"""Build folders come from elsewhere: paths stay inside, numbers are bounded, damage is one sentence (issue 21)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from svsr.contract.errors import ManifestError
from svsr.contract.manifest import MANIFEST_NAME, check_graph_file, check_onnx_graph, load_manifest, validate_manifest
from svsr.contract.paths import DamagedOnnxFile, escape_reason, inside_build_folder, onnx_external_data_locations
from svsr.contract.engine_records import validate_record


@pytest.fixture
def build(tiny_build, tmp_path) -> Path:
    """A private copy of the tiny build folder, free to damage."""
    out = tmp_path / "build"
    shutil.copytree(tiny_build, out)
    return out


def edit_manifest(build: Path, change) -> None:
    data = json.loads((build / MANIFEST_NAME).read_text())
    change(data)
    (build / MANIFEST_NAME).write_text(json.dumps(data))


def one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.endswith(".") and "internal error" not in text
    return text


def tiny_model(path: Path, location: str | None = None) -> None:
    """A 1-node ONNX model (y = x + w); with ``location``, w's data is external at that (raw) location."""
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if location is not None:
        tensor = model.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
    path.write_bytes(model.SerializeToString())


# -- the rule ---------------------------------------------------------------------------------------
def test_the_rule_refuses_dotdot_absolute_and_symlinks_out_and_keeps_names_inside(tmp_path):
    root = tmp_path / "b"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link_out").symlink_to(tmp_path / "outside")
    (root / "link_in").symlink_to(root / "sub")
    assert escape_reason(root, "flow.onnx") is None and escape_reason(root, "sub/x.plan") is None
    assert escape_reason(root, "link_in/x.plan") is None  # a link that stays inside is fine
    assert "'..'" in escape_reason(root, "../x.onnx")
    assert "'..'" in escape_reason(root, "sub/../../x.onnx")
    assert "absolute" in escape_reason(root, str(tmp_path / "x.onnx"))
    assert "symbolic link" in escape_reason(root, "link_out/x.onnx")
    assert escape_reason(root, "") == "is not a file name" and escape_reason(root, 7) == "is not a file name"
    with pytest.raises(ManifestError) as info:
        inside_build_folder(root, "../x.onnx", "graph file")
    assert one_sentence(info.value) == (
        f"manifest.json names graph file '../x.onnx', which climbs out of the build folder {root} with '..'; "
        f"build folders may only name files inside themselves: re-export it with svsr-export --out {root}."
    )


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_manifest_naming_a_graph_outside_is_refused_before_anything_opens_it(build, tmp_path, how):
    stolen = tmp_path / "elsewhere.onnx"
    shutil.copy(build / "flow.onnx", stolen)
    name = {"dotdot": "../elsewhere.onnx", "absolute": str(stolen), "symlink": "flow_link.onnx"}[how]
    if how == "symlink":
        (build / "flow_link.onnx").symlink_to(stolen)
    edit_manifest(build, lambda m: m["graphs"]["flow"].update(file=name))
    before = sorted(p.name for p in build.iterdir())
    for check_files in (False, True):
        with pytest.raises(ManifestError, match="build folders may only name files inside themselves") as info:
            load_manifest(build, check_files=check_files)
        assert "the flow graph file" in one_sentence(info.value)
    assert sorted(p.name for p in build.iterdir()) == before  # nothing written


def test_engine_plans_and_typed_graphs_outside_are_refused(build):
    edit_manifest(build, lambda m: m["graphs"]["denoise"].update(typed={"fp16": {"file": "../d.onnx", "sha256": "0" * 64, "precision": "fp16"}}))
    with pytest.raises(ManifestError, match="the fp16 denoise graph file '../d.onnx'"):
        load_manifest(build, check_files=False)


def test_a_plan_outside_the_folder_is_refused_by_the_tensorrt_loader(tmp_path):
    from svsr.contract.engine_records import MachineEnv
    from svsr.runtime.sampling.trt_plans import verify_plans
    from tests.support.trt import H100, synthetic_manifest, write_engines

    build = tmp_path / "b"
    build.mkdir()
    manifest = write_engines(build, synthetic_manifest(build))
    env = MachineEnv(H100.tensorrt_version, False, H100.gpu_name, H100.compute_capability)
    # every plan the build has (its small profile builds none of RAFT at x2 / x1)
    assert set(verify_plans(build, manifest, "fp32", env).plans) == {r["graph"] for r in manifest["engines"].values()} >= {"flow", "denoise", "blend"}
    elsewhere = tmp_path / "elsewhere.plan"
    shutil.copy(build / manifest["engines"]["flow.fp32"]["file"], elsewhere)
    manifest["engines"]["flow.fp32"]["file"] = str(elsewhere)
    with pytest.raises(ManifestError) as info:
        verify_plans(build, manifest, "fp32", env)
    assert "names the flow fp32 engine plan" in one_sentence(info.value) and "is an absolute path" in str(info.value)
    assert not (tmp_path / "elsewhere.plan.sha256.json").exists()  # nothing written beside it


# -- ONNX external data -----------------------------------------------------------------------------
def test_external_data_locations_are_read_without_the_data_and_agree_with_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    tiny_model(path, "../x.data")
    assert onnx_external_data_locations(path) == ["../x.data"]
    model = onnx.load(str(path), load_external_data=False)
    from onnx.external_data_helper import _get_all_tensors

    assert [e.value for t in _get_all_tensors(model) for e in t.external_data if e.key == "location"] == ["../x.data"]
    tiny_model(path)
    assert onnx_external_data_locations(path) == []
    # onnx's own writer, weights in a file beside the model
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    assert onnx_external_data_locations(path) == ["m.onnx.data"]


@pytest.mark.parametrize("location", ["../x.data", "/etc/passwd", "link.data"])
def test_a_graph_whose_external_data_leads_out_is_refused_before_onnx_runtime_sees_it(build, tmp_path, location):
    (tmp_path / "x.data").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (build / "link.data").symlink_to(tmp_path / "x.data")
    tiny_model(build / "flow.onnx", location)
    from svsr.contract.manifest import sha256_file

    edit_manifest(build, lambda m: m["graphs"]["flow"].update(sha256=sha256_file(build / "flow.onnx")))
    manifest = load_manifest(build)  # names and sha256 are fine: the ONNX file itself names the file outside
    with pytest.raises(ManifestError) as info:
        check_onnx_graph(build, "flow", manifest["graphs"]["flow"])
    text = one_sentence(info.value)
    assert f"names external data {location!r}" in text and "build folders may only name files inside themselves" in text
    from svsr.runtime.sampling import OrtBackend

    with pytest.raises(ManifestError, match="names external data"):
        OrtBackend(build, manifest, device="cpu", graphs=("flow",))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_graph_file_is_one_sentence(build, damage):
    data = (build / "guide_decode.onnx").read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": b"\xff" * 64, "empty": b""}[damage]
    (build / "guide_decode.onnx").write_bytes(damaged)
    from svsr.contract.manifest import sha256_file

    edit_manifest(build, lambda m: m["graphs"]["guide_decode"].update(sha256=sha256_file(build / "guide_decode.onnx")))
    from svsr.runtime.sampling import OrtBackend

    with pytest.raises(ManifestError) as info:
        OrtBackend(build, load_manifest(build), device="cpu", graphs=("guide_decode",))
    assert "graph guide_decode" in one_sentence(info.value) and "damaged" in str(info.value) and "svsr-export --force" in str(info.value)
    with pytest.raises(DamagedOnnxFile):
        onnx_external_data_locations(build / "guide_decode.onnx")


@pytest.mark.parametrize("damage", ["unknown operator", "invalid utf-8"])
def test_onnx_runtime_refusing_a_graph_is_its_own_sentence(build, capfd, damage):
    from svsr.runtime.sampling.ort_backend import open_session
    import onnxruntime as ort

    # a well-formed protobuf that is no runnable model: our reader passes it, ONNX Runtime refuses it
    if damage == "unknown operator":
        model = onnx.load(str(build / "decode.onnx"))
        model.graph.node[0].op_type = "NoSuchOperator"
        onnx.save_model(model, str(build / "decode.onnx"))
    else:  # found by benchmarks/fuzz_build_folders.py: ONNX Runtime raised UnicodeDecodeError (and printed its fallback)
        raw = (build / "decode.onnx").read_bytes()
        assert b'"\x08Identity' in raw  # an operator name; ONNX Runtime's message about it is not UTF-8 then
        (build / "decode.onnx").write_bytes(raw.replace(b'"\x08Identity', b'"\x08Ident\xbd\xafy', 1))
    with pytest.raises(ManifestError) as info:
        open_session(build / "decode.onnx", "decode", ort.SessionOptions(), ["CPUExecutionProvider"], build)
    assert one_sentence(info.value).startswith("ONNX Runtime refused the decode graph")
    assert "EP Error" not in capfd.readouterr().out  # ONNX Runtime's own lines stay out of the user's terminal


def test_out_of_memory_in_a_session_is_its_own_sentence(build):
    from svsr.contract.errors import InputError
    from svsr.runtime.sampling import OrtBackend

    backend = OrtBackend(build, load_manifest(build), device="cpu", graphs=("decode",))

    class OutOfMemorySessionDouble:
        def io_binding(self):
            return backend_session.io_binding()

        def run_with_iobinding(self, binding):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : std::bad_alloc")

    backend_session = backend.sessions["decode"]
    backend.sessions["decode"] = OutOfMemorySessionDouble()
    z = backend.allocate("z", (1, 4, 8, 12))
    rgb = backend.allocate("rgb", (1, 3, 32, 48))
    with pytest.raises(InputError) as info:
        backend.run("decode", {"z": z}, {"rgb": rgb})
    assert one_sentence(info.value) == (
        "the decode graph ran out of host memory on a 12x8 low-resolution frame; "
        "use a smaller frame (or tiles) or a machine with more memory."
    )


# -- numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, change",
    [
        ("scheduler/alphas_cumprod/3", lambda m: m["scheduler"]["alphas_cumprod"].__setitem__(3, float("nan"))),
        ("vae_scaling_factor", lambda m: m.update(vae_scaling_factor=float("inf"))),
        ("graphs/flow/flops/linear", lambda m: m["graphs"]["flow"]["flops"].update(linear=float("-inf"))),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_field(build, field, change):
    edit_manifest(build, change)  # Python's json writes NaN / Infinity, which JSON does not have
    with pytest.raises(ManifestError) as info:
        load_manifest(build, check_files=False)
    assert f"at {field}, and every number in a manifest must be finite" in one_sentence(info.value)


@pytest.mark.parametrize(
    "field, change",
    [
        ("scheduler/config/num_train_timesteps", lambda m: m["scheduler"]["config"].update(num_train_timesteps=10**12)),
        ("scheduler/alphas_cumprod/0", lambda m: m["scheduler"]["alphas_cumprod"].__setitem__(0, 1.5)),
        ("scheduler/alphas_cumprod/1", lambda m: m["scheduler"]["alphas_cumprod"].__setitem__(1, 0.0)),
        ("vae_scaling_factor", lambda m: m.update(vae_scaling_factor=-1)),
        ("latent_channels", lambda m: m.update(latent_channels=10**9)),
        ("sizes/min_side", lambda m: m["sizes"].update(min_side=0)),
        ("graphs/denoise/flops/lr_height", lambda m: m["graphs"]["denoise"]["flops"].update(lr_height=-36)),
        ("graphs/denoise/flops/per_call", lambda m: m["graphs"]["denoise"]["flops"].update(per_call=10**30)),
        ("graphs/guide_decode/inputs/0/shape/1", lambda m: m["graphs"]["guide_decode"]["inputs"][0]["shape"].__setitem__(1, 10**9)),
        ("graphs/blend/inputs/0/shape/1", lambda m: m["graphs"]["blend"]["inputs"][0]["shape"].__setitem__(1, "depth")),
    ],
)
def test_absurd_numbers_are_refused_naming_the_field(build, field, change):
    edit_manifest(build, change)
    with pytest.raises(ManifestError) as info:
        load_manifest(build, check_files=False)
    assert f"is not a valid svsr manifest at {field}:" in one_sentence(info.value)


def test_engine_records_are_bounded_and_their_profiles_ordered(tmp_path):
    from tests.support.trt import synthetic_manifest, write_engines

    record = write_engines(tmp_path, synthetic_manifest(tmp_path))["engines"]["flow.fp32"]
    validate_record(record)
    for field, value in (("device_memory_bytes", 1 << 60), ("build_seconds", float("nan"))):
        with pytest.raises(ManifestError, match=f"at {field}"):
            validate_record({**record, field: value})
    with pytest.raises(ManifestError, match="malformed at profile/batch/2"):
        validate_record({**record, "profile": {**record["profile"], "batch": [1, 1, 10**6]}})
    with pytest.raises(ManifestError, match="malformed at profile/lr_min/0"):
        validate_record({**record, "profile": {**record["profile"], "lr_min": [33, 64]}})
    with pytest.raises(ManifestError, match="malformed at profile: its sizes and batches are not ordered"):
        validate_record({**record, "profile": {**record["profile"], "lr_min": [128, 128], "lr_max": [64, 64]}})


def test_validate_manifest_still_accepts_the_exported_manifest(tiny_build):
    data = json.loads((tiny_build / MANIFEST_NAME).read_text())
    assert validate_manifest(data) is data
    assert Path(data["checkpoint"]["source"]).is_absolute()  # stored resolved at export time


def test_the_graph_checks_return_the_file_inside(tiny_build):
    data = load_manifest(tiny_build)
    assert check_graph_file(tiny_build, "flow", data["graphs"]["flow"]) == tiny_build / "flow.onnx"
    assert check_onnx_graph(tiny_build, "flow", data["graphs"]["flow"]) == tiny_build / "flow.onnx"


# -- a build folder of an older svsr (manifest schema 1) ----------------------------------------------
def schema_1_folder(tiny_build: Path, folder: Path) -> Path:
    """The tiny build as a schema-1 svsr wrote it: schema_version 1 and its ``guide`` graph (decode + warp in one)."""
    shutil.copytree(tiny_build, folder)

    def as_schema_1(m):
        m["schema_version"] = 1
        m["graphs"]["guide"] = m["graphs"].pop("guide_decode")
        for name in ("warp", "blend"):
            del m["graphs"][name]

    edit_manifest(folder, as_schema_1)
    return folder


def test_a_schema_1_folder_through_the_api_is_one_sentence_naming_the_re_export(tiny_build, tmp_path):
    import svsr

    old = schema_1_folder(tiny_build, tmp_path / "old")
    with pytest.raises(ManifestError) as info:
        svsr.Upscaler.open(old, backend="ort")
    text = one_sentence(info.value)
    assert "was written by an older svsr (manifest schema 1; this svsr reads schema 3" in text
    assert text.endswith(f"re-export it: svsr-export --preset tiny --out {old} --force.")
    edit_manifest(old, lambda m: m.update(schema_version=4))  # and one from a newer svsr
    with pytest.raises(ManifestError, match="written by a newer svsr .* update svsr"):
        load_manifest(old)


def test_a_schema_1_folder_through_svsr_run_is_one_sentence_and_exit_2(tiny_build, tmp_path):
    from tests.conftest import random_frames, svsr_run, write_png_folder

    old = schema_1_folder(tiny_build, tmp_path / "old")
    frames = write_png_folder(tmp_path / "in", random_frames(2, 36, 44))
    result = svsr_run(str(frames), "-o", str(tmp_path / "out"), "--model", str(old), "--backend", "ort", "--steps", "1", "--quiet")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "manifest schema 1" in lines[0] and f"svsr-export --preset tiny --out {old} --force" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
