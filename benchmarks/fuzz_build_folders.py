"""Build folders from elsewhere, fuzzed: mutated manifests and graph headers of a tiny build (issue 21).

Each case copies a tiny build folder (tiny preset, float32 graphs, plus TensorRT engine records with
stand-in plan files so the engine checks have something to read), mutates it, and opens it the way
svsr-run does: ``load_manifest`` (paths, bounds, sha256, ONNX external data), an ONNX Runtime backend
on the CPU for all four graphs, then the TensorRT plan checks (``verify_plans``, without TensorRT: the
plans are read, not deserialised). Passing means: opened (OK), or refused with one sentence of a known
error class (an ``SvsrError``: one line, not the internal-error sentence).
Anything else (a traceback, a crash of the worker process) is a FAILURE, printed with its case number.

Mutations: a manifest field set to NaN / Infinity / a negative, zero or absurd number / a wrong type /
a path out of the folder (``..``, absolute, symbolic link) / deleted; bytes of manifest.json flipped or
cut; bytes of a graph file's first 4 KiB (the protobuf header) flipped, zeroed or cut, the file
truncated, or an initializer's external data pointed elsewhere, with the manifest's sha256 updated half
of the time so the damage reaches the ONNX reader and ONNX Runtime.

    python benchmarks/fuzz_build_folders.py --cases 500 --seed 1
    python benchmarks/fuzz_build_folders.py --seed 1 --case 17 --keep build/fuzz-build-case  # replay one case
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OK, REFUSED, FAILED = "OK", "refused", "FAILED"
H100 = ("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
ABSURD = [float("nan"), float("inf"), float("-inf"), -1, 0, 10**12, 10**30, 1e308, -1e308, "", "x" * 5000, None, [], {}, True, "../x", "/etc/passwd"]


def make_base(folder: Path) -> Path:
    """The tiny preset exported into ``folder``, with engine records for every graph (stand-in plans)."""
    import svsr
    from svsr.contract.engine_records import BuildEnvironment, cache_key, make_record, plan_filename
    from svsr.contract.manifest import load_manifest, sha256_file, write_manifest
    from svsr.contract.profiles import Profile

    svsr.export_model("preset:tiny", folder, engines=False)
    manifest = load_manifest(folder)
    env, profile = BuildEnvironment(*H100), Profile.static(36, 44)
    (folder / "engines").mkdir(exist_ok=True)
    for graph, entry in manifest["graphs"].items():
        key = cache_key(entry["sha256"], env, profile)
        rel = f"engines/{plan_filename(graph, 'fp32', key)}"
        (folder / rel).write_bytes(f"stand-in plan {graph}".encode())
        manifest["engines"][f"{graph}.fp32"] = make_record(
            graph=graph, precision="fp32", plan_file=rel, plan_sha256=sha256_file(folder / rel), plan_size=(folder / rel).stat().st_size,
            onnx_file=entry["file"], onnx_sha256=entry["sha256"], onnx_source_sha256=entry["sha256"], env=env, profile=profile,
            key=key, device_memory_bytes=1000,
        )
    write_manifest(folder, manifest)
    return folder


def _leaves(data, path=()):
    """Every (path, value) in a JSON document, containers included."""
    yield path, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield from _leaves(value, (*path, key))


def _set(data, path, value) -> None:
    for key in path[:-1]:
        data = data[key]
    if value is _DELETE and isinstance(data, dict):
        del data[path[-1]]
    elif value is not _DELETE:
        data[path[-1]] = value


_DELETE = object()


def mutate(build: Path, outside: Path, rng: random.Random) -> str:
    """Damage ``build`` in one way; return what was done."""
    from svsr.contract.manifest import sha256_file

    manifest_path = build / "manifest.json"
    data = json.loads(manifest_path.read_text())
    kind = rng.choice(["field", "field", "path", "manifest_bytes", "graph_header", "graph_header", "external_data"])
    if kind == "field":
        path, _ = rng.choice([lp for lp in _leaves(data) if lp[0]])
        value = rng.choice([*ABSURD, _DELETE])
        _set(data, path, value)
        what = f"{'/'.join(map(str, path))} = {'deleted' if value is _DELETE else repr(value)[:40]}"
    elif kind == "path":
        files = [p for p, v in _leaves(data) if p and p[-1] in ("file", "external_data", "ort_cpu_file") and isinstance(v, str)]
        path = rng.choice(files)
        target = outside / "stolen.onnx"
        shutil.copy(build / "flow.onnx", target)
        how = rng.choice(["dotdot", "absolute", "symlink", "symlink_dir"])
        if how == "dotdot":
            value = "../" + outside.name + "/stolen.onnx"
        elif how == "absolute":
            value = str(target)
        elif how == "symlink":
            (build / "link.onnx").symlink_to(target)
            value = "link.onnx"
        else:
            (build / "linkdir").symlink_to(outside)
            value = "linkdir/stolen.onnx"
        _set(data, path, value)
        what = f"{'/'.join(map(str, path))} -> {how}"
    elif kind == "manifest_bytes":
        raw = bytearray(manifest_path.read_bytes())
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw))]
        else:
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        manifest_path.write_bytes(bytes(raw))
        return "manifest.json bytes"
    else:
        graph = rng.choice(["flow", "denoise", "guide", "decode"])
        file = build / data["graphs"][graph]["file"]
        raw = bytearray(file.read_bytes())
        if kind == "external_data":
            raw = _point_external(file, outside, rng)
            what = f"{graph} external data -> elsewhere"
        elif rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw))]
            what = f"{graph} truncated at {len(raw)}"
        else:
            for _ in range(rng.randint(1, 16)):
                at = rng.randrange(min(4096, len(raw)))
                raw[at] = 0 if rng.random() < 0.3 else rng.randrange(256)
            what = f"{graph} header bytes"
        file.write_bytes(bytes(raw))
        if rng.random() < 0.5:
            data["graphs"][graph]["sha256"] = sha256_file(file)
            what += " (sha256 updated)"
    manifest_path.write_text(json.dumps(data))
    return what


def _point_external(file: Path, outside: Path, rng: random.Random) -> bytes:
    import onnx

    model = onnx.load(str(file))
    tensor = rng.choice(list(model.graph.initializer))
    data = outside / "weights.data"
    data.write_bytes(tensor.raw_data or b"\0" * 16)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", rng.choice(["../" + outside.name + "/weights.data", str(data)])
    return model.SerializeToString()


def open_like_svsr_run(build: str) -> tuple[str, str]:
    """(OK | refused | FAILED, detail) of opening ``build`` as svsr-run does (runs in the worker process)."""
    import traceback

    from svsr.contract.engine_records import MachineEnv
    from svsr.contract.errors import SvsrError
    from svsr.contract.manifest import load_manifest
    from svsr.runtime.sampling import OrtBackend
    from svsr.runtime.sampling.trt_plans import verify_plans

    try:
        manifest = load_manifest(build)
        OrtBackend(build, manifest, device="cpu", threads=1).close()
        verify_plans(build, manifest, "fp32", MachineEnv(H100[0], False, H100[1], H100[2]))
        return OK, ""
    except SvsrError as exc:
        text = str(exc)
        # one line, and not the sentence kept for real bugs (sentences may end in a command, without a period)
        if not text.strip() or "\n" in text or "internal error" in text:
            return FAILED, f"{type(exc).__name__} is not one sentence: {text!r}"
        return REFUSED, f"{type(exc).__name__}: {text}"
    except Exception:  # noqa: BLE001 - every other exception is what this benchmark looks for
        return FAILED, traceback.format_exc(limit=6)


def run(cases: int, seed: int, only: int | None, keep: Path | None, base: Path | None) -> int:
    work = Path(tempfile.mkdtemp(prefix="svsr-fuzz-build-"))
    try:
        base = base or make_base(work / "base")
        results = []
        pool = ProcessPoolExecutor(max_workers=1)
        start = time.perf_counter()
        for index in range(cases) if only is None else [only]:
            rng = random.Random(f"{seed}:{index}")
            case = work / f"case{index}"
            build, outside = case / "build", case / "outside"
            outside.mkdir(parents=True)
            shutil.copytree(base, build)
            what = mutate(build, outside, rng)
            try:
                kind, detail = pool.submit(open_like_svsr_run, str(build)).result(timeout=120)
            except BrokenProcessPool:
                kind, detail = FAILED, "the worker process crashed (a signal: segfault or abort)"
                pool = ProcessPoolExecutor(max_workers=1)
            results.append((index, what, kind, detail))
            if only is not None or kind == FAILED:
                print(f"case {index} [{what}]: {kind} {detail}")
            if keep is not None and only is not None:
                shutil.copytree(case, keep, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(case)
        pool.shutdown()
        counts = Counter(kind for _, _, kind, _ in results)
        reasons = Counter(d.split(":")[0] for _, _, k, d in results if k == REFUSED)
        seconds = time.perf_counter() - start
        print(f"{len(results)} cases in {seconds:.0f} s (seed {seed}): {counts[OK]} OK, {counts[REFUSED]} refused, {counts[FAILED]} failures")
        print("refused as: " + ", ".join(f"{k} {n}" for k, n in reasons.most_common()))
        return 1 if counts[FAILED] else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--case", type=int, help="replay one case")
    parser.add_argument("--keep", type=Path, help="with --case: copy the damaged folder here")
    parser.add_argument("--base", type=Path, help="a tiny build made by an earlier run (default: export one now)")
    args = parser.parse_args()
    return run(args.cases, args.seed, args.case, args.keep, args.base)


if __name__ == "__main__":
    sys.exit(main())
