"""Verified TensorRT plans: a build folder's engines for one precision, checked before anything is deserialised.

Each engine record is judged against this machine by the one verdict
(``svsr.contract.engine_records.check_record``, which raises the first of ``problems(record, env)``
with the command that rebuilds it: ``--lean`` where the lean runtime runs it or the plan was lean);
then the plan file must exist and match its recorded sha256. The hash is cached next to the plan
(``<plan>.sha256.json``, keyed by file name, size and mtime), so a multi-GB plan is hashed again
only when it changed.

The plans of the graphs only some runs use (``backend.ON_DEMAND_GRAPHS``: the flow graphs of flow
scales 2 and 1, the statistics graphs of tiled runs) are checked the same way but read only when the
backend loads them (:class:`PlanFile`, checked again then), so an untiled run never holds the
``denoise_stats`` plan, a second UNet + TCM, in host or device memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from svsr.contract.engine_records import MachineEnv, check_record, choose_precision, engine_key, onnx_entry, rebuild_command, validate_engines
from svsr.contract.errors import InputError, ManifestError
from svsr.contract.manifest import sha256_file
from svsr.contract.paths import inside_build_folder
from svsr.contract.precision import Precision, PrecisionLike
from svsr.contract.profiles import Profile
from svsr.runtime.sampling.backend import ON_DEMAND_GRAPHS


def hash_sidecar(path: Path) -> Path:
    """Where the verified sha256 of a plan file is cached: ``<plan>.sha256.json`` next to it."""
    return path.with_name(path.name + ".sha256.json")


def cached_sha256(path: str | Path) -> str:
    """The sha256 of ``path``, hashed only when the file changed since the cached hash was made.

    The cache is keyed by the file's name, size and modification time (ns); a missing, stale or
    unreadable sidecar means hashing the file again and rewriting it (when the folder is writable).
    """
    path = Path(path)
    st = path.stat()
    key = {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    sidecar = hash_sidecar(path)
    try:
        cached = json.loads(sidecar.read_text())
        if isinstance(cached, dict) and all(cached.get(k) == v for k, v in key.items()) and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**key, "sha256": digest}))
        os.replace(tmp, sidecar)
    except OSError:  # a read-only build folder: hash again next time
        tmp.unlink(missing_ok=True)
    return digest


@dataclass(frozen=True)
class PlanFile:
    """A verified plan file read when its engine is first needed; ``read()`` checks its sha256 again (cached) first."""

    path: Path
    sha256: str
    rebuild: str  # the command that rebuilds it, for the sentence when it changed since

    @property
    def size(self) -> int:
        """The plan's bytes (about the device memory its weights take once deserialised)."""
        return self.path.stat().st_size

    def read(self) -> bytes:
        if not self.path.is_file() or cached_sha256(self.path) != self.sha256:
            raise ManifestError(f"the engine {self.path} changed after the build folder was opened; rebuild it with: {self.rebuild}")
        return self.path.read_bytes()


@dataclass(frozen=True)
class VerifiedPlans:
    """The plans to deserialise, per graph (bytes, or a :class:`PlanFile` for on-demand graphs), with what loading and error messages need."""

    plans: dict[str, "bytes | PlanFile"]
    profiles: dict[str, Profile]
    precision: Precision  # per graph, as chosen
    version_compatible: bool  # built with svsr-export --lean: needs the lean runtime and host code allowed

    def rebuild(self, manifest: Mapping[str, Any], build_dir: str | Path, profile: Profile | None, *, lean: bool) -> str:
        """The svsr-export command that rebuilds these plans for ``profile`` (``--lean`` where they are or must be lean)."""
        return rebuild_command(manifest, build_dir, self.precision, profile, lean=lean or self.version_compatible)


def skipped_by_profile(engines: Mapping[str, Any], graph: str) -> str | None:
    """Why the build made no engine of ``graph`` on purpose (a smaller flow scale its profile's frames are too small for), or None.

    ``svsr-export`` skips ``flow_x2`` / ``flow_x1`` where no frame of the profile can run RAFT at that
    scale (``Profile.skip_reason``); such a build is complete, and a run at that scale is refused then.
    """
    if graph not in ON_DEMAND_GRAPHS or any(r.get("graph") == graph for r in engines.values()):
        return None
    for record in engines.values():
        try:
            reason = Profile.from_json(record["profile"]).skip_reason(graph)
        except (KeyError, TypeError, ValueError, InputError):  # a malformed record: its own check says so
            continue
        if reason is not None:
            return reason
    return None


def verify_plans(build_dir: str | Path, manifest: Mapping[str, Any], precision: PrecisionLike, env: MachineEnv) -> VerifiedPlans:
    """Read the build folder's plans for ``precision`` after checking their records and files (ManifestError, one sentence, otherwise).

    A flow graph the build skipped on purpose (:func:`skipped_by_profile`) has no plan; a run that needs it is refused by the backend.
    """
    build_dir = Path(build_dir)
    engines = validate_engines(manifest.get("engines") or {}, str(build_dir / "manifest.json"))
    chosen = choose_precision(manifest, precision)
    plans: dict[str, bytes | PlanFile] = {}
    profiles: dict[str, Profile] = {}
    compatible = False
    for graph, prec in chosen.per_graph().items():
        record = engines.get(engine_key(graph, prec))
        if record is None and skipped_by_profile(engines, graph):
            continue
        if record is None:
            raise ManifestError(
                f"{build_dir} has no {prec} TensorRT engine for the {graph} graph; build it with: "
                f"{rebuild_command(manifest, build_dir, chosen, lean=env.lean)} (plus --resolution WxH or --min/--max)."
            )
        # before anything reads it (the sha cache writes beside it): the plan stays inside the build folder
        path = inside_build_folder(build_dir, record["file"], f"the {graph} {prec} engine plan", str(build_dir / "manifest.json"))
        profile = Profile.from_json(record["profile"])
        onnx_sha = onnx_entry(manifest, graph, prec, build_dir)["sha256"]
        check_record(record, env, manifest, build_dir, onnx_sha256=onnx_sha, precisions=chosen)
        lean = env.lean or bool(record.get("lean") or record.get("version_compatible"))
        command = rebuild_command(manifest, build_dir, chosen, profile, lean=lean)
        if not path.is_file():
            raise ManifestError(f"the {graph} {prec} engine {path} named in the manifest is missing; rebuild it with: {command}")
        if cached_sha256(path) != record["sha256"]:
            raise ManifestError(f"the {graph} {prec} engine {path} does not match its recorded sha256; rebuild it with: {command}")
        plans[graph] = PlanFile(path, record["sha256"], command) if graph in ON_DEMAND_GRAPHS else path.read_bytes()
        profiles[graph] = profile
        compatible = compatible or bool(record.get("version_compatible"))
    return VerifiedPlans(plans, profiles, chosen, compatible)
