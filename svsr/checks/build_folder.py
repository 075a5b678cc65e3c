"""``svsr-doctor --model BUILD``: the build folder's engine records against this machine.

The verdict is the contract's one (``problems(record, env)`` with this machine's ``MachineEnv``), the
command the contract's ``rebuild_command``; this module only groups the records by where they were
built and says it per group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping

from svsr.checks.check import FAIL, OK, WARN, Check, cc_tuple, fix, sentence
from svsr.contract.engine_records import MachineEnv

BF16_COMPUTE_CAPABILITY = (8, 0)


def _engine_groups(engines: Mapping[str, Mapping[str, Any]]) -> dict[tuple, dict[str, Mapping[str, Any]]]:
    groups: dict[tuple, dict[str, Mapping[str, Any]]] = {}
    for key, record in engines.items():
        where = (record.get("tensorrt_version"), record.get("gpu_name"), record.get("compute_capability"), bool(record.get("version_compatible")))
        groups.setdefault(where, {})[key] = record
    return groups


def _group_problems(records: Mapping[str, Mapping[str, Any]], env: MachineEnv | None, why_not: str, skipped: Collection[str] = ()) -> list[str]:
    """What keeps this group of engines from running here, as clauses: the contract's problems of each record (once each), then the group's own."""
    from svsr.contract.engine_records import problems
    from svsr.contract.graphs import GRAPH_NAMES

    if env is None:
        found = [f"this machine cannot run them ({why_not.rstrip('.')})"]
    else:
        per_record = list(dict.fromkeys(p for record in records.values() for p in problems(record, env)))
        found = [f"each engine {', and '.join(per_record)}"] if per_record else []
        here_cc = cc_tuple(env.compute_capability)
        if here_cc is not None and here_cc < BF16_COMPUTE_CAPABILITY and any(r["precision"] == "bf16" for r in records.values()):
            found.append(f"bf16 engines need compute capability 8.0+, this GPU has {env.compute_capability}")
    # ``skipped``: flow scales no frame of the build's profile can use, which have no engine by design (svsr/engines/builder.py)
    missing = [g for g in GRAPH_NAMES if g not in skipped and not any(r["graph"] == g for r in records.values())]
    if missing:
        found.append(f"no engine for {', '.join(missing)}")
    return found


def reexport_command(build_dir: Path) -> str:
    """The svsr-export command that writes ``build_dir`` again: from the preset or checkpoint its manifest names, where it can be read."""
    import json
    import shlex

    checkpoint: Any = None
    try:
        data = json.loads((build_dir / "manifest.json").read_text(encoding="utf-8"))
        checkpoint = data.get("checkpoint") if isinstance(data, dict) else None
    except (OSError, ValueError):
        pass
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    preset, source = checkpoint.get("preset"), checkpoint.get("source")
    if isinstance(preset, str) and preset:
        weights = ["--preset", shlex.quote(preset)]
    else:
        weights = ["--weights", shlex.quote(source) if isinstance(source, str) and source else "<CHECKPOINT>"]
    return " ".join(["svsr-export", *weights, "--out", shlex.quote(str(build_dir)), "--force"])


def check_model(build_dir: str | Path, env: MachineEnv | None, why_not: str = "no TensorRT or no NVIDIA GPU") -> list[Check]:
    """The build folder's manifest and engine records against ``env`` (None: this machine has no usable TensorRT + GPU, ``why_not``)."""
    from svsr.contract.engine_records import rebuild_command, validate_engines
    from svsr.contract.errors import SvsrError
    from svsr.contract.graphs import GRAPH_NAMES
    from svsr.contract.manifest import load_manifest
    from svsr.contract.precision import Precision
    from svsr.contract.profiles import Profile

    build_dir = Path(build_dir)
    try:
        manifest = load_manifest(build_dir)
        engines = validate_engines(manifest.get("engines") or {}, str(build_dir / "manifest.json"))
    except Exception as exc:  # noqa: BLE001
        return [Check("model", FAIL, f"{build_dir} cannot be used: {sentence(exc)}", fix("export it again from its checkpoint", reexport_command(build_dir)))]
    typed = sorted({p for g in manifest["graphs"].values() for p in (g.get("typed") or {})})
    source = (manifest.get("checkpoint") or {}).get("source") or "?"
    checks = [Check("model", OK, f"{build_dir}: graphs {', '.join(manifest['graphs'])} (float32{''.join(', ' + p for p in typed)}) from {source}")]
    where_here = "this machine" if env is not None else "the GPU machine that will run them"
    here_lean = env is not None and env.lean
    if not engines:
        typed_fp16 = Precision.parse("fp16").typed()  # the graphs an fp16 build has typed versions of
        precision = "fp16" if all("fp16" in (manifest["graphs"][g].get("typed") or {}) for g in typed_fp16) else "fp32"
        command = rebuild_command(manifest, build_dir, precision, Profile.from_args(resolution="320x180"), lean=here_lean).replace(" --force", "")
        checks.append(Check("model engines", WARN, "no TensorRT engines: svsr-run uses ONNX Runtime", fix(f"build them on {where_here} with", command)))
        return checks
    for (version, gpu, cc, compatible), records in _engine_groups(engines).items():
        keys = sorted(records, key=lambda k: (GRAPH_NAMES.index(records[k]["graph"]), k))
        first = records[keys[0]]
        profile = Profile.from_json(first["profile"])
        # a flow scale the profile builds no engine of (the builder skips it) does not hold its family's precision back
        skipped = {g for g in GRAPH_NAMES if profile.skip_reason(g) is not None}
        try:
            per_graph = Precision.parse("auto").resolve(lambda g, p: f"{g}.{p}" in records or g in skipped)
        except SvsrError:  # guide_decode and decode built in different precisions: rebuild both in fp32
            per_graph = Precision.parse("fp32")
        lean = compatible or bool(first.get("lean"))
        value = (
            f"{', '.join(keys)} for {gpu} (compute capability {cc}), TensorRT {version}"
            f"{', version-compatible (lean)' if lean else ''}, {profile.describe()}"
        )
        figures = {"engines": keys, "tensorrt_version": version, "gpu_name": gpu, "compute_capability": cc, "version_compatible": compatible}
        found = _group_problems(records, env, why_not, skipped)
        if not found:
            checks.append(Check("model engines", OK, value + ": run here", figures=figures))
            continue
        command = rebuild_command(manifest, build_dir, per_graph, profile, lean=lean or here_lean)
        advice = fix(f"{'; '.join(found)}; rebuild on {where_here} with", command)
        checks.append(Check("model engines", WARN, value + ": svsr-run uses ONNX Runtime instead", advice, figures | {"problems": found}))
    return checks
