"""Static lint of an ONNX graph against the operator table of onnx-tensorrt (TensorRT's ONNX parser).

It needs neither TensorRT nor a GPU: it walks every node (If/Loop/Scan bodies and model-local
functions included), and checks the op domain, whether the op is in the table and marked supported,
the attribute/input restrictions the table's notes (and the parser's own static checker) state, and
the op's data type where shape inference knows it.  The table is package data,
``svsr/export/data/onnx_trt_ops.json``, whose ``source`` header names the onnx-tensorrt revision it
was transcribed from.

Where the full TensorRT is installed, :func:`check_model` asks TensorRT's own ONNX parser instead
(what ``svsr-export --check-trt`` runs): its verdict is the real one; the static lint stays for
hosts without TensorRT.

    python -m svsr.export.trt_lint model.onnx [--trt 10|10.N|11]
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import json
import re
import sys
from collections import ChainMap
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

Severity = Literal["error", "warning"]

_DEFAULT_DOMAINS = ("", "ai.onnx")
_UNKNOWN = object()  # a constant whose value is not loaded (external data)


@dataclass(frozen=True)
class LintFinding:
    """One problem found in one node (``node``/``op_type`` are empty for model-level findings)."""

    graph: str
    node: str
    op_type: str
    severity: Severity
    message: str


@functools.cache
def load_table() -> dict[str, Any]:
    """The operator table (see its ``source`` key for the onnx-tensorrt revision it comes from)."""
    resource = importlib.resources.files("svsr.export") / "data" / "onnx_trt_ops.json"
    return json.loads(resource.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Target:
    label: str
    major: int
    minor: int | None  # None: "any release of this major version"


def _parse_target(trt_version: str) -> _Target:
    match = re.fullmatch(r"(10|11)(?:\.(\d+))?", str(trt_version).strip())
    if match is None:
        raise ValueError(f"Unsupported TensorRT version {trt_version!r}; use 10, 10.N or 11.")
    minor = int(match.group(2)) if match.group(2) is not None else None
    return _Target(str(trt_version).strip(), int(match.group(1)), minor)


def _minor(version: str) -> int:
    return int(version.split(".")[1])


# --------------------------------------------------------------------------------------------------
# What the checks can ask about a node's tensors.


class _Scope:
    """Types and constants visible inside one graph (outer scopes are chained in)."""

    def __init__(self, name: str, opset: int, parent: _Scope | None = None) -> None:
        self.name = name
        self.opset = opset
        self.types: MutableMapping[str, onnx.TypeProto] = ChainMap({}, *(parent.types.maps if parent else []))
        self.consts: MutableMapping[str, Any] = ChainMap({}, *(parent.consts.maps if parent else []))
        self.producers: MutableMapping[str, str] = ChainMap({}, *(parent.producers.maps if parent else []))

    def add_graph(self, graph: onnx.GraphProto) -> None:
        for info in [*graph.input, *graph.value_info, *graph.output]:
            if info.type.HasField("tensor_type"):
                self.types[info.name] = info.type
        for info in graph.input:
            self.producers[info.name] = f"graph input '{info.name}'"
        for tensor in graph.initializer:
            self.types[tensor.name] = helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
            self.consts[tensor.name] = _tensor_value(tensor)
        for node in graph.node:
            for out in node.output:
                self.producers[out] = f"the output of {node.op_type} node '{node.name or out}'"
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and node.output:
                self.consts[node.output[0]] = _constant_node_value(node)

    def dtype(self, name: str) -> str | None:
        tp = self.types.get(name)
        if tp is None or not tp.tensor_type.elem_type:
            return None
        onnx_name = onnx.TensorProto.DataType.Name(tp.tensor_type.elem_type)
        return load_table()["onnx_dtype_names"].get(onnx_name, onnx_name)

    def shape(self, name: str) -> list[int | str] | None:
        tp = self.types.get(name)
        if tp is None or not tp.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tp.tensor_type.shape.dim]


def _tensor_value(tensor: onnx.TensorProto) -> Any:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return _UNKNOWN
    try:
        return numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - an unreadable constant is simply "value unknown"
        return _UNKNOWN


def _constant_node_value(node: onnx.NodeProto) -> Any:
    for attr in node.attribute:
        if attr.name == "value":
            return _tensor_value(attr.t)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(helper.get_attribute_value(attr))
    return _UNKNOWN


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            if isinstance(value, list):
                return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
            return value
    return default


def _input(node: onnx.NodeProto, index: int) -> str | None:
    return node.input[index] if index < len(node.input) and node.input[index] else None


# --------------------------------------------------------------------------------------------------
# Rule checks: each returns the offending value as text, or None when the node passes.

_Check = Callable[[Mapping[str, Any], onnx.NodeProto, _Scope], "str | None"]


def _check_attr_in(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    value = _attr(node, rule["attribute"], rule.get("default"))
    return None if value in rule["allowed"] else str(value)


def _check_attr_not_in(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    value = _attr(node, rule["attribute"], rule.get("default"))
    return str(value) if value in rule["values"] else None


def _check_attr_all(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    values = _attr(node, rule["attribute"], [])
    return None if all(v == rule["value"] for v in values) else str(values)


def _check_attrs_absent(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    present = [a.name for a in node.attribute if a.name in rule["attributes"]]
    return present[0] if present else None


def _check_inputs_absent(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    given = [f"{i} ('{_input(node, i)}')" for i in rule["indices"] if _input(node, i)]
    return given[0] if given else None


def _check_outputs_absent(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    used = [f"{i} ('{node.output[i]}')" for i in rule["indices"] if i < len(node.output) and node.output[i]]
    return used[0] if used else None


def _check_input_rank(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    name = _input(node, rule["input"])
    shape = scope.shape(name) if name else None
    if shape is None:
        return None
    rank = len(shape)
    ok = rank in rule["allowed"] if "allowed" in rule else rank >= rule["min_rank"]
    return None if ok else str(rank)


def _check_input_dtype(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    name = _input(node, rule["input"])
    dtype = scope.dtype(name) if name else None
    return dtype if dtype is not None and dtype not in rule["allowed"] else None


def _check_input_constant(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    name = _input(node, rule["input"])
    if name is None:
        return None
    if name not in scope.consts:
        return scope.producers.get(name, f"tensor '{name}'") if rule.get("require_constant", True) else None
    value = scope.consts[name]
    if value is _UNKNOWN:
        return None
    if "equals_all" in rule and not np.all(value == rule["equals_all"]):
        return str(value.tolist())
    if "less_than" in rule and not np.all(value < rule["less_than"]):
        return str(value.tolist())
    return None


def _check_input_static_shape(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    name = _input(node, rule["input"])
    shape = scope.shape(name) if name else None
    return str(shape) if shape is not None and not all(isinstance(d, int) and d > 0 for d in shape) else None


def _check_pads_symmetric(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    pads = _attr(node, rule["attribute"], [])
    half = len(pads) // 2
    return None if pads[:half] == pads[half:] else str(pads)


def _check_einsum_charset(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    bad = sorted({c for c in _attr(node, "equation", "") if not ("a" <= c <= "z" or c in "->., ")})
    return ", ".join(repr(c) for c in bad) if bad else None


def _check_einsum_no_ellipsis_or_diagonal(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    equation = _attr(node, "equation", "")
    terms = equation.replace(" ", "").split("->")[0].split(",")
    diagonal = any(len(set(t.replace(".", ""))) < len(t.replace(".", "")) for t in terms)
    return equation if "..." in equation or diagonal else None


def _check_resize_scaled_axes(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    scales_name = _input(node, 2 if scope.opset >= 11 else 1)
    scales = scope.consts.get(scales_name, _UNKNOWN) if scales_name else _UNKNOWN
    if scales is _UNKNOWN or _attr(node, "axes"):  # with `axes` the importer re-orders scales first
        return None
    outer = np.asarray(scales, dtype=np.float64).ravel()[: -rule["innermost"]]
    return str(np.asarray(scales).tolist()) if np.any(outer != 1) else None


def _check_resize_axes_iota_with_tensor_scales(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    axes = _attr(node, "axes", [])
    scales_name = _input(node, 2)
    if not axes or scales_name is None or scales_name in scope.consts:
        return None
    shape = scope.shape(node.input[0])
    rank = len(shape) if shape is not None else len(axes)
    normalized = [a + rank if a < 0 else a for a in axes]
    return None if normalized == list(range(rank)) else str(axes)


def _check_max_opset(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> str | None:
    return str(scope.opset) if scope.opset > rule["opset"] else None


_CHECKS: dict[str, _Check] = {
    "attr_in": _check_attr_in,
    "attr_not_in": _check_attr_not_in,
    "attr_all": _check_attr_all,
    "attrs_absent": _check_attrs_absent,
    "inputs_absent": _check_inputs_absent,
    "outputs_absent": _check_outputs_absent,
    "input_rank": _check_input_rank,
    "input_dtype": _check_input_dtype,
    "input_constant": _check_input_constant,
    "input_static_shape": _check_input_static_shape,
    "pads_symmetric": _check_pads_symmetric,
    "einsum_charset": _check_einsum_charset,
    "einsum_no_ellipsis_or_diagonal": _check_einsum_no_ellipsis_or_diagonal,
    "resize_scaled_axes": _check_resize_scaled_axes,
    "resize_axes_iota_with_tensor_scales": _check_resize_axes_iota_with_tensor_scales,
    "max_opset": _check_max_opset,
}


def _rule_applies(rule: Mapping[str, Any], node: onnx.NodeProto, scope: _Scope) -> bool:
    if scope.opset < rule.get("min_opset", 0):
        return False
    return all(_attr(node, key) == value for key, value in rule.get("when", {}).items())


# --------------------------------------------------------------------------------------------------
# The walk.


class _Linter:
    def __init__(self, model: onnx.ModelProto, target: _Target) -> None:
        self.table = load_table()
        self.target = target
        self.functions = {(f.domain, f.name): f for f in model.functions}
        self.linted_functions: set[tuple[str, str]] = set()
        self.opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 0)
        # TensorRT 10.x releases older than the table: what they lack, keyed by op.
        self.changes: dict[str, list[dict[str, Any]]] = {}
        if target.major == 10:
            for change in self.table["trt10_differences"]["changes"]:
                if target.minor is None or target.minor < _minor(change["since"]):
                    self.changes.setdefault(change["op"], []).append(change)
        self.findings: list[LintFinding] = []

    def add(self, scope: _Scope, node: onnx.NodeProto | None, label: str, severity: Severity, message: str) -> None:
        op_type = node.op_type if node is not None else ""
        self.findings.append(LintFinding(scope.name, label, op_type, severity, message))

    def lint(self, model: onnx.ModelProto) -> list[LintFinding]:
        scope = _Scope(model.graph.name or "main_graph", self.opset)
        self._check_opset(scope)
        self._walk(model.graph, scope)
        return self.findings

    def _check_opset(self, scope: _Scope) -> None:
        low, high = self.table["opset_range"]
        if self.target.major == 10 and self.target.minor is not None and self.target.minor < _minor(self.table["source"]["tensorrt_version"]):
            known = {_minor(v): top for v, top in self.table["trt10_differences"]["opset_max"].items()}
            high = known[max(m for m in known if m <= self.target.minor)]
        elif self.target.major == 10 and self.target.minor is None:
            high = self.table["trt10_differences"]["opset_max"]["10.0"]
        if not low <= self.opset <= high:
            self.add(scope, None, "", "warning",
                     f"The model uses default-domain opset {self.opset}, outside the opset {low} to {high} range documented for TensorRT {self.target.label}.")

    def _walk(self, graph: onnx.GraphProto, scope: _Scope) -> None:
        scope.add_graph(graph)
        for index, node in enumerate(graph.node):
            label = node.name or f"<{node.op_type} #{index}>"
            self._check_node(node, label, scope)
            for attr in node.attribute:
                subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
                for sub in subgraphs:
                    self._walk(sub, _Scope(f"{scope.name}/{label}/{attr.name}", scope.opset, scope))

    def _check_node(self, node: onnx.NodeProto, label: str, scope: _Scope) -> None:
        op, domain = node.op_type, node.domain
        function = self.functions.get((domain, op))
        if function is not None:  # the parser imports model-local functions node by node
            if (domain, op) not in self.linted_functions:
                self.linted_functions.add((domain, op))
                body = helper.make_graph(list(function.node), f"function {domain}:{op}", [], [])
                self._walk(body, _Scope(body.name, scope.opset))
            return
        if domain not in _DEFAULT_DOMAINS:
            self.add(scope, node, label, "error",
                     f"{domain}:{op} is outside the default ONNX domain, so TensorRT's ONNX parser can only import it through a registered plugin.")
            return
        entry = self.table["ops"].get(op)
        if entry is None:
            self.add(scope, node, label, "error",
                     f"{op} is not in onnx-tensorrt's operator table, so the parser would only import it through a plugin named {op}.")
            return
        if not entry["supported"]:
            self.add(scope, node, label, "error", f"{op} is marked unsupported in onnx-tensorrt's operator table.")
            return
        self._check_dtype(node, label, entry, scope)
        for rule in entry.get("rules", []):
            self._apply(rule, node, label, scope, rule["severity"])
        for change in self.changes.get(op, []):
            severity: Severity = "warning" if self.target.minor is None else "error"
            if change["change"] == "op_added":
                self.add(scope, node, label, severity,
                         f"{op} was added to the parser in TensorRT {change['since']}, so older TensorRT 10 releases cannot import it.")
            else:
                self._apply(change["rule"], node, label, scope, severity)

    def _check_dtype(self, node: onnx.NodeProto, label: str, entry: Mapping[str, Any], scope: _Scope) -> None:
        kind, index = entry.get("type_from", "input:0").split(":")
        names = node.input if kind == "input" else node.output
        name = names[int(index)] if int(index) < len(names) else ""
        dtype = scope.dtype(name) if name else None
        if dtype is not None and entry["types"] and dtype not in entry["types"]:
            self.add(scope, node, label, "warning",
                     f"{node.op_type} {kind} '{name}' is {dtype}, which is not among the documented types ({', '.join(entry['types'])}).")

    def _apply(self, rule: Mapping[str, Any], node: onnx.NodeProto, label: str, scope: _Scope, severity: Severity) -> None:
        if not _rule_applies(rule, node, scope):
            return
        value = _CHECKS[rule["check"]](rule, node, scope)
        if value is not None:
            self.add(scope, node, label, severity, rule["message"].format(value=value))


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - lint what we can without inferred types
        return model


def lint_model(model: onnx.ModelProto | str | Path, trt_version: str = "11") -> list[LintFinding]:
    """Check an ONNX model (or a path to one; external data is not loaded) against the onnx-tensorrt table.

    ``trt_version`` is ``"11"`` (the newest table found, see the table's ``source.tensorrt_11_note``),
    ``"10"`` (any 10.x: what later 10.x releases added is reported as warnings) or ``"10.N"``.
    """
    target = _parse_target(trt_version)
    loaded = _load(model)
    return _Linter(loaded, target).lint(loaded)


# Every TensorRT name the parser check uses (tests check them against the real wheel's string table).
TRT_PARSER_API: dict[str, tuple[str, ...]] = {
    "tensorrt": ("Logger", "Builder", "OnnxParser"),
    "Logger": ("WARNING",),
    "Builder": ("create_network",),
    "OnnxParser": ("parse_from_file", "num_errors", "get_error"),
    "ParserError": ("node_name", "node_operator"),
}


def parse_with_tensorrt(path: str | Path, trt: Any) -> list[LintFinding]:
    """TensorRT's own ONNX parser on ``path`` (module ``trt``, the full library): one error finding per parser error."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 11 parses into strongly typed networks only
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(path)) and parser.num_errors == 0:
        return []
    graph = Path(path).name
    findings = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        findings.append(LintFinding(graph, str(error.node_name()), str(error.node_operator()), "error", " ".join(str(error).split())))
    return findings or [LintFinding(graph, "", "", "error", "TensorRT's ONNX parser refused the model without saying why")]


def check_model(path: str | Path, trt_version: str = "11", *, trt: Any = None) -> tuple[str, list[LintFinding]]:
    """(what checked it, findings) for an ONNX file: TensorRT's own parser where the full TensorRT imports, else the static lint.

    ``trt``: a TensorRT module to use (default: the full library, if installed).
    """
    if trt is None:
        from svsr.contract.errors import MissingDependencyError
        from svsr.device.tensorrt import import_tensorrt

        try:
            trt = import_tensorrt("the TensorRT parser check")
        except MissingDependencyError:
            return f"static lint for TensorRT {trt_version} (TensorRT is not installed here)", lint_model(path, trt_version)
    return f"TensorRT {getattr(trt, '__version__', '?')}'s ONNX parser", parse_with_tensorrt(path, trt)


def format_findings(findings: Sequence[LintFinding]) -> str:
    """A readable report: one line per finding, errors first, with a count at the top."""
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if not findings:
        return "TensorRT lint: no findings."
    lines = [f"TensorRT lint: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}."]
    for f in sorted(findings, key=lambda f: f.severity != "error"):
        where = f"{f.graph} :: {f.node} ({f.op_type})" if f.node or f.op_type else f.graph
        lines.append(f"  {f.severity:<7} {where}: {f.message}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svsr.export.trt_lint", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX file(s); external data is not read")
    parser.add_argument("--trt", default="11", help="TensorRT version: 10, 10.N or 11 (default 11)")
    args = parser.parse_args(argv)
    try:
        _parse_target(args.trt)
    except ValueError as exc:
        parser.error(str(exc))
    source = load_table()["source"]
    failed = False
    for path in args.models:
        findings = lint_model(path, args.trt)
        print(f"{path}: TensorRT {args.trt}, table from {source['repository']}/{source['path']} @ {source['commit'][:7]} (TensorRT {source['tensorrt_version']})")
        print(format_findings(findings))
        failed |= any(f.severity == "error" for f in findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
