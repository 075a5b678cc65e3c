"""Measuring a clip against its reference: per-frame and mean figures, as JSON and as a table.

:func:`measure` streams the clips (two frames in memory per clip), so long videos are fine; the
optional LR input adds a bicubic x4 baseline measured the same way.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svsr.contract.errors import InputError
from svsr.contract.sizes import SCALE
from svsr.quality.fidelity import FIDELITY_CONVENTION, luma, psnr, ssim
from svsr.quality.frames import check_clips, frames_in_lockstep
from svsr.quality.perceptual import PerceptualMetric, perceptual_metrics
from svsr.quality.temporal import TEMPORAL_CONVENTION, FlowEstimator, GraphFlow, flow_difference, resize_bicubic, warping_error

__all__ = ["QualityReport", "measure"]

FIDELITY = ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y")
TEMPORAL = ("tof", "warping_error")


@dataclass
class QualityReport:
    """Figures of one output clip against its reference (and of the bicubic baseline, with an input).

    ``per_frame``: one dict per frame (``frame`` index, then each metric; temporal ones are None for
    frame 0); ``mean``: each metric's mean over the frames that have it; ``notes``: one line per metric
    that could not run; ``conventions``: how each figure is computed.
    """

    output: str
    reference: str
    width: int
    height: int
    per_frame: list[dict[str, Any]]
    mean: dict[str, float | None]
    notes: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    input: str | None = None
    model: str | None = None
    bicubic: dict[str, Any] | None = None

    @property
    def metrics(self) -> list[str]:
        return [k for k in self.per_frame[0] if k != "frame"] if self.per_frame else []

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; an infinite PSNR (identical frames) is written as null."""
        return _finite({
            "output": self.output, "reference": self.reference, "input": self.input, "model": self.model,
            "frames": len(self.per_frame), "width": self.width, "height": self.height,
            "conventions": self.conventions, "notes": self.notes, "mean": self.mean, "per_frame": self.per_frame,
            "bicubic": self.bicubic,
        })  # fmt: skip

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def summary(self) -> str:
        """The means as an aligned table (svsr and, with an input, bicubic), then conventions and notes."""
        rows = [("", *self.metrics), ("output", *(_number(self.mean[m]) for m in self.metrics))]
        if self.bicubic is not None:
            rows.append(("bicubic", *(_number(self.bicubic["mean"].get(m)) for m in self.metrics)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
        lines.insert(0, f"{len(self.per_frame)} frames of {self.width}x{self.height}, means over frames:")
        lines += [f"{name}: {text}" for name, text in self.conventions.items()]
        return "\n".join(lines + self.notes)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return data


def _fidelity(frame: np.ndarray, reference: np.ndarray, crop_border: int) -> dict[str, float]:
    y_out, y_ref = luma(frame), luma(reference)
    return {
        "psnr_rgb": psnr(frame, reference, crop_border), "psnr_y": psnr(y_out, y_ref, crop_border),
        "ssim_rgb": ssim(frame, reference, crop_border), "ssim_y": ssim(y_out, y_ref, crop_border),
    }  # fmt: skip


def _means(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    means = {}
    for metric in (k for k in rows[0] if k != "frame"):
        values = [row[metric] for row in rows if row[metric] is not None]
        means[metric] = float(np.mean(values)) if values else None
    return means


def measure(
    output: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    *,
    input: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    perceptual: bool = True,
    crop_border: int = 0,
    fps: Fraction | int | float | None = None,
    flow: FlowEstimator | None = None,
    perceptual_loader: Callable[[], tuple[list[PerceptualMetric], list[str]]] = perceptual_metrics,
    progress: Callable[[int], None] | None = None,
) -> QualityReport:
    """Measure ``output`` against ``reference`` (videos or frame folders of the same size and length).

    ``input``: the LR clip (the reference shrunk 4x) for a bicubic x4 baseline; ``model``: a build
    folder whose ``flow`` graph gives tOF and the warping error (``flow`` replaces it, e.g. in tests);
    ``perceptual``: LPIPS and DISTS where they can run offline; ``crop_border``: pixels dropped from
    every side for PSNR/SSIM. Raises InputError (one sentence) for clips that do not match.
    """
    clips = check_clips(output, reference, input, fps=fps)
    width, height = clips[0][1].width, clips[0][1].height
    if crop_border < 0 or min(width, height) - 2 * crop_border < 11:
        raise InputError(f"a crop border of {crop_border} px does not fit {width}x{height} frames; give 0 or more, leaving at least 11 px for SSIM.")
    notes: list[str] = []
    metrics: list[PerceptualMetric] = []
    if perceptual:
        metrics, notes = perceptual_loader()
    owned_flow = None
    if flow is None and model is not None:
        flow = owned_flow = GraphFlow(model)
    if isinstance(flow, GraphFlow) and (width % SCALE or height % SCALE or min(width, height) < 128):
        notes.append(f"tOF and warping error skipped: {width}x{height} frames have no LR size the flow graph takes (sides multiples of {SCALE}, at least 128 px).")
        flow = None
    elif flow is None:
        notes.append("tOF and warping error skipped: give a build folder (--model BUILD) whose flow graph measures motion.")
    conventions = {"fidelity": FIDELITY_CONVENTION + (f"; {crop_border} px cropped from every side" if crop_border else "")}
    if flow is not None:
        conventions["temporal"] = TEMPORAL_CONVENTION
    if metrics:
        conventions["perceptual"] = "LPIPS (AlexNet, torchmetrics) and DISTS (VGG16, torchmetrics) on RGB in [0, 1]; lower is better"
    if input is not None:
        conventions["bicubic"] = "the input upscaled 4x with Pillow's bicubic filter, measured the same way"

    rows: dict[str, list[dict[str, Any]]] = {"output": [], "bicubic": []}
    previous: dict[str, np.ndarray] = {}
    try:
        for index, frames in enumerate(frames_in_lockstep(clips, fps=fps)):
            candidates = {"output": frames[0]}
            if input is not None:
                candidates["bicubic"] = resize_bicubic(frames[2], width, height)
            reference_frame = frames[1]
            flows = {}
            if flow is not None and index > 0:
                names = list(candidates)
                pairs = [(candidates[n], previous[n]) for n in names] + [(reference_frame, previous["reference"])]
                estimated = flow(pairs)
                flows = dict(zip(names + ["reference"], estimated))
            for name, frame in candidates.items():
                row: dict[str, Any] = {"frame": index, **_fidelity(frame, reference_frame, crop_border)}
                for metric in metrics:
                    row[metric.name] = metric(frame, reference_frame)
                if flow is not None:
                    row["tof"] = flow_difference(flows[name], flows["reference"]) if flows else None
                    row["warping_error"] = warping_error(frame, previous[name], flows["reference"]) if flows else None
                rows[name].append(row)
            previous = {**candidates, "reference": reference_frame}
            if progress is not None:
                progress(index + 1)
    finally:
        if owned_flow is not None:
            owned_flow.close()
    if not rows["output"]:
        raise InputError(f"{output} has no frames to measure; give a video or a folder of PNG/JPEG frames.")
    bicubic = {"mean": _means(rows["bicubic"]), "per_frame": rows["bicubic"]} if rows["bicubic"] else None
    return QualityReport(
        output=str(output), reference=str(reference), width=width, height=height, per_frame=rows["output"],
        mean=_means(rows["output"]), notes=notes, conventions=conventions, input=None if input is None else str(input),
        model=None if model is None else str(model), bicubic=bicubic,
    )  # fmt: skip
