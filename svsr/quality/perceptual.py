"""LPIPS and DISTS through torchmetrics, only where their backbone weights are already cached.

LPIPS uses the AlexNet backbone (LPIPS's default; its linear layers ship inside torchmetrics) and
DISTS the VGG16 one; both backbones are torchvision ImageNet weights, which torchvision would
download into the torch hub cache. A metric never downloads here: when torchmetrics is missing or a
backbone file is not in the cache, :func:`perceptual_metrics` returns one line naming what to install
or which file to place where, and the other metrics carry on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import numpy as np

__all__ = ["PERCEPTUAL_METRICS", "PerceptualMetric", "hub_checkpoints", "perceptual_metrics"]

# metric -> (torchmetrics class, torchvision weights enum holding the backbone's file and url)
PERCEPTUAL_METRICS = {
    "lpips": ("torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity", "AlexNet_Weights"),
    "dists": ("torchmetrics.image.dists.DeepImageStructureAndTextureSimilarity", "VGG16_Weights"),
}


def hub_checkpoints() -> Path:
    """The torch hub cache's checkpoints folder, as torch.hub.get_dir() finds it (without importing torch)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home is None:
        cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        torch_home = os.path.join(cache, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


@dataclass
class PerceptualMetric:
    """One loaded perceptual metric: call it on two uint8 HxWx3 frames (output, reference)."""

    name: str
    model: Any = field(repr=False)

    def __call__(self, output: np.ndarray, reference: np.ndarray) -> float:
        import torch

        def batch(frame: np.ndarray) -> Any:
            # both metrics take (N, 3, H, W) in [0, 1] with normalize=True (LPIPS) / as is (DISTS)
            return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[None].float() / 255.0

        with torch.no_grad():
            self.model.reset()
            self.model.update(batch(output), batch(reference))
            return float(self.model.compute())


def _load(name: str, class_path: str) -> Any:
    from importlib import import_module

    module, cls = class_path.rsplit(".", 1)
    metric_class = getattr(import_module(module), cls)
    if name == "lpips":
        return metric_class(net_type="alex", normalize=True)
    return metric_class()


def perceptual_metrics(names: tuple[str, ...] = tuple(PERCEPTUAL_METRICS), *,
                       loader: Callable[[str, str], Any] = _load) -> tuple[list[PerceptualMetric], list[str]]:  # fmt: skip
    """The metrics of ``names`` that can run offline here, and one line for each that cannot."""
    try:
        import torchmetrics  # noqa: F401
        import torchvision.models as models
    except ImportError:
        return [], [f"{', '.join(n.upper() for n in names)} skipped: they need torchmetrics and torchvision; pip install 'svsr[eval]'."]
    metrics, notes = [], []
    for name in names:
        class_path, weights_name = PERCEPTUAL_METRICS[name]
        url = getattr(models, weights_name).DEFAULT.url
        file = hub_checkpoints() / Path(urlparse(url).path).name
        if not file.is_file():
            notes.append(f"{name.upper()} skipped: its backbone weights are not in the torch hub cache; place {url} at {file} (nothing is downloaded).")
            continue
        metrics.append(PerceptualMetric(name, loader(name, class_path)))
    return metrics, notes
