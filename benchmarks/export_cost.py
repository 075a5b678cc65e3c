"""Export time and peak memory per graph (issue: the `full` preset must export on a 24 GiB machine).

Each graph is exported in its own child process so its peak RSS is its own:

    python benchmarks/export_cost.py --preset full --out build/full      # minutes, ~3 GB of files
    python benchmarks/export_cost.py --preset tiny --out build/tiny --json build/tiny_export.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from child_process import run_measured

GRAPHS = ("flow", "denoise", "guide", "decode")


def child(checkpoint: str, out: str, graph: str, opset: int) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from svsr.export.exporter import export_graph
    from svsr.reference.checkpoint import load_components

    components = load_components(checkpoint)
    entry, result = export_graph(components, graph, Path(out), opset)
    print(json.dumps({"size_bytes": result.size_bytes, "flops": entry["flops"]["per_call"], "graph_seconds": result.seconds}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("CHECKPOINT", "OUT", "GRAPH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.opset)
        return 0

    from svsr.reference.presets import write_preset

    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint"
    if not (checkpoint / "svsr_preset.json").exists():
        start = time.perf_counter()
        write_preset(args.preset, checkpoint)
        print(f"wrote the {args.preset} preset in {time.perf_counter() - start:.1f} s")
    rows = []
    for graph in GRAPHS:
        measured = run_measured(
            [sys.executable, __file__, "--out", str(args.out), "--opset", str(args.opset), "--child", str(checkpoint), str(args.out), graph]
        )
        seconds, stdout = measured.seconds, measured.stdout
        result = json.loads(stdout.strip().splitlines()[-1])
        rows.append({
            "graph": graph,
            "process_seconds": round(seconds, 1),
            "export_seconds": round(result["graph_seconds"], 1),
            "peak_rss_gib": round(measured.peak_rss_gib, 2),
            "size_gb": round(result["size_bytes"] / 1e9, 3),
            "gflop_per_call": round(result["flops"] / 1e9, 1),
        })
        print(json.dumps(rows[-1]))
    print("\n| graph | export s (process s) | peak RSS GiB | file GB | GFLOP/call at LR 36x44 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph']} | {r['export_seconds']} ({r['process_seconds']}) | {r['peak_rss_gib']} | {r['size_gb']} | {r['gflop_per_call']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
