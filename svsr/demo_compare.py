"""``python -m svsr.demo_compare INPUT UPSCALED OUTPUT``: bicubic | svsr side by side (what ``make demo`` writes)."""

from __future__ import annotations

import argparse
import sys

import svsr.api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svsr.demo_compare", description=__doc__)
    parser.add_argument("input", help="the low-resolution video (or frame folder) that was upscaled")
    parser.add_argument("upscaled", help="svsr's output for it")
    parser.add_argument("output", help="comparison video to write (e.g. compare.mp4) or a folder for PNG frames")
    args = parser.parse_args(argv)
    try:
        print(svsr.api.write_comparison_video(args.input, args.upscaled, args.output))
    except svsr.api.SvsrError as exc:
        print(f"svsr.demo_compare: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
