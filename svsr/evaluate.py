"""svsr-eval: quality of an upscaled clip against its reference, mapped onto :func:`svsr.api.evaluate`.

Prints the means (and the bicubic baseline with ``--input``), the conventions and a line for each
metric that could not run; ``--json`` writes per-frame and mean figures, ``--plot`` a PNG chart.
Bad input is one sentence and exit 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import NoReturn, Sequence

from svsr.contract.errors import SvsrError

__all__ = ["eval_parser", "main"]

INTERNAL_ERROR = 70

DESCRIPTION = """\
Measure OUTPUT against REFERENCE (videos or folders of PNG/JPEG frames, same size and frame count),
per frame and as means over frames:
  PSNR and SSIM on RGB and on luma Y (ITU-R BT.601 as MATLAB's rgb2ycbcr, the papers' convention),
    data range 255, SSIM with an 11x11 Gaussian window (sigma 1.5);
  LPIPS (AlexNet) and DISTS (VGG16) through torchmetrics, where their backbone weights are in the torch
    hub cache (nothing is downloaded; otherwise one line names the file to place and where);
  with --model BUILD: tOF (mean |flow(out) - flow(ref)| between consecutive frames, in output pixels) and
    the warping error (MSE of each output frame against the previous one warped by the reference's flow),
    with flows from BUILD's own flow graph on ONNX Runtime; the 4x frames are shrunk to LR size with
    Pillow's bicubic filter first, as the graph takes LR frames (sides multiples of 4, at least 128 px);
  with --input LR: the same figures for LR upscaled 4x with Pillow's bicubic filter (the baseline).
"""


class _SentenceParser(argparse.ArgumentParser):
    """argparse whose usage errors are one sentence and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help.\n")


def eval_parser() -> argparse.ArgumentParser:
    p = _SentenceParser(prog="svsr-eval", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", metavar="OUTPUT", help="the upscaled video or frame folder")
    p.add_argument("reference", metavar="REFERENCE", help="the ground truth, same size and frame count")
    p.add_argument("--input", metavar="LR", help="the low-resolution input (REFERENCE shrunk 4x): adds the bicubic baseline")
    p.add_argument("--model", metavar="BUILD", help="a build folder (svsr-export) whose flow graph gives tOF and the warping error")
    p.add_argument("--json", metavar="F", help="write per-frame and mean figures as JSON")
    p.add_argument("--plot", metavar="F.png", help="write a PNG of per-frame PSNR and tOF (needs matplotlib)")
    p.add_argument("--crop-border", type=int, default=0, metavar="N", help="drop N pixels from every side for PSNR/SSIM (default 0)")
    p.add_argument("--no-perceptual", action="store_true", help="skip LPIPS and DISTS (no torch import)")
    p.add_argument("--fps", type=float, help="frame rate of frame folders (they have none of their own)")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``svsr-eval``: returns the exit status (0, 2 for bad input, 70 for an internal error)."""
    try:
        args = eval_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from svsr.api import evaluate

    try:
        result = evaluate(
            args.output, args.reference, input=args.input, model=args.model, json_path=args.json, plot=args.plot,
            perceptual=not args.no_perceptual, crop_border=args.crop_border, fps=args.fps,
            report=lambda line: print(line, file=sys.stderr),
        )  # fmt: skip
    except SvsrError as exc:
        return _fail(str(exc), exc.exit_code, args.debug)
    except Exception as exc:  # noqa: BLE001 - never a bare traceback
        what = " ".join(str(exc).split())[:300].rstrip(".") or "no message"
        return _fail(f"internal error ({type(exc).__name__}: {what}); rerun with --debug to see the traceback and please report it.", INTERNAL_ERROR, args.debug)
    print(result.summary())
    return 0


def _fail(sentence: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"svsr-eval: error: {sentence}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
