"""Hostile inputs, for longer: the fuzzer of tests/test_fuzz.py over more cases, with a time budget.

Each case mutates the headers and first packets of a small valid MP4, MOV, WebM, MKV or AVI file, or
one frame of a PNG/JPEG folder (see tests/test_fuzz.py), then checks it through the cheap door
(``probe`` + a full ``FrameReader`` decode, in process) and, for every case the door decoded or
refused only while decoding, plus every ``--cli-every``-th case, through the real ``svsr-run`` in a
subprocess. Prints how many cases were tried per format and outcome (decoded / refused / FAILED),
and every failure with its seed and case number (``--case N`` replays one).

    python benchmarks/fuzz_containers.py                              # 2000 cases or 5 minutes
    python benchmarks/fuzz_containers.py --cases 20000 --seconds 1800 --seed 3 --json build/fuzz.json
    python benchmarks/fuzz_containers.py --no-cli --cases 50000       # the cheap door only
    python benchmarks/fuzz_containers.py --seed 3 --case 1234 --keep build/fuzz-case  # replay one case
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVSR_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.test_fuzz

from tests.test_fuzz import (  # noqa: E402
    DECODED,
    FAILED,
    FORMATS,
    REFUSED,
    Result,
    make_seeds,
    remove_case,
    run_cli_cases,
    run_door_cases,
)

BATCH = 50


def _wants_cli(result: Result, every: int) -> bool:
    if result.door.kind == FAILED:
        return False  # already a failure; its input is kept for replaying
    late = result.door.kind == REFUSED and result.door.stage == "decode"
    return result.door.kind == DECODED or late or (every > 0 and result.case.index % every == 0)


def _table(results: list[Result]) -> str:
    door = Counter((r.case.fmt, r.door.kind) for r in results)
    cli = Counter((r.case.fmt, r.cli.kind) for r in results if r.cli is not None)
    head = "| format | cases | decoded | refused | FAILED | svsr-run | upscaled | refused | FAILED |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt in [*FORMATS, "all"]:
        pick = (lambda f: True) if fmt == "all" else (lambda f, fmt=fmt: f == fmt)
        n = sum(1 for r in results if pick(r.case.fmt))
        d = {k: sum(v for (f, kk), v in door.items() if pick(f) and kk == k) for k in (DECODED, REFUSED, FAILED)}
        c = {k: sum(v for (f, kk), v in cli.items() if pick(f) and kk == k) for k in (DECODED, REFUSED, FAILED)}
        name = f"**{fmt}**" if fmt == "all" else fmt
        lines.append(f"| {name} | {n} | {d[DECODED]} | {d[REFUSED]} | {d[FAILED]} | {sum(c.values())} | "
                     f"{c[DECODED]} | {c[REFUSED]} | {c[FAILED]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases to try at most (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="fuzzer seed (default 0)")
    parser.add_argument("--seconds", type=float, default=300, help="stop starting new cases after this long (default 300)")
    parser.add_argument("--case", type=int, help="replay this one case (with --keep, its input stays there)")
    parser.add_argument("--model", type=Path, help="build folder for svsr-run (default: export the tiny preset to a temporary folder)")
    parser.add_argument("--no-cli", action="store_true", help="the cheap door only (probe + FrameReader in process)")
    parser.add_argument("--cli-every", type=int, default=10,
                        help="also run svsr-run on every N-th case the door refused at probe (default 10; 0: none)")
    parser.add_argument("--workers", type=int, default=2, help="svsr-run processes at a time (default 2)")
    parser.add_argument("--door-timeout", type=float, default=10, help="seconds per probe + decode (default 10)")
    parser.add_argument("--cli-timeout", type=float, default=120, help="seconds per svsr-run (default 120)")
    parser.add_argument("--keep", type=Path, help="folder to keep the inputs and outputs of failed cases in")
    parser.add_argument("--json", type=Path, help="also write the counts and failures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="svsr-fuzz-") as tmp:
        tmp_path = Path(tmp)
        work = args.keep or tmp_path / "cases"
        work.mkdir(parents=True, exist_ok=True)
        seeds = make_seeds(tmp_path / "seeds")
        model = args.model
        if model is None and not args.no_cli:
            import svsr

            print("exporting the tiny preset ...", file=sys.stderr)
            model = tmp_path / "build"
            svsr.export_model("preset:tiny", model, engines=False)

        start = time.monotonic()
        deadline = start + args.seconds
        shown = start
        indices = [args.case] if args.case is not None else list(range(args.cases))
        keep_all = args.case is not None and args.keep is not None
        results: list[Result] = []
        for at in range(0, len(indices), BATCH):
            if time.monotonic() > deadline:
                break
            batch = run_door_cases(seeds, work, args.seed, indices[at : at + BATCH], deadline=deadline,
                                   timeout=args.door_timeout, keep=lambda r: True)
            if not args.no_cli:
                chosen = [r for r in batch if _wants_cli(r, args.cli_every)]
                run_cli_cases(chosen, model, work, workers=args.workers, timeout=args.cli_timeout, deadline=deadline)
            for r in batch:
                if not (r.failed and args.keep) and not keep_all:
                    remove_case(r.case)
            results += batch
            if time.monotonic() - shown > 30:
                shown = time.monotonic()
                print(f"  {len(results)} cases, {sum(r.failed for r in results)} failed, {shown - start:.0f} s",
                      file=sys.stderr)
        seconds = time.monotonic() - start

    table = _table(results)
    ran_cli = sum(r.cli is not None for r in results)
    print(f"\nfuzz_containers: seed {args.seed}, {len(results)} cases ({ran_cli} through svsr-run) in {seconds:.0f} s\n")
    print(table)
    failures = [r for r in results if r.failed]
    for r in failures:
        print("\n" + r.report())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"seed": r.case.seed, "case": r.case.index, "format": r.case.fmt, "mutation": r.case.mutation,
             "victim": r.case.victim or None, "door": r.door.kind, "door_stage": r.door.stage,
             "door_seconds": round(r.door.seconds, 4),
             "cli": ("upscaled" if r.cli.kind == DECODED else r.cli.kind) if r.cli else None, "cli_seconds": round(r.cli.seconds, 2) if r.cli else None,
             **({"detail": r.report()} if r.failed else {})}
            for r in results
        ]
        args.json.write_text(json.dumps({"seed": args.seed, "seconds": round(seconds, 1), "cases": rows}, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
