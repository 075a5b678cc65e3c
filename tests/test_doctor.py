"""svsr-doctor, the CUDA driver rule, and loading engines through TensorRT's lean runtime.

On this CPU machine the doctor must exit 0, say that the GPU and TensorRT are missing (WARN, with
what to install), and run the tiny preset through ONNX Runtime (OK, with its figures and its parity
against the PyTorch reference). The GPU checks run against the recording TensorRT/CUDA/builder test
doubles of tests/support/trt.py; the per-graph comparison runs polygraphy's own runners (or named doubles).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import stat
import types
from pathlib import Path

import numpy as np
import pytest

from svsr import doctor
from svsr.checks import build_folder, machine, pipeline, tensorrt_clip
from svsr.checks.per_graph import GraphRunners, check_engines_per_graph, onnx_runner
from svsr.contract.engine_records import BuildEnvironment, MachineEnv
from svsr.contract.errors import ManifestError, MissingDependencyError
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS
from svsr.contract.manifest import load_manifest, sha256_file, stats_sizes, write_manifest
from svsr.device import cuda as cuda_api
from svsr.device import tensorrt as trt_contract
from svsr.device.cuda import CudaDriverError, driver_problem, format_cuda_version, parse_cuda_version
from svsr.device.noise import make_noise
from svsr.doctor import FAIL, OK, WARN, Check
from svsr.runtime.sampling import Sampler
from tests.conftest import random_frames
from tests.support.trt import (
    H100,
    KERNELS,
    EngineTestDouble,
    NumpyKernelsBackendDouble,
    RecordingTrtBuilderDouble,
    RecordingTrtCudaDouble,
    synthetic_manifest,
    write_engines,
)

A100 = BuildEnvironment("10.13.0.35", "NVIDIA A100-SXM4-80GB", "8.0")


def model_folder(folder: Path, env: BuildEnvironment = A100, precision: str = "fp16") -> Path:
    """A build folder (dummy graphs) whose engine records were made on ``env``."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = write_engines(folder, synthetic_manifest(folder), env=env, precision=precision)
    write_manifest(folder, manifest)
    return folder


def by_name(checks) -> dict[str, dict]:
    return {c["name"]: c for c in checks}


# -- the CUDA driver rule (plain Python) ------------------------------------------------------------
def test_cuda_versions_parse_like_cuda_reports_them():
    assert parse_cuda_version(12040) == (12, 4)
    assert parse_cuda_version(13000) == (13, 0) and parse_cuda_version("13050") == (13, 5)
    assert parse_cuda_version(11080) == (11, 8) and parse_cuda_version(0) == (0, 0)
    assert format_cuda_version(12040) == "12.4" and format_cuda_version((13, 0)) == "13.0"
    with pytest.raises(ValueError, match="not a CUDA version number"):
        parse_cuda_version(-1)


def test_a_driver_older_than_cuda_python_gets_one_sentence_naming_both_and_the_extra():
    assert driver_problem(12040, 13000) == (
        "the NVIDIA driver supports CUDA 12.4 but cuda-python 13.0 needs CUDA 13; install svsr[tensorrt-cu12] or update the driver to R580+."
    )
    assert driver_problem(11080, 12060) == (
        "the NVIDIA driver supports CUDA 11.8 but cuda-python 12.6 needs CUDA 12; update the driver to R525+ "
        "(or to R525+ and install svsr[tensorrt-cu12])."
    )
    assert driver_problem(11080, 13000).endswith("needs CUDA 13; update the driver to R580+ (or to R525+ and install svsr[tensorrt-cu12]).")
    # same major (minor version compatibility), newer driver, or no driver at all: nothing to say
    assert driver_problem(12040, 12080) is None and driver_problem(13000, 12060) is None and driver_problem(13020, 13000) is None
    assert driver_problem(0, 13000) is None


def test_the_tensorrt_path_says_the_sentence_instead_of_falling_back(tmp_path, tiny_build, monkeypatch):
    from svsr.runtime.sampling import backend_choice

    model = model_folder(tmp_path / "model", env=H100, precision="fp32")
    monkeypatch.setattr(cuda_api, "cuda_versions", lambda: (12040, 13000))
    monkeypatch.setattr(backend_choice, "tensorrt_importable", lambda: True)
    sentence = "the NVIDIA driver supports CUDA 12.4 but cuda-python 13.0 needs CUDA 13; install svsr[tensorrt-cu12] or update the driver to R580+."
    for backend in ("trt", "auto"):  # auto with engines: said, not a silent ONNX Runtime run
        with pytest.raises(CudaDriverError) as info:
            backend_choice.open_sampler(model, backend=backend)
        assert str(info.value) == sentence
    # a build without engines never takes the TensorRT path: auto runs ONNX Runtime without asking
    sampler = backend_choice.open_sampler(tiny_build, backend="auto")
    assert sampler.backend.name == "ort" and sampler.backend.device == "cpu"
    sampler.close()
    # a driver new enough (or no driver): auto goes on to compare the engines with this machine
    asked: list[dict] = []
    monkeypatch.setattr(cuda_api, "cuda_versions", lambda: (13000, 13000))
    monkeypatch.setattr(backend_choice, "engines_match_this_machine", lambda manifest, precision="auto": asked.append(manifest) or False)
    ort_double = types.SimpleNamespace(device="cpu", name="ort", close=lambda: None)  # test double of OrtBackend
    monkeypatch.setattr("svsr.runtime.sampling.ort_backend.OrtBackend", lambda *a, **k: ort_double)
    assert backend_choice.open_sampler(model, backend="auto").backend is ort_double and len(asked) == 1


def test_cuda_runtime_check_fails_with_the_sentence():
    check = machine.check_cuda_runtime(12040, 13000, "13.0.1")
    # the sentence first, then the command that installs the flavour this driver runs
    assert check.status == FAIL and check.fix == (
        driver_problem(12040, 13000).rstrip(".") + "; the tensorrt-cu12 flavour runs on this driver: "
        "pip install --extra-index-url https://pypi.nvidia.com 'svsr[tensorrt-cu12]'"
    )
    assert check.value == "cuda-python 13.0.1, CUDA runtime 13.0 on a CUDA 12.4 driver"
    ok = machine.check_cuda_runtime(12080, 12060, "12.6.2")
    assert ok.status == OK and "svsr[tensorrt-cu12]" in ok.value
    assert "minor version compatibility" in machine.check_cuda_runtime(12040, 12080).value
    no_driver = machine.check_cuda_runtime(None, 13000, "13.0.1")
    assert no_driver.status == WARN and "R580+" in no_driver.fix
    missing = machine.check_cuda_runtime(12040, None)
    assert missing.status == WARN and "'svsr[tensorrt-cu12]'" in missing.fix and "https://pypi.nvidia.com" in missing.fix


def test_driver_check_from_cuda_python_or_nvidia_smi(tmp_path, monkeypatch):
    assert machine.check_driver(12040).value == "supports CUDA 12.4" and machine.check_driver(12040).status == OK
    smi = machine.check_driver(None, "550.54.15", "12.4")
    assert smi.status == OK and smi.value == "driver 550.54.15, supports CUDA 12.4 (nvidia-smi)"
    none = machine.check_driver(None)
    assert none.status == WARN and none.value.startswith("no NVIDIA driver") and "ONNX Runtime" in none.value and "R580+" in none.fix
    # nvidia-smi's header is parsed when the tool is on PATH
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert machine.probe_nvidia_smi() == ("550.54.15", "12.4")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert machine.probe_nvidia_smi() == (None, None)


def test_the_tensorrt_wheels_cuda_major_is_compared_with_the_drivers():
    names = ["numpy", "tensorrt_cu13_bindings", "tensorrt-lean-cu13-libs", "tensorrt-cu12", "tensorrt", "tensorrt-dispatch-cu13"]
    wheels = machine.tensorrt_wheel_cuda_majors(names)
    assert wheels == {"tensorrt-cu12": 12, "tensorrt-cu13-bindings": 13, "tensorrt-dispatch-cu13": 13, "tensorrt-lean-cu13-libs": 13}
    assert set(machine.tensorrt_wheel_cuda_majors()) >= {"tensorrt-cu13-bindings"}  # the dev extra's wheels, installed here
    full = trt_contract.TensorRTModule(types.SimpleNamespace(__version__="11.4.0.106", Builder=object, OnnxParser=object), "full", "tensorrt")
    cu13 = {"tensorrt-cu13": 13}
    old_driver = machine.check_tensorrt(full, "TensorRT 11.4.0.106 (full)", 12040, wheels=cu13)
    assert old_driver.status == FAIL
    assert old_driver.fix == (
        "the TensorRT wheels tensorrt-cu13 are built for CUDA 13 but the NVIDIA driver supports CUDA 12.4; "
        "install svsr[tensorrt-cu12] instead or update the driver to R580+; the tensorrt-cu12 flavour runs on this driver: "
        "pip install --extra-index-url https://pypi.nvidia.com 'svsr[tensorrt-cu12]'"
    )
    assert machine.check_tensorrt(full, "TensorRT 11.4.0.106 (full)", 13000, wheels=cu13).status == OK
    assert machine.check_tensorrt(full, "TensorRT 11.4.0.106 (full)", 13000, wheels={"tensorrt-cu12": 12}).status == OK  # older major: runs
    assert machine.check_tensorrt(full, "TensorRT 11.4.0.106 (full)", None, wheels=cu13).status == OK  # no driver: nothing to compare
    lean = trt_contract.TensorRTModule(types.SimpleNamespace(__version__="11.4.0.106"), "lean", "tensorrt_lean")
    assert machine.check_tensorrt(lean, "lean", 12080, wheels={"tensorrt-lean-cu13-libs": 13}).status == FAIL
    assert machine.check_tensorrt(lean, "lean", 13000, wheels={"tensorrt-lean-cu13-libs": 13}).status == WARN


# -- the whole doctor on this CPU machine -----------------------------------------------------------
def test_doctor_on_this_cpu_machine(tiny_build, tmp_path, capsys):
    ok, why = cuda_api.cuda_device_status()
    if ok:
        pytest.skip(f"this machine has a GPU ({why}); the TensorRT checks are exercised by tests/test_trt_gpu.py there")
    model = model_folder(tmp_path / "model")
    report = tmp_path / "doctor.json"
    code = doctor.main(["--json", str(report), "--work-dir", str(tiny_build), "--model", str(model)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["svsr"]
    for check in data["checks"]:
        assert set(check) >= {"name", "status", "value", "fix"} and check["status"] in (OK, WARN, FAIL)
        assert check["status"] == OK or check["fix"], check  # every WARN / FAIL says what to do
    checks = by_name(data["checks"])
    assert not [c for c in data["checks"] if c["status"] == FAIL]
    # no GPU, no full TensorRT: WARN, saying what runs instead and what to install
    assert checks["GPU"]["status"] == WARN and "ONNX Runtime on the CPU" in checks["GPU"]["value"]
    assert checks["TensorRT"]["status"] == WARN and "svsr[tensorrt-cu1" in checks["TensorRT"]["fix"]
    assert "https://pypi.nvidia.com" in checks["TensorRT"]["fix"]
    assert checks["NVIDIA driver"]["status"] == WARN
    assert checks["TensorRT clip"]["status"] == WARN and "no NVIDIA GPU" in checks["TensorRT clip"]["value"]
    # the tiny preset through ONNX Runtime: OK with its figures, and its parity with the reference
    assert checks["tiny preset export"]["status"] == OK
    clip = checks["ONNX Runtime clip (CPU)"]
    assert clip["status"] == OK and clip["figures"]["frames"] == 4 and clip["figures"]["steps"] == 3 and clip["figures"]["size"] == [32, 32]
    assert clip["figures"]["seconds_per_frame_step"] > 0 and "s per frame-step" in clip["value"]
    parity = checks["ONNX Runtime vs PyTorch reference"]
    assert parity["status"] == OK and 0 <= parity["figures"]["max_abs_diff"] <= 1e-4 and parity["figures"]["noise"] == "torch"
    for name in ("ONNX Runtime", "PyAV encoders", "Ray", "PySceneDetect", "export extra", "CUDA runtime (cuda-python)"):
        assert name in checks
    assert "h264" in checks["PyAV encoders"]["figures"]["encoders"]
    # --model: records of another GPU and TensorRT, with the command that rebuilds them
    engines = checks["model engines"]
    assert engines["status"] == WARN and "NVIDIA A100-SXM4-80GB" in engines["value"] and "TensorRT 10.13.0.35" in engines["value"]
    assert f"svsr-export --weights /ckpt/tiny --precision fp16 --out {model} --resolution 44x36 --force" in engines["fix"]
    # the human table: aligned columns on stdout, one row per check, fixes indented under their value
    lines = out.splitlines()
    header = lines[0]
    column = header.index("status")
    rows = [line for line in lines[2:] if line and not line.startswith(" ") and "checks:" not in line]
    assert len(rows) == len(data["checks"])
    assert all(line[column : column + 6].strip() in (OK, WARN, FAIL) for line in rows)
    assert all(line.index("fix: ") == column + 8 for line in lines if line.lstrip().startswith("fix: "))
    assert f"{len(data['checks'])} checks:" in out


def test_the_exit_code_is_1_only_when_a_check_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "run_checks", lambda model=None, **kwargs: [Check("a", OK, "fine"), Check("b", WARN, "meh", "do x")])
    assert doctor.main(["--json", str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    monkeypatch.setattr(doctor, "run_checks", lambda model=None, **kwargs: [Check("a", OK, "fine"), Check("b", FAIL, "broken", "do y")])
    assert doctor.main(["--json", str(tmp_path / "b.json")]) == 1
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["exit_code"] == 1 and data["checks"][1] == {"name": "b", "status": FAIL, "value": "broken", "fix": "do y", "figures": {}}
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["check", "status", "value"] and table[3].split() == ["b", "FAIL", "broken"] and table[4].split() == ["fix:", "do", "y"]
    assert doctor.main(["--no-such-option"]) == 2
    assert "svsr-doctor" in capsys.readouterr().err
    assert doctor.main(["--model", str(tmp_path / "nope")]) == 2  # bad arguments: one sentence, before any check
    err = capsys.readouterr().err
    assert err.startswith("svsr: error: --model ") and "is not a folder; give a build folder written by svsr-export." in err
    with pytest.raises(ValueError, match="not one of"):
        Check("c", "MAYBE", "?")


def test_machine_checks_alone_are_quick_and_name_every_part(monkeypatch):
    checks = doctor.run_checks(clip=False)
    names = [c.name for c in checks]
    assert names[:5] == ["svsr", "NVIDIA driver", "CUDA runtime (cuda-python)", "TensorRT", "GPU"]
    assert {"ONNX Runtime", "PyAV encoders", "Ray", "PySceneDetect", "export extra"} <= set(names)
    assert all(c.value and "\n" not in c.value and "\n" not in c.fix for c in checks)


def test_pyav_check_reads_the_codec_table():
    every = machine.check_pyav({"h264": True, "h265": True, "vp9": True, "ffv1": True})
    assert every.status == OK and every.figures["encoders"] == ["h264", "h265", "ffv1", "vp9"]
    some = machine.check_pyav({"h264": True, "ffv1": True})
    assert some.status == WARN and some.figures["missing"] == ["h265", "vp9"] and "libx265, libvpx-vp9" in some.fix
    assert machine.check_pyav({}).status == FAIL


# (the doctor, its checks and bench reach svsr only through the API: tests/test_layers.py)


# -- --model: engine records against this machine ---------------------------------------------------
def here_env(version: str = "11.4.0.106", lean: bool = False, gpu: str = H100.gpu_name, cc: str = "9.0") -> MachineEnv:
    return MachineEnv(version, lean, gpu, cc, "13.0")


def test_model_records_from_another_gpu_and_tensorrt_show_the_rebuild_command(tmp_path):
    model = model_folder(tmp_path / "model")
    here = here_env()
    head, engines = build_folder.check_model(model, here)
    assert head.status == OK and f"graphs {', '.join(GRAPH_NAMES)} (float32" in head.value
    assert engines.status == WARN and "flow.fp16, denoise.fp16, denoise_stats.fp16, guide_decode.fp16, decode_stats.fp16" in engines.value
    assert "built with TensorRT 10.13.0.35 but this machine has TensorRT 11.4.0.106" in engines.fix
    assert "built for NVIDIA A100-SXM4-80GB (compute capability 8.0) but this machine has NVIDIA H100 80GB HBM3 (compute capability 9.0)" in engines.fix
    assert engines.fix.endswith(f"rebuild on this machine with: svsr-export --weights /ckpt/tiny --precision fp16 --out {model} --resolution 44x36 --force")
    # the same build on a machine with only the lean runtime: the command makes lean plans
    lean_here = build_folder.check_model(model, here_env(lean=True))[1]
    assert "is not version-compatible, and only TensorRT's lean runtime (11.4.0.106) is installed here" in lean_here.fix
    assert lean_here.fix.endswith("--lean --force")
    # no TensorRT or GPU here: the reason, and the command is for the GPU machine that will run them
    nowhere = build_folder.check_model(model, None, "no NVIDIA GPU")[1]
    assert "this machine cannot run them (no NVIDIA GPU)" in nowhere.fix and "rebuild on the GPU machine that will run them with: " in nowhere.fix
    # engines made here: OK
    matching = model_folder(tmp_path / "here", env=H100, precision="fp32")
    assert build_folder.check_model(matching, here)[1].status == OK
    # bf16 engines on a GPU without bf16
    bf16 = model_folder(tmp_path / "bf16", env=BuildEnvironment("11.4.0.106", "Tesla T4", "7.5"), precision="bf16")
    t4 = build_folder.check_model(bf16, here_env(gpu="Tesla T4", cc="7.5"))[1]
    assert t4.status == WARN and "bf16 engines need compute capability 8.0+" in t4.fix and "--precision bf16" in t4.fix


def test_the_doctor_judges_records_with_the_contracts_problems(tmp_path, monkeypatch):
    """One engine verdict: what problems(record, env) says is what the doctor prints."""
    model = model_folder(tmp_path / "model")
    asked = []

    def problems_double(record, env, **kwargs):
        asked.append((record["graph"], env))
        return ["was judged by the contract"]

    monkeypatch.setattr("svsr.contract.engine_records.problems", problems_double)
    engines = build_folder.check_model(model, here_env())[1]
    assert engines.status == WARN and engines.fix.startswith("each engine was judged by the contract; rebuild on this machine")
    # every engine the build has; its 44x36 profile builds none of RAFT at x2 / x1 (the frames are too small for them)
    built = sorted(record["graph"] for record in load_manifest(model)["engines"].values())
    assert built == sorted(set(GRAPH_NAMES) - {"flow_x2", "flow_x1"})
    assert sorted(g for g, _ in asked) == built and all(env == here_env() for _, env in asked)


def test_model_without_engines_or_manifest(tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    write_manifest(folder, synthetic_manifest(folder))
    head, engines = build_folder.check_model(folder, None)
    assert head.status == OK and engines.status == WARN and "no TensorRT engines" in engines.value
    assert "svsr-export --weights /ckpt/tiny --precision fp32 --out" in engines.fix and "--resolution 320x180" in engines.fix
    (missing,) = build_folder.check_model(tmp_path / "nothing", None)
    # the contract's sentence in the value; the fix is a command (its checkpoint a placeholder the shell rejects)
    assert missing.status == FAIL and "has no manifest.json; run svsr-export --out" in missing.value
    assert missing.fix.endswith(f"svsr-export --weights <CHECKPOINT> --out {tmp_path / 'nothing'} --force")


def test_a_schema_2_build_folder_is_one_sentence_naming_the_re_export(tiny_build, tmp_path):
    """A build folder written before flow scales and shared GroupNorm statistics: FAIL, the contract's sentence, and the export that replaces it."""
    import json
    import shutil

    old = tmp_path / "old build"
    shutil.copytree(tiny_build, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = 2
    for name in ("flow_x2", "flow_x1", "denoise_stats", "decode_stats"):
        del manifest["graphs"][name]
    del manifest["norm_stats"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (check,) = build_folder.check_model(old, None)
    assert check.status == FAIL and check.name == "model"
    assert "written by an older svsr (manifest schema 2; this svsr reads schema 3, flow scales and GroupNorm statistics" in check.value
    assert f"re-export it: svsr-export --preset tiny --out {old} --force" in check.value
    assert check.fix == f"export it again from its checkpoint: svsr-export --preset tiny --out '{old}' --force"
    (command,) = _fix_commands(check.fix)
    assert command == ["svsr-export", "--preset", "tiny", "--out", str(old), "--force"]


def test_a_build_folder_lists_its_ten_graphs(tiny_build):
    from svsr.contract.graphs import GRAPH_NAMES

    check = build_folder.check_model(tiny_build, None)[0]
    assert check.status == OK and len(GRAPH_NAMES) == 10
    assert f"graphs {', '.join(GRAPH_NAMES)} (float32" in check.value


# -- the GPU checks, against the recording TensorRT/CUDA doubles -----------------------------------
def test_gpu_check_reads_name_capability_and_free_memory():
    double = RecordingTrtCudaDouble(free_bytes=30 << 30)
    check, api = machine.check_gpu(double.cuda)
    assert check.status == OK and api is double.cuda
    assert check.value.startswith("NVIDIA H100 80GB HBM3, compute capability 9.0, 30.0 of ") and check.figures["free_bytes"] == 30 << 30
    old = types.SimpleNamespace(device_name=lambda: "Tesla P100", compute_capability=lambda: "6.0", mem_get_info=lambda: (1 << 30, 16 << 30))
    assert machine.check_gpu(old)[0].status == WARN


def engines_folder(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = write_engines(folder, synthetic_manifest(folder))
    write_manifest(folder, manifest)
    return manifest


def test_tensorrt_clip_checks_compare_eager_with_the_reference_and_graphs_with_eager(tmp_path):
    manifest = engines_folder(tmp_path)
    frames = random_frames(3, 36, 44)
    reference = Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, 2, noise=make_noise("numpy", 0))
    double = RecordingTrtCudaDouble()
    eager, graphs = tensorrt_clip.check_trt_clip(tmp_path, "fp32", frames, 2, "numpy", reference, trt=double.trt, cuda=double.cuda)
    assert eager.status == OK and eager.figures["max_abs_diff"] == 0 and eager.figures["seconds_per_frame_step"] > 0
    assert graphs.status == OK and graphs.figures["bit_equal"] and "bit-equal (3 programs captured and replayed)" in graphs.value
    assert graphs.figures["captured"] == 3 and len(graphs.figures["programs"]) == 3 and graphs.figures["capture_failed"] == []
    assert [c for c in double.calls if c[0] == "cuda.graph_launch"]  # the second CUDA-graph run replayed its captures
    off = [r + np.float32(3 / 255) for r in reference]  # beyond fp32's 2/255
    eager, _ = tensorrt_clip.check_trt_clip(tmp_path, "fp32", frames, 2, "numpy", off, trt=double.trt, cuda=double.cuda)
    assert eager.status == FAIL and "over 2/255" in eager.value and eager.fix


@pytest.mark.parametrize("stage", ["begin", "enqueue", "end", "instantiate"])
def test_a_failed_cuda_graph_capture_is_a_fail_not_eager_compared_with_eager(tmp_path, stage):
    """Issue 17 point 7: the backend falls back to eager (bit-equal to eager by construction); the doctor says FAIL."""
    manifest = engines_folder(tmp_path)
    frames = random_frames(3, 36, 44)
    reference = Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, 2, noise=make_noise("numpy", 0))
    double = RecordingTrtCudaDouble()
    double.fail = stage
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        eager, graphs = tensorrt_clip.check_trt_clip(tmp_path, "fp32", frames, 2, "numpy", reference, trt=double.trt, cuda=double.cuda)
    assert eager.status == OK
    assert graphs.figures["bit_equal"]  # what the doctor used to print as "bit-equal"
    assert graphs.status == FAIL and "3 of 3 frame-step programs could not be captured as CUDA graphs" in graphs.value
    assert graphs.figures["captured"] == 0 and len(graphs.figures["capture_failed"]) == 3 and "bug report" in graphs.fix


def test_fewer_captured_programs_than_the_clip_launches_is_a_fail():
    frames = random_frames(2, 8, 8)
    eager = [np.zeros((32, 32, 3), np.float32)] * 2
    run = tensorrt_clip.TrtRun(outputs=[eager, eager], seconds=0.1, launched=["step0-first", "step1-tcm", "step0-tcm"], captured=2)
    check = tensorrt_clip.capture_check("TensorRT fp32 CUDA graphs vs eager", eager, run, 0.1, frames, 2)
    assert check.status == FAIL and check.value.startswith("2 CUDA graphs captured for the 3 frame-step programs the clip launches")
    whole = tensorrt_clip.TrtRun(outputs=[eager], seconds=0.1, launched=["step0-first", "step1-tcm", "step0-tcm"], captured=3)
    assert tensorrt_clip.capture_check("x", eager, whole, 0.1, frames, 2).status == OK
    nothing = tensorrt_clip.TrtRun(outputs=[eager], seconds=0.1, launched=[], captured=0)
    assert tensorrt_clip.capture_check("x", eager, nothing, 0.1, frames, 2).status == FAIL


# -- each engine against ONNX Runtime through polygraphy's Comparator --------------------------------
class KernelsRunnerDouble:
    """Test double of a polygraphy runner (a real BaseRunner) running the synthetic build's numpy kernels, optionally off by ``offset``."""

    def __new__(cls, graph: str, offset: float = 0.0, side: str = "engine"):
        from polygraphy.backend.base import BaseRunner
        from polygraphy.common import TensorMetadata

        class Runner(BaseRunner):
            def activate_impl(self):
                pass

            def deactivate_impl(self):
                pass

            def get_input_metadata_impl(self):
                meta = TensorMetadata()
                for spec in GRAPHS[graph].inputs:
                    meta.add(spec.name, np.float32, spec.shape)
                return meta

            def infer_impl(self, feed_dict):
                self.inference_time = 0.0  # polygraphy adds up each runner's time
                return {k: np.asarray(v, np.float32) + np.float32(offset) for k, v in KERNELS[graph](**feed_dict).items()}

        return Runner(name=f"{side}-kernels-{graph}")


def recorded_inputs(manifest, frames, steps: int = 2) -> dict:
    from svsr.checks.recorders import GraphInputRecorder

    recorder = GraphInputRecorder(NumpyKernelsBackendDouble())
    Sampler(recorder, manifest).upscale(frames, steps, noise=make_noise("numpy", 0))
    return recorder.inputs


def test_per_graph_comparison_runs_polygraphy_and_a_mismatch_is_a_fail(tiny_build, tmp_path):
    """Both sides on polygraphy's OnnxrtRunner (the tiny preset's graphs, the inputs the ONNX Runtime clip recorded)."""
    check, out, inputs = pipeline.check_ort_clip(tiny_build, pipeline.clip_frames(2), 1, "philox")
    # an untiled clip runs no blend and no statistics graph: they are compared on the contract's sample inputs at the clip's size
    assert check.status == OK and set(inputs) >= {"flow", "denoise", "guide_decode", "warp", "decode"}
    manifest = load_manifest(tiny_build)
    manifest = {**manifest, "engines": {f"{g}.fp32": {"file": manifest["graphs"][g]["file"]} for g in GRAPH_NAMES}}  # "plans": the ONNX files
    same = check_engines_per_graph(tiny_build, manifest, "fp32", inputs, GraphRunners(engine=onnx_runner))
    assert same.status == OK and all(diff == 0 for diff in same.figures["max_abs_diff"].values()), same

    def shifted_onnx_runner(graph, path):  # test double: the ONNX Runtime runner, its decode output shifted by 0.01
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

        class ShiftedOnnxrtRunnerDouble(OnnxrtRunner):
            def infer_impl(self, feed_dict):
                out = super().infer_impl(feed_dict)
                return {k: v + np.float32(0.01) if graph == "decode" else v for k, v in out.items()}

        return ShiftedOnnxrtRunnerDouble(SessionFromOnnx(str(path)), name=f"shifted-{graph}")

    drifted = check_engines_per_graph(tiny_build, manifest, "fp32", inputs, GraphRunners(engine=shifted_onnx_runner))
    assert drifted.status == FAIL and drifted.value.startswith("decode over atol 0.001 / rtol 0.001")
    assert abs(drifted.figures["max_abs_diff"]["decode"] - 0.01) < 1e-6 and drifted.figures["max_abs_diff"]["flow"] == 0
    assert "drift from their ONNX graphs" in drifted.fix
    # blend and the statistics graphs too, on sample inputs; RAFT at x2 and x1 needs larger frames than the 32x32 clip's
    assert set(drifted.figures["max_abs_diff"]) == set(GRAPH_NAMES) - {"flow_x2", "flow_x1"}
    assert set(drifted.figures["not_compared"]) == {"flow_x2", "flow_x1"}
    assert "not compared: flow_x2 (RAFT at x2 needs LR frames of at least 64 px per side, the clip's are 32x32)" in same.value


def test_per_graph_comparison_uses_each_graphs_own_engine_precision(tmp_path):
    """fp16 engines: warp and blend are fp32 plans (never typed), compared within the fp32 tolerance."""
    from svsr.checks.per_graph import graph_feeds

    manifest = synthetic_manifest()
    frames = random_frames(2, 36, 44)
    recorded = recorded_inputs(manifest, frames, steps=1)
    feeds = graph_feeds(manifest["graphs"], {g: v for g, v in recorded.items() if g != "blend"}, stats_sizes(manifest))
    compared = set(GRAPH_NAMES) - {"flow_x2", "flow_x1"}  # RAFT at x2 / x1 needs larger frames than the 36x44 clip's
    assert set(feeds) == compared and feeds["blend"]["acc"].shape == (1, 4, 36, 44)  # the clip's padded LR size
    assert feeds["decode_stats"]["latent"].shape == (1, 4, 36, 44)
    assert feeds["denoise"]["norm_stats"].shape == (1, stats_sizes(manifest)["denoise_stats"])
    assert graph_feeds(manifest["graphs"], {"flow": recorded["flow"]}) == {"flow": recorded["flow"]}  # no latent: no size to make feeds at
    precisions = {g: "fp32" if g in ("warp", "blend") else "fp16" for g in GRAPH_NAMES}
    manifest["engines"] = {f"{g}.{p}": {"file": f"{g}.{p}.plan"} for g, p in precisions.items()}
    opened: list[str] = []

    def engine_runner_double(graph, path):
        opened.append(path.name)
        return KernelsRunnerDouble(graph, offset=0.01 if graph == "warp" else 0.0)

    check = check_engines_per_graph(tmp_path, manifest, "fp16", recorded, GraphRunners(engine=engine_runner_double, onnx=lambda g, p: KernelsRunnerDouble(g, side="onnx")))
    assert sorted(opened) == sorted(f"{g}.{p}.plan" for g, p in precisions.items() if g in compared)
    # 0.01 is within fp16's atol (5e-2) but not fp32's (1e-3): warp is judged as the fp32 engine it is
    assert check.status == FAIL and check.value.startswith("warp over atol")


def test_tensorrt_pipeline_builds_compares_per_graph_and_runs_on_the_doubles(tmp_path, monkeypatch):
    """The doctor's GPU flow (engines built in a copy, each compared with its graph, then the clip) on the builder + runtime doubles."""
    from tests.support.engine_builds import add_typed_graph, onnx_reading_parser_double, write_tiny_onnx

    build = tmp_path / "build"
    build.mkdir()
    manifest = synthetic_manifest(build)  # the shapes the kernel doubles compute with
    for g in GRAPH_NAMES:
        # real tiny ONNX files (the builder checks each before its parser sees it), and typed fp16 ones: no AutoCast needed
        manifest["graphs"][g]["sha256"] = write_tiny_onnx(build / manifest["graphs"][g]["file"], g)
        add_typed_graph(build, manifest, g, "fp16")
    write_manifest(build, manifest)
    runtime, builder = RecordingTrtCudaDouble(), onnx_reading_parser_double(RecordingTrtBuilderDouble())
    monkeypatch.setattr(EngineTestDouble, "get_device_memory_size_for_profile_v2", lambda self, index: 4096, raising=False)
    trt = types.SimpleNamespace(**vars(runtime.trt))
    for name in ("Builder", "OnnxParser", "NetworkDefinitionCreationFlag", "MemoryPoolType", "BuilderFlag"):
        if hasattr(builder.trt, name):
            setattr(trt, name, getattr(builder.trt, name))
    frames = random_frames(2, 36, 44)
    reference = Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, 2, noise=make_noise("numpy", 0))
    runners = GraphRunners(engine=lambda graph, path: KernelsRunnerDouble(graph), onnx=lambda graph, path: KernelsRunnerDouble(graph, side="onnx"))
    checks = tensorrt_clip.trt_pipeline_checks(build, frames, 2, "numpy", reference, tmp_path / "work", trt=trt, cuda=runtime.cuda,
                                               loaders=builder.loaders, graph_inputs=recorded_inputs(manifest, frames), runners=runners)  # fmt: skip
    names = [c.name for c in checks]
    assert names == [
        "TensorRT fp32 engines", "TensorRT fp32 per graph vs ONNX Runtime", "TensorRT fp32 eager vs ONNX Runtime", "TensorRT fp32 CUDA graphs vs eager",
        "TensorRT fp16 engines", "TensorRT fp16 per graph vs ONNX Runtime", "TensorRT fp16 eager vs ONNX Runtime", "TensorRT fp16 CUDA graphs vs eager",
    ]  # fmt: skip
    assert all(c.status == OK for c in checks), checks
    assert checks[0].figures["build_seconds"] >= 0 and "44x36 (static)" in checks[0].value
    assert not (build / "engines").exists()  # built in the doctor's own folder, not in the build given
    # an engine runner that drifts on one graph: that precision's per-graph line FAILs, before the clip runs
    drifting = GraphRunners(engine=lambda graph, path: KernelsRunnerDouble(graph, offset=0.5 if graph == "guide_decode" else 0.0), onnx=runners.onnx)
    checks = tensorrt_clip.trt_pipeline_checks(build, frames, 2, "numpy", reference, tmp_path / "work", trt=trt, cuda=runtime.cuda,
                                               loaders=builder.loaders, precisions=("fp32",), graph_inputs=recorded_inputs(manifest, frames),
                                               runners=drifting)  # fmt: skip
    assert [c.status for c in checks] == [OK, FAIL, OK, OK] and checks[1].value.startswith("guide_decode over atol")


def test_a_gpu_host_without_torch_still_runs_the_tensorrt_clip_against_onnx_runtime(tiny_build, tmp_path, monkeypatch):
    """No PyTorch: no reference (a WARN saying why), but the TensorRT clip still runs against ONNX Runtime's output."""
    monkeypatch.setattr(pipeline, "torch_available", lambda: False)
    asked = {}

    def trt_pipeline_checks_double(build, frames, steps, noise, reference, work, **kwargs):
        asked.update(build=build, noise=noise, reference=reference, graph_inputs=kwargs["graph_inputs"], trt=kwargs["trt"], cuda=kwargs["cuda"])
        return [Check("TensorRT fp32 eager vs ONNX Runtime", OK, "ran (test double)")]

    monkeypatch.setattr(tensorrt_clip, "trt_pipeline_checks", trt_pipeline_checks_double)
    double = RecordingTrtCudaDouble()
    full = trt_contract.TensorRTModule(types.SimpleNamespace(__version__="11.4.0.106", Builder=object), "full", "tensorrt")
    here = pipeline.TensorRTHere(found=full, cuda=double.cuda, driver_ok=True, trt=double.trt)
    options = pipeline.ClipOptions(work_dir=tiny_build, frames=tuple(pipeline.clip_frames(2)), steps=1)  # a tiny build exported elsewhere
    checks = {c.name: c for c in pipeline.clip_checks(tmp_path, options, here)}
    assert checks["tiny preset export"].status == OK and "PyTorch is not installed here" in checks["tiny preset export"].value
    assert checks["ONNX Runtime clip (CPU)"].status == OK and checks["ONNX Runtime clip (CPU)"].figures["noise"] == "philox"
    parity = checks["ONNX Runtime vs PyTorch reference"]
    assert parity.status == WARN and "PyTorch is not installed" in parity.value and "svsr[export]" in parity.fix
    assert checks["TensorRT fp32 eager vs ONNX Runtime"].status == OK
    assert asked["build"] == tiny_build and asked["noise"] == "philox" and asked["trt"] is double.trt and asked["cuda"] is double.cuda
    assert len(asked["reference"]) == 2 and asked["reference"][0].shape == (128, 128, 3)  # ONNX Runtime's frames are what TensorRT is held to
    # an untiled clip at flow scale 4 runs no blend, no statistics graph and no other flow scale (per_graph makes their feeds)
    assert set(asked["graph_inputs"]) == {"flow", "denoise", "guide_decode", "warp", "decode"}
    # without a tiny build to reuse, a host without PyTorch says how to get one
    export, build = pipeline.check_tiny_export(tmp_path / "empty")
    assert build is None and export.status == WARN and "--work-dir" in export.fix


# -- loading through TensorRT's lean runtime -------------------------------------------------------
def _only_lean(monkeypatch, lean_module, name: str = "tensorrt_lean") -> None:
    """Make the full TensorRT absent and ``lean_module`` importable as ``name`` (for svsr.device.tensorrt)."""
    real = importlib.import_module

    def import_module(module: str, package: str | None = None):
        if module in trt_contract.FULL_MODULES:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        if module in trt_contract.LEAN_MODULES:
            if module == name:
                return lean_module
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        return real(module, package)

    monkeypatch.setattr(trt_contract, "importlib", types.SimpleNamespace(import_module=import_module))


def test_the_import_function_says_which_tensorrt_it_found(monkeypatch):
    double = RecordingTrtCudaDouble()
    _only_lean(monkeypatch, double.trt)
    found = trt_contract.import_tensorrt_runtime()
    assert found.module is double.trt and found.flavour == "lean" and found.name == "tensorrt_lean" and found.lean
    module, flavour, name = found
    assert flavour == "lean" and "lean runtime" in found.describe()
    with pytest.raises(MissingDependencyError, match=r"building engines need the full TensorRT, but only its lean runtime \(tensorrt_lean 11.4.0.106\)"):
        trt_contract.import_tensorrt("building engines")
    if importlib.util.find_spec("cuda.bindings") is not None:
        assert trt_contract.tensorrt_importable()
    full = types.SimpleNamespace(__version__="11.4.0.106", Builder=object)
    monkeypatch.setattr(trt_contract, "importlib", types.SimpleNamespace(import_module=lambda m, p=None: full if m == "tensorrt" else None))
    assert trt_contract.import_tensorrt_runtime() == (full, "full", "tensorrt")

    def nothing(module, package=None):
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(trt_contract, "importlib", types.SimpleNamespace(import_module=nothing))
    with pytest.raises(MissingDependencyError) as info:
        trt_contract.import_tensorrt_runtime("--backend trt")
    assert str(info.value).startswith("TensorRT is not installed, and --backend trt need it;")
    assert "svsr[tensorrt-cu13]" in str(info.value) and "svsr[tensorrt-lean-cu13]" in str(info.value)
    assert not trt_contract.tensorrt_importable()


def test_lean_runtime_loads_version_compatible_plans_and_refuses_others_with_the_command(tmp_path, monkeypatch):
    from svsr.engines.builder import lean_record
    from svsr.runtime.sampling import open_trt_backend

    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    _only_lean(monkeypatch, double.trt)
    with pytest.raises(ManifestError) as info:
        open_trt_backend(tmp_path, manifest, "fp32", cuda=double.cuda)  # trt=None: the lean runtime is what imports
    message = str(info.value)  # the contract's verdict (problems) with the command that makes lean plans
    assert message == (
        f"the flow fp32 engine in {tmp_path} is not version-compatible, and only TensorRT's lean runtime (11.4.0.106) is installed here, "
        "which runs only version-compatible plans; rebuild it with: "
        f"svsr-export --weights /ckpt/tiny --precision fp32 --out {tmp_path} --resolution 44x36 --lean --force"
    )
    assert "\n" not in message
    # lean records (what svsr-export --lean writes): loaded with host code allowed, and they run
    manifest["engines"] = {k: lean_record(v) for k, v in manifest["engines"].items()}
    backend = open_trt_backend(tmp_path, manifest, "fp32", cuda=double.cuda)
    assert backend._runtime.engine_host_code_allowed is True
    double.eager = {backend.stream}
    frames = random_frames(2, 36, 44)
    got = Sampler(backend, manifest).upscale(frames, 2, noise=make_noise("numpy", 0))
    want = Sampler(NumpyKernelsBackendDouble(), manifest).upscale(frames, 2, noise=make_noise("numpy", 0))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    backend.close()
    # a lean plan of another TensorRT version: the mismatch sentence's command keeps --lean
    other = dict(manifest["engines"])
    other["flow.fp32"] = {**other["flow.fp32"], "tensorrt_version": "11.3.0.1"}
    with pytest.raises(ManifestError, match=r"was built with TensorRT 11.3.0.1 but this machine has TensorRT 11.4.0.106; rebuild it with: svsr-export .* --lean --force$"):
        open_trt_backend(tmp_path, {**manifest, "engines": other}, "fp32", cuda=double.cuda)


def test_the_full_library_sets_host_code_only_for_version_compatible_plans(tmp_path):
    from svsr.engines.builder import lean_record
    from svsr.runtime.sampling import open_trt_backend

    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    plain = open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    assert getattr(plain._runtime, "engine_host_code_allowed", None) is None
    plain.close()
    manifest["engines"] = {k: lean_record(v) for k, v in manifest["engines"].items()}
    compatible = open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    assert compatible._runtime.engine_host_code_allowed is True
    compatible.close()


def test_auto_counts_only_version_compatible_engines_under_the_lean_runtime(tmp_path, monkeypatch):
    from svsr.engines.builder import lean_record
    from svsr.runtime.sampling import engines_match_this_machine

    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    monkeypatch.setattr(cuda_api, "CudaApi", lambda device=0: double.cuda)
    _only_lean(monkeypatch, double.trt, name="tensorrt_lean_bindings")  # the module the lean wheels install
    assert not engines_match_this_machine(manifest)
    manifest["engines"] = {k: lean_record(v) for k, v in manifest["engines"].items()}
    assert engines_match_this_machine(manifest)


def test_every_lean_runtime_name_used_exists_in_the_real_lean_wheel():
    from svsr.runtime.sampling.trt_backend import TRT_RUNTIME_API

    lean = pytest.importorskip("tensorrt_lean_bindings", reason="install tensorrt-lean-cu13-bindings and tensorrt-lean-cu13-libs (dev extra)")
    assert "engine_host_code_allowed" in TRT_RUNTIME_API["Runtime"]
    missing = []
    for owner, attrs in TRT_RUNTIME_API.items():
        holder = lean if owner == "tensorrt" else getattr(lean, owner, None)
        missing += [f"{owner}.{a}" for a in attrs if holder is None or not hasattr(holder, a)]
    assert not missing, f"not in tensorrt_lean_bindings {lean.__version__}: {missing}"
    # the flavour the import function gives the real wheel
    found = trt_contract.TensorRTModule(lean, "lean", "tensorrt_lean_bindings")
    assert found.version.startswith("11.") and not hasattr(lean, "Builder") and not hasattr(lean, "OnnxParser")


# -- advice that works (issue 22): a printed fix, run as printed, gets the check further ---------
def _fix_commands(fix: str) -> list[list[str]]:
    """The shell commands of a printed fix (``why: a && b && c``), split into argument lists as a shell would."""
    import shlex

    from svsr.checks.check import fix_command

    words = shlex.split(fix_command(fix))
    commands, current = [], []
    for word in words:
        if word == "&&":
            commands.append(current)
            current = []
        else:
            current.append(word)
    return [*commands, current]


def test_the_printed_tiny_build_fix_run_as_printed_gets_the_clip_to_run(tiny_build, tmp_path, monkeypatch, capsys):
    """Base install without PyTorch: the fix's commands (svsr-export stood in by a copy of its output) let the clip run."""
    import shutil

    from svsr import cli

    monkeypatch.setattr(pipeline, "torch_available", lambda: False)  # stand-in for a base install
    monkeypatch.chdir(tmp_path)
    frames = random_frames(2, 32, 36)
    before = {c.name: c for c in doctor.run_checks(frames=frames, steps=1, parity=False)}
    assert before["tiny preset export"].status == WARN and before[pipeline.ORT_CLIP].status == WARN
    commands = _fix_commands(before[pipeline.ORT_CLIP].fix)
    assert [c[0] for c in commands] == ["pip", "svsr-export", "svsr-doctor"]
    export, rerun = commands[1], commands[2]
    assert cli.export_parser().parse_args(export[1:]).onnx_only  # the export command parses as printed
    shutil.copytree(tiny_build, export[export.index("--out") + 1], ignore=shutil.ignore_patterns("checkpoint"))  # what it writes
    monkeypatch.setattr(doctor, "run_checks", lambda model=None, **kw: _real_run_checks(model, frames=frames, steps=1, parity=False, **kw))
    capsys.readouterr()
    code = cli.doctor_main(rerun[1:])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "exporting the tiny preset" not in err  # an existing build is never exported without PyTorch
    row = next(line for line in out.splitlines() if line.startswith("ONNX Runtime clip"))
    assert " OK " in row, out
    assert "tiny preset export" in out and "reused" in out


_real_run_checks = doctor.run_checks


def _extras() -> set[str]:
    """The extras pyproject.toml declares ([project.optional-dependencies])."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    return set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _check_pip(command: list[str]) -> None:
    """A printed ``pip install``: parses as pip's own options, and every svsr[...] names extras pyproject.toml has."""
    import re

    assert command[:2] == ["pip", "install"], command
    args = command[2:]
    while args and args[0].startswith("--"):
        option = args.pop(0)
        assert option in ("--extra-index-url", "--force-reinstall", "--no-binary"), command
        if option in ("--extra-index-url", "--no-binary"):
            value = args.pop(0)
            assert option != "--extra-index-url" or value.startswith("https://"), command
    assert args and all(not a.startswith("-") for a in args), command
    for requirement in args:
        match = re.fullmatch(r"svsr\[([a-z0-9,-]+)\]", requirement)
        if requirement.startswith("svsr"):
            assert match and set(match.group(1).split(",")) <= _extras(), (requirement, sorted(_extras()))


def _every_fix(tmp_path: Path, monkeypatch) -> list[tuple[str, str]]:
    """(where, fix) for every non-OK branch of every check, driven by values or named doubles."""
    from svsr.checks import check as check_module
    from svsr.checks import per_graph

    fixes: list[tuple[str, str]] = []

    def add(where: str, c: Check) -> None:
        assert c.status != OK and c.fix, (where, c)
        fixes.append((where, c.fix))

    add("driver missing", machine.check_driver(None))
    for driver in (None, 12040, 13000):
        add(f"cuda-python missing, driver {driver}", machine.check_cuda_runtime(driver, None))
    add("runtime without driver", machine.check_cuda_runtime(None, 13000, "13.0.1"))
    add("runtime newer than driver", machine.check_cuda_runtime(12040, 13000, "13.0.1"))
    add("runtime newer than an unknown major's driver", machine.check_cuda_runtime(11080, 13000, "13.0.1"))
    full = trt_contract.TensorRTModule(types.SimpleNamespace(__version__="11.4.0.106", Builder=object, OnnxParser=object), "full", "tensorrt")
    lean = trt_contract.TensorRTModule(types.SimpleNamespace(__version__="11.4.0.106"), "lean", "tensorrt_lean")
    for driver in (None, 12040, 13000):
        add(f"no TensorRT, driver {driver}", machine.check_tensorrt(None, "no TensorRT", driver, wheels={}))
        add(f"lean only, driver {driver}", machine.check_tensorrt(lean, "lean", driver, wheels={}))
    add("wheels newer than the driver", machine.check_tensorrt(full, "full", 12040, wheels={"tensorrt-cu13": 13}))
    monkeypatch.setattr("svsr.api.tensorrt_build_problem", lambda module: "the builder does not load")
    add("TensorRT that cannot build", machine.check_tensorrt(full, "full", 13000, wheels={}))
    old_gpu_double = types.SimpleNamespace(device_name=lambda: "Tesla P100", compute_capability=lambda: "6.0", mem_get_info=lambda: (1 << 30, 16 << 30))
    add("GPU too old", machine.check_gpu(old_gpu_double)[0])
    monkeypatch.setattr("svsr.device.cuda.cuda_device_status", lambda: (False, "no NVIDIA driver"))
    add("no GPU", machine.check_gpu()[0])
    add("PyAV with some encoders", machine.check_pyav({"h264": True, "ffv1": True}))
    add("PyAV with none", machine.check_pyav({}))
    monkeypatch.setattr(machine, "module_version", lambda module: None)
    add("no Ray", machine.check_ray())
    add("no PySceneDetect", machine.check_scenedetect())
    add("no export extra", machine.check_export_extra())
    monkeypatch.setattr(pipeline, "torch_available", lambda: False)
    add("no tiny build, no work dir", pipeline.check_tiny_export(tmp_path / "svsr tiny")[0])
    options = pipeline.ClipOptions(work_dir=tmp_path / "work")
    skipped = pipeline.clip_checks(tmp_path, options, pipeline.TensorRTHere())
    add("clip without a build", skipped[-1])
    add("reference without a checkpoint", pipeline.check_reference_parity(tmp_path, [], 1, []))
    fixes.append(("the bug report", check_module.BUG_REPORT))
    fixes.append(("a bug", check_module.bug_report("x failed")))
    add("per-graph without inputs", per_graph.check_engines_per_graph(tmp_path, synthetic_manifest(), "fp32", {}))
    add("typed graphs without the precision extra", _typed_without_extra(tmp_path, monkeypatch))
    model = model_folder(tmp_path / "model", env=A100)
    for c in build_folder.check_model(model, MachineEnv(H100.tensorrt_version, False, H100.gpu_name, H100.compute_capability, "13.0")):
        if c.status != OK:
            add("engines from another GPU", c)
    add("no build folder", build_folder.check_model(tmp_path / "nothing", None)[0])
    older = tmp_path / "schema 1"
    older.mkdir()
    write_manifest(older, synthetic_manifest(older))
    (older / "manifest.json").write_text(json.dumps({**json.loads((older / "manifest.json").read_text()), "schema_version": 1}))
    add("a schema 1 build folder", build_folder.check_model(older, None)[0])
    return fixes


def _typed_without_extra(tmp_path: Path, monkeypatch) -> Check:
    import svsr

    def export_double(*args, **kwargs):  # stands in for svsr.export_model without ModelOpt installed
        raise MissingDependencyError("ModelOpt is not installed")

    monkeypatch.setattr(svsr, "export_model", export_double)
    return tensorrt_clip.check_typed_graphs(tmp_path, [])


def test_every_printed_fix_is_a_command_that_parses(tmp_path, monkeypatch):
    """Table-driven: every fix a check can print ends in a command (after its last ": ") that shlex
    parses, whose words start with a known tool, with pip extras that pyproject.toml declares and
    placeholders only in the shell-rejected <NAME> form."""
    from svsr.checks.check import FIX_COMMANDS

    fixes = _every_fix(tmp_path, monkeypatch)
    assert len(fixes) >= 30
    for where, fix in fixes:
        commands = _fix_commands(fix)
        for command in commands:
            assert command and command[0] in FIX_COMMANDS, (where, fix)
            if command[0] == "pip":
                _check_pip(command)
            for word in command:
                assert not ("<" in word or ">" in word) or (word.startswith("<") and word.endswith(">") and word[1:-1].isupper()), (where, fix)
        assert not fix.rstrip().endswith((")", ".")), (where, fix)  # nothing after the command


def test_the_printed_export_fix_run_as_printed_gets_the_model_check_further(tiny_checkpoint, tiny_build, tmp_path, monkeypatch, capsys):
    """A folder that is no build: the printed svsr-export (its <CHECKPOINT> filled in), parsed and run by svsr-export's
    own entry point, makes it one the model check reads. The export itself is stood in by a copy of the session's
    tiny build (exporting again costs most of a minute; conftest's tiny_build already tests it)."""
    import shutil

    import svsr.api
    from svsr import cli

    folder = tmp_path / "build"
    folder.mkdir()
    (before,) = build_folder.check_model(folder, None)
    assert before.status == FAIL
    (export,) = _fix_commands(before.fix.replace("<CHECKPOINT>", str(tiny_checkpoint)))
    assert export[0] == "svsr-export"
    asked: dict = {}

    def export_model_double(source, out, **kwargs):  # records what svsr-export asks for and writes its output
        asked.update(kwargs, source=source, out=out)
        shutil.rmtree(out)
        shutil.copytree(tiny_build, out)

    monkeypatch.setattr(svsr.api, "export_model", export_model_double)
    code = cli.export_main([*export[1:], "--onnx-only"])  # --onnx-only: this machine has no TensorRT to build engines with
    capsys.readouterr()
    assert code == 0 and asked["source"] == str(tiny_checkpoint) and asked["out"] == folder and asked["force"] is True
    after = build_folder.check_model(folder, None)
    assert after[0].status == OK and [c.name for c in after] == ["model", "model engines"]


def test_the_printed_doctor_fix_rerun_in_process_gets_the_tensorrt_check_further(tiny_build, tmp_path, monkeypatch, capsys):
    """The TensorRT clip's fix re-runs the doctor on the same --work-dir: run in-process, the clip stays OK and no export is repeated."""
    import shutil

    from svsr import cli

    work = tmp_path / "work dir"
    shutil.copytree(tiny_build, work)
    frames = random_frames(2, 32, 36)
    before = {c.name: c for c in doctor.run_checks(work_dir=work, frames=frames, steps=1, parity=False)}
    (rerun,) = _fix_commands(before["TensorRT clip"].fix)
    assert rerun == ["svsr-doctor", "--work-dir", str(work)]
    monkeypatch.setattr(doctor, "run_checks", lambda model=None, **kw: _real_run_checks(model, frames=frames, steps=1, parity=False, **kw))
    capsys.readouterr()
    assert cli.doctor_main(rerun[1:]) == 0
    out = capsys.readouterr().out
    assert f"reused {work}" in out or "float32 graphs" in out
    assert any(line.startswith("ONNX Runtime clip") and " OK " in line for line in out.splitlines()), out


def test_printed_pip_fixes_name_extras_pyproject_declares(monkeypatch):
    """Each pip install a check prints, parsed as pip would: the extras exist, so pip resolves what the check asks for."""
    fixes = [machine.check_cuda_runtime(d, None).fix for d in (None, 12040, 13000)]
    monkeypatch.setattr(machine, "module_version", lambda module: None)
    fixes += [machine.check_ray().fix, machine.check_export_extra().fix]
    seen = set()
    for fix in fixes:
        (command,) = _fix_commands(fix)
        _check_pip(command)
        seen |= {w for w in command if w.startswith("svsr[")}
    assert seen == {"svsr[tensorrt-cu13]", "svsr[tensorrt-cu12]", "svsr[ray]", "svsr[export]"}
    # and a wrong extra is caught
    with pytest.raises(AssertionError):
        _check_pip(["pip", "install", "svsr[tensorrt-cu11]"])


def test_a_cli_usage_error_ends_in_the_command_that_lists_the_options(capsys):
    """The CLI's hint on a bad option is a command: run as printed, it prints the options and exits 0."""
    from svsr import cli
    from svsr.checks.check import fix_command

    assert cli.doctor_main(["--no-such-option"]) == 2
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    (command,) = _fix_commands(hint)
    assert command == ["svsr-doctor", "--help"] and fix_command(hint) == "svsr-doctor --help"
    with pytest.raises(SystemExit) as done:
        cli.doctor_parser().parse_args(command[1:])
    assert done.value.code == 0 and "--work-dir" in capsys.readouterr().out
