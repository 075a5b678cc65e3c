"""svsr-export on the command line: graphs, reuse, lint, and the honest answer when engines cannot be built."""

from __future__ import annotations

import json

import pytest

from svsr.cli import export_main
from svsr.contract.graphs import GRAPH_NAMES
from svsr.engines.builder import tensorrt_build_available


def test_preset_export_then_reuse(tmp_path, capsys):
    out = tmp_path / "build"
    assert export_main(["--preset", "tiny", "--out", str(out), "--onnx-only", "--check-trt"]) == 0
    printed = capsys.readouterr().out
    for name in GRAPH_NAMES:
        assert any(line.split()[:2] == [name, "exported"] for line in printed.splitlines()), name
    assert "TensorRT lint: 0 errors" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["preset"] == "tiny"
    assert (out / "checkpoint" / "unet").is_dir()
    assert export_main(["--preset", "tiny", "--out", str(out), "--onnx-only"]) == 0
    assert capsys.readouterr().out.count("reused") == len(GRAPH_NAMES) == 10


@pytest.mark.skipif(tensorrt_build_available()[0], reason="TensorRT and a GPU are present: engines would be built")
def test_without_tensorrt_engines_are_not_built_and_the_exit_is_nonzero(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "build"
    code = export_main(["--weights", str(tiny_checkpoint), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "TensorRT engines were not built" in err and "--onnx-only" in err
    assert (out / "manifest.json").exists() and (out / "denoise.onnx").exists()


def test_bad_arguments(tiny_checkpoint, tmp_path, capsys):
    assert export_main(["--weights", str(tmp_path / "nope"), "--out", str(tmp_path / "b"), "--onnx-only"]) == 2
    assert "does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert export_main(["--weights", str(tiny_checkpoint), "--out", str(blocker), "--onnx-only"]) == 2
    assert "is a file" in capsys.readouterr().err
    code = export_main(["--weights", str(tiny_checkpoint), "--out", str(tmp_path / "c"), "--resolution", "20x20"])
    assert code == 2 and "both sides at least 32" in capsys.readouterr().err
    assert not (tmp_path / "c" / "manifest.json").exists()  # refused before any export work


def test_opset_18_exports(tiny_checkpoint, tmp_path):
    out = tmp_path / "b18"
    assert export_main(["--weights", str(tiny_checkpoint), "--out", str(out), "--onnx-only", "--opset", "18", "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["exporter"]["opset"] == 18
