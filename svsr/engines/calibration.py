"""Calibration inputs for AutoCast, recorded from a real run of the PyTorch reference.

The reference's building blocks (``flows``, ``guidance``, ``predict``, ``ddpm_step``,
``decode_output``) are wrapped on one :class:`~svsr.reference.StableVSRReference` instance for the
length of one ``upscale`` call; each wrapper notes the inputs the corresponding exported graph
would receive at that point (see ``svsr/export/wrappers.py`` and ``svsr/runtime/sampler.py``) and
calls the original. Nothing of the algorithm is copied here.

What is recorded (defaults): the bundled sample clip (3 frames, 48x36), a 6-step run, and at the first,
middle and last step both the first frame of the sweep (no TCM, ``tcm_scale`` 0, guidance input
is what the runtime's buffer holds then: the previous sweep's last guidance, zeros at first) and
one TCM-guided call. ``flow`` gets one pair of each direction, ``decode`` the final latents.

Layout (what ModelOpt's ``CalibrationDataProvider`` splits, ``np.array_split(x, n, axis=0)``): one
``.npz`` per graph, one key per graph input, samples concatenated along axis 0. A sample of an
input whose leading dim is ``batch`` is ``(1, ...)``; the fixed-size inputs of ``denoise``
concatenate too, so ``timestep`` is ``(n,)`` and ``step_coeffs`` ``(6 n,)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from svsr.errors import InputError
from svsr.graphs import GRAPH_NAMES, GRAPHS
from svsr.scheduler_math import step_coefficients

DEFAULT_FRAMES = 3
DEFAULT_STEPS = 6
DEFAULT_SEED = 0
DEFAULT_WIDTH, DEFAULT_HEIGHT = 48, 36  # LR; small keeps the reference run short, ranges depend on content more than size
CALIBRATION_DIR = "calibration"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# bump when what gets recorded changes, so typed graphs calibrated the old way are redone
RECORDING_VERSION = 1


@dataclass(frozen=True)
class CalibrationSettings:
    """How the reference run that feeds the calibration is made."""

    num_inference_steps: int = DEFAULT_STEPS
    record_steps: tuple[int, ...] | None = None  # step indices; None = first, middle, last
    tcm_calls_per_step: int = 1  # TCM-guided frames recorded per recorded step (plus the no-TCM first frame)
    flow_pairs: int = 1  # neighbour pairs recorded for flow, each in both directions
    max_decode: int = 2  # final latents recorded for decode
    seed: int = DEFAULT_SEED  # numpy noise seed of the run

    def steps_to_record(self) -> tuple[int, ...]:
        n = self.num_inference_steps
        if n < 1:
            raise InputError(f"calibration needs at least 1 step, got {n}.")
        chosen = self.record_steps if self.record_steps is not None else (0, (n - 1) // 2, n - 1)
        bad = [s for s in chosen if not 0 <= s < n]
        if bad:
            raise InputError(f"calibration steps {bad} are outside 0..{n - 1}.")
        return tuple(sorted(set(chosen)))


@dataclass
class CalibrationData:
    """Per graph, per input name: samples concatenated along axis 0 (see the module docstring)."""

    arrays: dict[str, dict[str, np.ndarray]]
    counts: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)

    def samples(self, graph: str) -> Iterator[dict[str, np.ndarray]]:
        """The recorded samples of ``graph`` one at a time, each a feed dict for the graph."""
        yield from split_samples(self.arrays[graph], self.counts[graph])

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``<graph>.npz`` for every graph (+ ``calibration.json``); return the npz paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for graph, arrays in self.arrays.items():
            path = folder / f"{graph}.npz"
            tmp = folder / f".{graph}.partial.npz"
            np.savez(tmp, **arrays)
            tmp.replace(path)
            paths[graph] = path
        (folder / "calibration.json").write_text(json.dumps({"counts": self.counts, "info": self.info}, indent=2) + "\n")
        return paths

    @classmethod
    def load(cls, folder: str | Path) -> "CalibrationData":
        folder = Path(folder)
        meta = json.loads((folder / "calibration.json").read_text())
        arrays = {}
        for graph in meta["counts"]:
            with np.load(folder / f"{graph}.npz") as npz:
                arrays[graph] = {k: npz[k] for k in npz.files}
        return cls(arrays, {k: int(v) for k, v in meta["counts"].items()}, meta.get("info", {}))


def split_samples(arrays: Mapping[str, np.ndarray], count: int) -> Iterator[dict[str, np.ndarray]]:
    """Undo the concatenation: the same split ModelOpt's CalibrationDataProvider makes."""
    pieces = {name: np.array_split(value, count, axis=0) for name, value in arrays.items()}
    for i in range(count):
        yield {name: np.ascontiguousarray(parts[i]) for name, parts in pieces.items()}


def load_frames(source: str | Path | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Calibration frames: a sequence of HxWx3 uint8 arrays, or a folder of PNG/JPEG images (sorted by name)."""
    if not isinstance(source, (str, Path)):
        frames = [np.asarray(f) for f in source]
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"--calibration-frames {folder} is not a folder; give a folder of PNG/JPEG frames.")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"--calibration-frames {folder} holds no PNG/JPEG images; add a few frames of the kind you will upscale.")
        from PIL import Image

        frames = []
        for path in files:
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("RGB")))
    if len(frames) < 2:
        raise InputError("calibration needs at least 2 frames (the flow and TCM graphs take neighbour pairs).")
    first = frames[0].shape
    for index, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"calibration frame {index} is not an HxWx3 uint8 RGB image.")
        if frame.shape != first:
            raise InputError(f"calibration frame {index} is {frame.shape[1]}x{frame.shape[0]}, unlike frame 0; give frames of one size.")
    return frames


def default_frames() -> list[np.ndarray]:
    """The bundled sample clip's first frames at 48x36 LR, the default calibration material."""
    from svsr.sample import sample_frames

    return sample_frames(DEFAULT_FRAMES, width=DEFAULT_WIDTH, height=DEFAULT_HEIGHT)


def frames_digest(frames: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(str(frame.shape).encode())
        digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()


def calibration_key(fingerprint: str, frames: Sequence[np.ndarray], settings: CalibrationSettings) -> dict[str, Any]:
    """Everything the recorded data depends on; equal keys mean recorded data (and typed graphs) can be reused."""
    return {
        "checkpoint": fingerprint,
        "frames_sha256": frames_digest(frames),
        "num_frames": len(frames),
        "frame_size": list(frames[0].shape[:2]),
        "steps": settings.num_inference_steps,
        "record_steps": list(settings.steps_to_record()),
        "tcm_calls_per_step": settings.tcm_calls_per_step,
        "flow_pairs": settings.flow_pairs,
        "max_decode": settings.max_decode,
        "seed": settings.seed,
        "recording": RECORDING_VERSION,
    }


def _numpy(tensor: Any) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def record_calibration(
    reference: Any,
    frames: Sequence[np.ndarray] | str | Path | None = None,
    settings: CalibrationSettings = CalibrationSettings(),
    scheduler: Mapping[str, Any] | None = None,
    graphs: Sequence[str] = GRAPH_NAMES,
    progress: bool = False,
) -> CalibrationData:
    """Run ``reference.upscale`` on ``frames`` and record the inputs each exported graph would get.

    ``reference`` is a :class:`svsr.reference.StableVSRReference`; ``scheduler`` the manifest's
    scheduler entry (``config`` + ``alphas_cumprod``), from which ``step_coeffs`` are computed with
    :mod:`svsr.scheduler_math` exactly as the runtime does (default: from the loaded checkpoint).
    """
    import torch

    from svsr.noise import NumpyNoise

    frames = default_frames() if frames is None else load_frames(frames)
    if scheduler is None:
        from svsr.export.exporter import scheduler_entry

        scheduler = scheduler_entry(reference.components)
    steps = step_coefficients(scheduler["config"], np.asarray(scheduler["alphas_cumprod"], np.float32), settings.num_inference_steps)
    wanted_steps = set(settings.steps_to_record())
    wanted = set(graphs)
    samples: dict[str, list[dict[str, np.ndarray]]] = {g: [] for g in GRAPH_NAMES}
    trace: list = []
    state: dict[str, Any] = {"guidance": None, "pending": None, "tcm_taken": {}}

    original = {name: getattr(reference, name) for name in ("flows", "guidance", "predict", "ddpm_step", "decode_output")}

    def records(call) -> bool:
        if call.step not in wanted_steps:
            return False
        if not call.uses_tcm:
            return True
        return state["tcm_taken"].get(call.step, 0) < settings.tcm_calls_per_step

    def flows(lr):
        if "flow" in wanted:
            n = lr.shape[0]
            for i in range(1, min(n, settings.flow_pairs + 1)):
                # sampler.enqueue_flows: flow(frame i -> i-1) and flow(frame i-1 -> i)
                samples["flow"].append({"frame": _numpy(lr[i : i + 1]), "previous": _numpy(lr[i - 1 : i])})
                samples["flow"].append({"frame": _numpy(lr[i - 1 : i]), "previous": _numpy(lr[i : i + 1])})
        return original["flows"](lr)

    def guidance(x0_prev, flow):
        out = original["guidance"](x0_prev, flow)
        if "guide" in wanted and records(trace[-1]):
            samples["guide"].append({"x0": _numpy(x0_prev), "flow": _numpy(flow)})
        state["guidance"] = out
        return out

    def predict(z, lr, t, guide):
        call = trace[-1]
        if "denoise" in wanted and records(call):
            if guide is not None:
                state["tcm_taken"][call.step] = state["tcm_taken"].get(call.step, 0) + 1
            # without TCM the runtime feeds whatever its guidance buffer holds (zeros before the first guide)
            held = guide if guide is not None else state["guidance"]
            guidance_in = _numpy(held) if held is not None else np.zeros((1, 3, 4 * z.shape[2], 4 * z.shape[3]), np.float32)
            step = steps[call.step]
            if int(t) != step.timestep:
                raise RuntimeError(f"reference timestep {int(t)} differs from scheduler_math's {step.timestep} at step {call.step}")
            state["pending"] = {
                "z": _numpy(z),
                "lr": _numpy(lr),
                "guidance": guidance_in,
                "tcm_scale": np.array([1.0 if guide is not None else 0.0], np.float32),
                "timestep": np.array([step.timestep], np.float32),
                "step_coeffs": step.coeffs.astype(np.float32),
            }
        return original["predict"](z, lr, t, guide)

    def ddpm_step(model_output, t, sample, noise):
        pending, state["pending"] = state["pending"], None
        if pending is not None:
            pending["noise"] = _numpy(noise) if noise is not None else np.zeros(tuple(sample.shape), np.float32)
            samples["denoise"].append(pending)
        return original["ddpm_step"](model_output, t, sample, noise)

    def decode_output(z):
        if "decode" in wanted and len(samples["decode"]) < settings.max_decode:
            samples["decode"].append({"z": _numpy(z)})
        return original["decode_output"](z)

    wrappers: dict[str, Callable] = {
        "flows": flows,
        "guidance": guidance,
        "predict": predict,
        "ddpm_step": ddpm_step,
        "decode_output": decode_output,
    }
    for name, fn in wrappers.items():
        setattr(reference, name, fn)
    try:
        with torch.no_grad():
            reference.upscale(
                frames, num_inference_steps=settings.num_inference_steps, noise=NumpyNoise(settings.seed), progress=progress, trace=trace
            )
    finally:
        for name in wrappers:
            try:
                delattr(reference, name)
            except AttributeError:
                pass

    arrays: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, int] = {}
    for graph in GRAPH_NAMES:
        if graph not in wanted:
            continue
        recorded = samples[graph]
        if not recorded:
            raise InputError(f"the calibration run recorded no input for graph {graph}; use more frames or steps.")
        names = [spec.name for spec in GRAPHS[graph].inputs]
        arrays[graph] = {name: np.concatenate([s[name] for s in recorded], axis=0) for name in names}
        counts[graph] = len(recorded)
    info = {
        "num_frames": len(frames),
        "frame_size": list(frames[0].shape[:2]),
        "steps": settings.num_inference_steps,
        "recorded_steps": sorted(wanted_steps),
        "timesteps": [steps[s].timestep for s in sorted(wanted_steps)],
    }
    return CalibrationData(arrays, counts, info)
