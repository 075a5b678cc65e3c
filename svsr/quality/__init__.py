"""Quality of an upscaled clip against its reference: the room behind ``svsr-eval`` and ``svsr.api.evaluate``.

Its modules, one job each: ``fidelity`` (PSNR/SSIM on RGB and luma, numpy), ``perceptual`` (LPIPS
and DISTS through torchmetrics, only with cached backbone weights), ``temporal`` (tOF and warping
error through a build folder's ``flow`` graph on ONNX Runtime), ``frames`` (clips checked and read
in lockstep through :mod:`svsr.runtime.video`), ``report`` (:func:`measure`, :class:`QualityReport`)
and ``plot`` (the per-frame chart, matplotlib imported lazily). Code outside imports from here.
"""

from svsr.quality.fidelity import FIDELITY_CONVENTION, luma, psnr, ssim
from svsr.quality.perceptual import PerceptualMetric, hub_checkpoints, perceptual_metrics
from svsr.quality.plot import check_plotting, plot_report
from svsr.quality.report import QualityReport, measure
from svsr.quality.temporal import TEMPORAL_CONVENTION, FlowEstimator, GraphFlow, flow_difference, resize_bicubic, warp, warping_error

__all__ = [
    "FIDELITY_CONVENTION",
    "TEMPORAL_CONVENTION",
    "FlowEstimator",
    "GraphFlow",
    "PerceptualMetric",
    "QualityReport",
    "check_plotting",
    "flow_difference",
    "hub_checkpoints",
    "luma",
    "measure",
    "perceptual_metrics",
    "plot_report",
    "psnr",
    "resize_bicubic",
    "ssim",
    "warp",
    "warping_error",
]
