"""A chart of per-frame PSNR (RGB and Y) and tOF; matplotlib is imported only when one is drawn."""

from __future__ import annotations

import os
from pathlib import Path

from svsr.contract.errors import MissingDependencyError
from svsr.quality.report import QualityReport

__all__ = ["check_plotting", "plot_report"]


def check_plotting() -> None:
    """Raise MissingDependencyError (one sentence) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib; pip install 'svsr[eval]' (or matplotlib), or leave --plot out.") from None


def plot_report(report: QualityReport, path: str | os.PathLike[str]) -> Path:
    """Write a PNG: PSNR per frame on top, tOF per frame below (when measured); bicubic dashed."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    has_tof = "tof" in report.metrics
    figure, axes = plt.subplots(2 if has_tof else 1, 1, figsize=(8, 6 if has_tof else 3.5), sharex=True, squeeze=False)
    series = [("output", report.per_frame, "-")]
    if report.bicubic is not None:
        series.append(("bicubic", report.bicubic["per_frame"], "--"))
    for label, rows, style in series:
        frames = [row["frame"] for row in rows]
        for metric, name, color in (("psnr_rgb", "PSNR RGB", "tab:blue"), ("psnr_y", "PSNR Y", "tab:orange")):
            axes[0, 0].plot(frames, [row[metric] for row in rows], style, color=color, marker=".", label=f"{label} {name}")
        if has_tof:
            timed = [row for row in rows if row["tof"] is not None]
            axes[1, 0].plot([row["frame"] for row in timed], [row["tof"] for row in timed], style, color="tab:green", marker=".", label=f"{label} tOF")
    axes[0, 0].set_ylabel("PSNR (dB), higher is better")
    axes[0, 0].legend(fontsize="small")
    if has_tof:
        axes[1, 0].set_ylabel("tOF (px), lower is better")
        axes[1, 0].legend(fontsize="small")
    axes[-1, 0].set_xlabel("frame")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"{Path(report.output).name} against {Path(report.reference).name}")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
