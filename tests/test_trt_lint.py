"""Tests for svsr.export.trt_lint: small ONNX graphs linted against the onnx-tensorrt operator table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from svsr.export.trt_lint import TRT_PARSER_API, LintFinding, check_model, format_findings, lint_model, load_table, main

CUBIC_WARNING = (
    "Resize mode 'cubic' is not listed in operators.md (nearest, linear), but the parser's static checker "
    "and importer accept it, so confirm it with a real TensorRT parse."
)


def _model(nodes, inputs, outputs, initializers=(), opset=17, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(f.domain, 1) for f in functions]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _errors(findings):
    return [f for f in findings if f.severity == "error"]


def _resize_model(**attrs):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attrs)
    return _model([node], [_f32("x", [1, 3, 8, 8])], [_f32("y", None)], [scales])


def test_table_loads_and_names_its_source():
    table = load_table()
    source = table["source"]
    assert source["repository"] == "onnx/onnx-tensorrt"
    assert source["path"] == "docs/operators.md"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["tensorrt_version"] == "10.15"
    assert "TensorRT 11" in source["tensorrt_11_note"]
    assert len(table["ops"]) == 200
    assert sum(op["supported"] for op in table["ops"].values()) == 158
    assert table["ops"]["Unique"]["supported"] is False
    assert table["ops"]["GridSample"]["types"] == ["FP32", "FP16"]
    assert table["opset_range"] == [9, 24]
    assert {c["op"] for c in table["trt10_differences"]["changes"]} >= {"Attention", "Einsum", "GroupNormalization"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Converting a tensor to a Python boolean")
def test_torch_export_lints_clean_except_documented_cubic_warning(tmp_path: Path):
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1)
            self.norm = nn.GroupNorm(2, 8)

        def forward(self, x, grid):
            y = F.silu(self.norm(self.conv(x)))
            y = F.interpolate(y, scale_factor=4, mode="bicubic")
            return F.grid_sample(y, grid, align_corners=False)

    path = tmp_path / "block.onnx"
    args = (torch.randn(1, 4, 8, 8), torch.rand(1, 16, 16, 2) * 2 - 1)
    torch.onnx.export(Block().eval(), args, str(path), dynamo=False, opset_version=17, input_names=["x", "grid"])
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Conv", "InstanceNormalization", "Sigmoid", "Resize", "GridSample"} <= ops

    findings = lint_model(path, "11")
    # The one finding is real and documented: operators.md lists only nearest/linear Resize, while the
    # parser's onnxOpCheckers.cpp/onnxOpImporters.cpp accept mode=cubic (see the JSON's rule basis).
    assert findings == [LintFinding("main_graph", "/Resize", "Resize", "warning", CUBIC_WARNING)]
    assert main([str(path)]) == 0


def test_unsupported_op_is_an_error():
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    findings = lint_model(_model([node], [_f32("x", [5])], [_f32("y", None)]))
    assert findings == [
        LintFinding("g", "uniq", "Unique", "error", "Unique is marked unsupported in onnx-tensorrt's operator table.")
    ]


@pytest.mark.parametrize(
    ("attrs", "fragment"),
    [
        ({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, "coordinate_transformation_mode 'half_pixel_symmetric'"),
        ({"mode": "linear", "antialias": 1}, "antialiasing is not supported"),
        ({"mode": "nearest", "keep_aspect_ratio_policy": "not_larger"}, "keep_aspect_ratio_policy 'not_larger'"),
        ({"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn", "nearest_mode": "floor"}, "only supports nearest_mode round_prefer_floor"),
    ],
)
def test_unsupported_resize_attribute_values_are_errors(attrs, fragment):
    findings = lint_model(_resize_model(**attrs), "11")
    assert len(_errors(findings)) == 1
    assert fragment in _errors(findings)[0].message
    assert _errors(findings)[0].op_type == "Resize"


def test_supported_resize_and_cubic_scales_on_batch_axis():
    assert lint_model(_resize_model(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")) == []
    bad_scales = numpy_helper.from_array(np.array([2, 1, 2, 2], dtype=np.float32), "scales")
    model = _resize_model(mode="cubic")
    model.graph.initializer[0].CopyFrom(bad_scales)
    messages = [f.message for f in _errors(lint_model(model))]
    assert messages == ["Cubic Resize can only scale the last 2 axes but the constant scales are [2.0, 1.0, 2.0, 2.0]."]


def test_gridsample_rank_and_importer_mode_spelling():
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs", mode="linear")  # opset-20 spelling
    model = _model([node], [_f32("x", [1, 2, 4, 4, 4]), _f32("grid", [1, 4, 4, 4, 3])], [_f32("y", None)], opset=20)
    findings = lint_model(model)
    assert [f.severity for f in findings] == ["error", "warning"]
    assert findings[0].message == "GridSample input must be 4D but has rank 5."
    assert "unknown values fall through to nearest" in findings[1].message


def test_custom_domain_op_is_an_error_unless_it_is_a_local_function():
    plugin = helper.make_node("FancyWarp", ["x"], ["y"], name="warp", domain="com.example")
    model = _model([plugin], [_f32("x", [1, 3])], [_f32("y", None)])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    findings = lint_model(model)
    assert [(f.op_type, f.severity) for f in findings] == [("FancyWarp", "error")]
    assert "registered plugin" in findings[0].message

    # The same op defined as a model-local function is imported node by node: its body is linted instead.
    body = [helper.make_node("Unique", ["a"], ["b"], name="inner_unique")]
    function = helper.make_function("com.example", "FancyWarp", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    model = _model([plugin], [_f32("x", [1, 3])], [_f32("y", None)], functions=[function])
    findings = lint_model(model)
    assert [(f.graph, f.node, f.op_type, f.severity) for f in findings] == [
        ("function com.example:FancyWarp", "inner_unique", "Unique", "error")
    ]


def test_nodes_inside_if_branches_are_checked():
    then_graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "s"], ["t"], name="then_resize", mode="nearest", antialias=1)],
        "then_body", [], [_f32("t", None)],
        initializer=[numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "s")],
    )
    else_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="else_id")], "else_body", [], [_f32("e", None)])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    node = helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_graph, else_branch=else_graph)
    findings = lint_model(_model([node], [cond, _f32("x", [1, 3, 4, 4])], [_f32("y", None)]))
    assert findings == [
        LintFinding("g/branch/then_branch", "then_resize", "Resize", "error", "Resize antialiasing is not supported.")
    ]


def test_trt10_reports_ops_added_later_in_10x():
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 4, 8])
    node = helper.make_node("Attention", ["q", "q", "q"], ["y"], name="attn")
    model = _model([node], [q], [_f32("y", None)], opset=23)
    assert lint_model(model, "11") == []
    assert lint_model(model, "10.15") == []
    any_10 = lint_model(model, "10")  # any 10.x: later additions (and 10.0's opset limit of 20) are warnings
    assert [(f.op_type, f.severity) for f in any_10] == [("", "warning"), ("Attention", "warning")]
    assert "outside the opset 9 to 20 range" in any_10[0].message
    (finding,) = lint_model(model, "10.13")
    assert finding.severity == "error" and "added to the parser in TensorRT 10.14" in finding.message
    with pytest.raises(ValueError, match="use 10, 10.N or 11"):
        lint_model(model, "8.6")


def test_attention_restrictions_and_dtype_warning():
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 4, 8])  # 3D: not supported by the parser
    node = helper.make_node("Attention", ["q", "q", "q"], ["y", "present_key"], name="attn", softcap=30.0)
    messages = [f.message for f in lint_model(_model([node], [q], [_f32("y", None)], opset=23))]
    assert "Attention inputs Q, K, V and attn_mask must be 4D, but input 0 has rank 3." in messages
    assert "Attention outputs present_key, present_value and qk_matmul_output are unsupported, but output 1 ('present_key') is used." in messages
    assert "Attention attribute softcap is unsupported but is set to 30.0." in messages

    double = helper.make_tensor_value_info("d", TensorProto.DOUBLE, [3])
    add = helper.make_node("Add", ["d", "d"], ["s"], name="add")
    (finding,) = lint_model(_model([add], [double], [helper.make_tensor_value_info("s", TensorProto.DOUBLE, None)]))
    assert finding.severity == "warning" and "is DOUBLE" in finding.message


def test_cli_exit_code_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    model = _model([node], [_f32("x", [5])], [_f32("y", None)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path), save_as_external_data=True, size_threshold=0)  # external data is not read
    assert main([str(path), "--trt", "10"]) == 1
    out = capsys.readouterr().out
    assert "TensorRT lint: 1 error, 0 warnings." in out and "uniq (Unique)" in out
    assert format_findings([]) == "TensorRT lint: no findings."


class TrtParserDouble:
    """Test double (not TensorRT) of the ONNX parser names TRT_PARSER_API lists: refuses a model whose file name starts with "bad"."""

    __version__ = "11.4.0.106"

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity):
            pass

    class ParserError:
        def __init__(self, node, op, text):
            self._node, self._op, self._text = node, op, text

        def node_name(self):
            return self._node

        def node_operator(self):
            return self._op

        def __str__(self):
            return self._text

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return "network"

    class OnnxParser:
        def __init__(self, network, logger):
            self._errors = []

        def parse_from_file(self, path):
            if Path(path).name.startswith("bad"):
                self._errors = [TrtParserDouble.ParserError("uniq", "Unique", "In node 0 (uniq): UNSUPPORTED_NODE: No importer registered for op: Unique")]
            return not self._errors

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, i):
            return self._errors[i]


def test_check_trt_asks_tensorrts_parser_where_tensorrt_is_installed(tmp_path: Path):
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    model = _model([node], [_f32("x", [5])], [_f32("y", None)])
    for name in ("bad.onnx", "good.onnx"):
        onnx.save(model, str(tmp_path / name))
    how, findings = check_model(tmp_path / "bad.onnx", trt=TrtParserDouble)
    assert how == "TensorRT 11.4.0.106's ONNX parser"
    assert findings == [LintFinding("bad.onnx", "uniq", "Unique", "error", "In node 0 (uniq): UNSUPPORTED_NODE: No importer registered for op: Unique")]
    assert check_model(tmp_path / "good.onnx", trt=TrtParserDouble) == (how, [])  # TensorRT's verdict, not the table's
    # the double offers only the names the check declares
    for owner, names in TRT_PARSER_API.items():
        holder = TrtParserDouble if owner == "tensorrt" else getattr(TrtParserDouble, owner)
        assert all(hasattr(holder, n) for n in names), owner


def test_check_trt_keeps_the_static_lint_without_tensorrt(tmp_path: Path):
    from svsr.contract.errors import MissingDependencyError
    from svsr.device.tensorrt import import_tensorrt

    try:
        import_tensorrt()
    except MissingDependencyError:
        pass
    else:
        pytest.skip("the full TensorRT is installed here")
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    onnx.save(_model([node], [_f32("x", [5])], [_f32("y", None)]), str(tmp_path / "m.onnx"))
    how, findings = check_model(tmp_path / "m.onnx", "10")
    assert how == "static lint for TensorRT 10 (TensorRT is not installed here)"
    assert findings == lint_model(tmp_path / "m.onnx", "10") and _errors(findings)


def test_parser_names_are_in_the_real_tensorrt_wheel():
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorrt-cu13-bindings is not installed (dev extra)")
    so = next(Path(next(iter(spec.submodule_search_locations))).glob("tensorrt*.so"), None)
    if so is None:
        pytest.skip("no compiled module in tensorrt_bindings")
    table = so.read_bytes()
    names = {n for owner, attrs in TRT_PARSER_API.items() for n in (owner, *attrs)} - {"tensorrt"}
    assert not sorted(n for n in names if n.encode() + b"\0" not in table)
