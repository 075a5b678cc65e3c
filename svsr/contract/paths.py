"""The one rule for paths a build folder names: they stay inside it (torch-free, stdlib only).

Build folders are copied between machines, downloaded and shared over NFS. Whoever writes
``manifest.json`` writes the sha256 beside every file name too, so a checksum cannot stop a loader
from opening a file elsewhere. Every loader therefore passes each name it takes from a build folder
(graph files, typed graphs, ONNX external data, engine plans, calibration data) through
:func:`inside_build_folder` before anything opens it: no absolute paths, no ``..``, and no symbolic
link that resolves outside the (resolved) build folder. The C++ host applies the same rule
(cpp/src/manifest.cpp).

ONNX files name their own external-data files; :func:`onnx_external_data_locations` reads those
names from the protobuf without loading any tensor data (and without the ``onnx`` package, which the
torch-free runtime does not install).
"""

from __future__ import annotations

import mmap
from pathlib import Path, PurePosixPath
from typing import Iterator

from svsr.contract.errors import ManifestError

MANIFEST_NAME = "manifest.json"


def escape_reason(build_dir: str | Path, name: object) -> str | None:
    """Why ``name`` (relative to ``build_dir``) is not a file inside ``build_dir``; None when it is."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return "is not a file name"
    if name.startswith(("/", "\\")) or Path(name).is_absolute():
        return f"is an absolute path, outside the build folder {build_dir}"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return f"climbs out of the build folder {build_dir} with '..'"
    root = Path(build_dir).resolve()
    target = (root / name).resolve()  # follows every symbolic link on the way
    if target != root and root not in target.parents:
        return f"is a symbolic link to {target}, outside the build folder {build_dir}"
    return None


def inside_build_folder(build_dir: str | Path, name: object, what: str, named_by: str = MANIFEST_NAME, fix: str | None = None) -> Path:
    """``build_dir / name`` after checking that it stays inside ``build_dir``.

    ``what``: what the name is for ("graph file", "engine plan", ...); ``named_by``: the file that
    names it; ``fix``: what to do instead of the default re-export. Raises ManifestError (one sentence
    naming both and the rule) otherwise; nothing is opened or written.
    """
    reason = escape_reason(build_dir, name)
    if reason is not None:
        raise ManifestError(
            f"{named_by} names {what} {name!r}, which {reason}; build folders may only name files inside themselves: "
            f"{fix or f're-export it with svsr-export --out {build_dir}'}."
        )
    return Path(build_dir) / str(name)


# -- ONNX external-data names, read from the protobuf wire format ---------------------------------
# Field numbers from onnx.proto (stable: protobuf never renumbers fields).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_FUNCTION_NODE = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_MAX_DEPTH = 64  # nested subgraphs; deeper means a damaged (or hostile) file


class DamagedOnnxFile(ValueError):
    """The bytes are not a well-formed ONNX protobuf."""


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DamagedOnnxFile("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _messages(buf: mmap.mmap | bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of every length-delimited field of the message in buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise DamagedOnnxFile("field number 0")
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise DamagedOnnxFile("field runs past the end")
            yield field, pos, pos + length
            pos += length
        else:
            raise DamagedOnnxFile(f"wire type {wire}")
        if pos > end:
            raise DamagedOnnxFile("field runs past the end")


def _tensor_locations(buf, start: int, end: int) -> Iterator[str]:
    for field, s, e in _messages(buf, start, end):
        if field == _TENSOR_EXTERNAL_DATA:
            entry = {f: bytes(buf[a:b]) for f, a, b in _messages(buf, s, e) if f in (_ENTRY_KEY, _ENTRY_VALUE)}
            if entry.get(_ENTRY_KEY) == b"location":
                try:
                    yield entry.get(_ENTRY_VALUE, b"").decode("utf-8")
                except UnicodeDecodeError:
                    raise DamagedOnnxFile("location is not UTF-8") from None


def _sparse_locations(buf, start: int, end: int) -> Iterator[str]:
    for field, s, e in _messages(buf, start, end):
        if field in (_SPARSE_VALUES, _SPARSE_INDICES):
            yield from _tensor_locations(buf, s, e)


def _node_locations(buf, start: int, end: int, depth: int) -> Iterator[str]:
    for field, s, e in _messages(buf, start, end):
        if field != _NODE_ATTRIBUTE:
            continue
        for attr_field, a, b in _messages(buf, s, e):
            if attr_field in (_ATTR_TENSOR, _ATTR_TENSORS):
                yield from _tensor_locations(buf, a, b)
            elif attr_field in (_ATTR_SPARSE, _ATTR_SPARSES):
                yield from _sparse_locations(buf, a, b)
            elif attr_field in (_ATTR_GRAPH, _ATTR_GRAPHS):
                yield from _graph_locations(buf, a, b, depth + 1)


def _graph_locations(buf, start: int, end: int, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise DamagedOnnxFile("subgraphs nested too deeply")
    for field, s, e in _messages(buf, start, end):
        if field == _GRAPH_INITIALIZER:
            yield from _tensor_locations(buf, s, e)
        elif field == _GRAPH_SPARSE_INITIALIZER:
            yield from _sparse_locations(buf, s, e)
        elif field == _GRAPH_NODE:
            yield from _node_locations(buf, s, e, depth)


def onnx_external_data_locations(path: str | Path) -> list[str]:
    """The external-data ``location`` of every tensor in the ONNX file ``path`` (initializers, constants,
    subgraphs, functions), read without loading any tensor data; DamagedOnnxFile when the bytes are
    not a well-formed ONNX model."""
    with open(path, "rb") as fh:
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise DamagedOnnxFile("empty file") from None
    with buf:
        found: list[str] = []
        has_graph = False
        for field, s, e in _messages(buf, 0, len(buf)):
            if field == _MODEL_GRAPH:
                has_graph = True
                found += _graph_locations(buf, s, e, 0)
            elif field == _MODEL_FUNCTIONS:
                for f, a, b in _messages(buf, s, e):
                    if f == _FUNCTION_NODE:
                        found += _node_locations(buf, a, b, 0)
        if not has_graph:
            raise DamagedOnnxFile("no graph")
        return sorted(set(found))


def check_onnx_external_data(build_dir: str | Path, onnx_path: str | Path, graph: str) -> None:
    """Refuse (ManifestError) an ONNX file that is damaged or whose external data lies outside ``build_dir``.

    ONNX resolves a location against the model file's folder; the resolved file must stay inside
    the build folder, checked before ONNX Runtime, TensorRT or onnx opens the model.
    """
    onnx_path = Path(onnx_path)
    try:
        locations = onnx_external_data_locations(onnx_path)
    except DamagedOnnxFile as exc:
        raise ManifestError(
            f"graph {graph} ({onnx_path}) is damaged ({exc}), not a readable ONNX file; re-export it with svsr-export --force --out {build_dir}."
        ) from None
    folder = onnx_path.parent
    for location in locations:
        # the ONNX file itself passed inside_build_folder, so its folder is inside the build folder
        reason = escape_reason(folder, location)
        if reason is not None:
            raise ManifestError(
                f"{onnx_path} names external data {location!r}, which {reason}; build folders may only name files inside themselves: "
                f"re-export it with svsr-export --out {build_dir}."
            )
