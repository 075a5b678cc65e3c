"""Saving ONNX models: one file, or one file plus one external-data file past protobuf's 2 GB limit.

Written atomically (a hidden partial name, then a rename) so a build folder never holds half a graph.
"""

from __future__ import annotations

import os
from pathlib import Path

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_MARGIN = 64 << 20  # graph structure beside the weights


def weight_bytes(model) -> int:
    """Bytes of the initializers (ModelProto.ByteSize() itself may fail on a message over the limit)."""
    return sum(len(t.raw_data) for t in model.graph.initializer)


def needs_external_data(model) -> bool:
    return weight_bytes(model) + EXTERNAL_MARGIN >= PROTOBUF_LIMIT


def save_model(model, path: str | os.PathLike[str]) -> str | None:
    """Save ``model`` to ``path``; over the limit with all weights in ``<file>.data`` (its name is returned)."""
    import onnx

    path = Path(path)
    external = path.with_name(path.name + ".data")
    tmp = path.with_name(f".{path.name}.partial")
    if not needs_external_data(model):
        onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
        if external.exists():
            external.unlink()
        return None
    if external.exists():
        external.unlink()
    onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=external.name, size_threshold=1024)
    os.replace(tmp, path)
    external.chmod(0o644)
    return external.name
