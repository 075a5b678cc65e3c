"""Calibration inputs for AutoCast, recorded from a real run of the PyTorch reference.

The reference tells an observer (``StableVSRReference.upscale(observer=...)``) the inputs each
exported graph would receive as its run reaches that point; this module only chooses which to
keep. Nothing of the algorithm is copied here.

What is recorded (defaults): the bundled sample clip (3 frames, 48x36), a 6-step run, and at the first,
middle and last step both the first frame of the sweep (no TCM: ``tcm_scale`` 0, zero guidance, as
the runtime feeds it) and one TCM-guided call (with the ``guide_decode`` call that made its guidance).
``flow`` gets one pair of each direction, ``decode`` the final latents. The stats graphs get the
whole-frame inputs the reference reports for them (``denoise_stats`` the denoise calls' network
inputs, ``decode_stats`` the guide_decode calls' x0 and the final latents); the networks' untiled
``norm_stats`` / ``shared_norm`` inputs are zeros. ``flow_x2`` / ``flow_x1`` get the flow pairs
bicubic-upscaled x2 / x4 first (the reference's run is at flow scale 4, and RAFT should see images
like the ones it sees there; the sample frames are also too small for RAFT at x1). Only graphs that
get typed versions are recorded: ``warp`` and ``blend`` always run in float32 (svsr/contract/graphs.py).

Layout (what ModelOpt's ``CalibrationDataProvider`` splits, ``np.array_split(x, n, axis=0)``): one
``.npz`` per graph, one key per graph input, samples concatenated along axis 0. A sample of an
input whose leading dim is ``batch`` is ``(1, ...)``; the fixed-size inputs of ``denoise``
concatenate too, so ``timestep`` is ``(n,)`` and ``step_coeffs`` ``(8 n,)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from svsr.contract.errors import InputError
from svsr.contract.frames import IMAGE_SUFFIXES
from svsr.contract.graphs import FLOAT32_ONLY_GRAPHS, FLOW_GRAPH_NAMES, GRAPH_NAMES, GRAPHS, flow_graph
from svsr.contract.paths import inside_build_folder

DEFAULT_FRAMES = 3
DEFAULT_STEPS = 6
DEFAULT_SEED = 0
DEFAULT_WIDTH, DEFAULT_HEIGHT = 48, 36  # LR; small keeps the reference run short, ranges depend on content more than size
CALIBRATION_DIR = "calibration"
# bump when what gets recorded changes, so typed graphs calibrated the old way are redone
# 2: through the reference's observer; no-TCM calls see zero guidance. 3: manifest schema 2 graphs.
# 4: manifest schema 3 graphs (flow scales, stats graphs, norm_stats / shared_norm inputs)
RECORDING_VERSION = 4
# the graphs AutoCast makes typed versions of, and so the ones calibration records
TYPED_GRAPHS = tuple(g for g in GRAPH_NAMES if g not in FLOAT32_ONLY_GRAPHS)


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
            # graph names come from calibration.json: each names a file that must stay inside the folder
            path = inside_build_folder(
                folder, f"{graph}.npz", "calibration data", str(folder / "calibration.json"),
                fix=f"delete {folder} and run svsr-export again, which records the calibration afresh",
            )
            with np.load(path, allow_pickle=False) as npz:
                arrays[graph] = {k: npz[k] for k in npz.files}
        return cls(arrays, {k: int(v) for k, v in meta["counts"].items()}, meta.get("info", {}))


def split_samples(arrays: Mapping[str, np.ndarray], count: int) -> Iterator[dict[str, np.ndarray]]:
    """Undo the concatenation: the same split ModelOpt's CalibrationDataProvider makes."""
    pieces = {name: np.array_split(value, count, axis=0) for name, value in arrays.items()}
    for i in range(count):
        yield {name: np.ascontiguousarray(parts[i]) for name, parts in pieces.items()}


def _upscaled(frames: np.ndarray, factor: int) -> np.ndarray:
    """LR frames (B, 3, h, w) bicubic x``factor`` as the reference's flow does (svsr.reference.flow.upscale_bicubic)."""
    if factor == 1:
        return frames
    import torch

    from svsr.reference.flow import upscale_bicubic

    with torch.no_grad():
        return np.ascontiguousarray(upscale_bicubic(torch.from_numpy(frames), factor).numpy(), dtype=np.float32)


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
    from svsr.sample_clip import sample_frames

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


def record_calibration(
    reference: Any,
    frames: Sequence[np.ndarray] | str | Path | None = None,
    settings: CalibrationSettings = CalibrationSettings(),
    graphs: Sequence[str] = TYPED_GRAPHS,
    progress: bool = False,
) -> CalibrationData:
    """Run ``reference.upscale`` on ``frames`` and keep the inputs each exported graph gets.

    ``reference`` is a :class:`svsr.reference.StableVSRReference`; its ``observer`` hands over every
    graph's inputs as the run reaches them (the reference computes ``step_coeffs`` with
    :mod:`svsr.contract.scheduler`, as the runtime does). This function only chooses which to keep.
    """
    from svsr.contract.noise import NumpyNoise

    frames = default_frames() if frames is None else load_frames(frames)
    wanted_steps = set(settings.steps_to_record())
    wanted = set(graphs)
    samples: dict[str, list[dict[str, np.ndarray]]] = {g: [] for g in GRAPH_NAMES}
    tcm_taken: dict[int, int] = {}
    timesteps: dict[int, int] = {}

    flow_name = flow_graph(4)
    flow_pairs: list[dict[str, np.ndarray]] = []  # every scale's flow graph calibrates on these
    final_stats = [0]  # decode_stats calls on final latents taken (they come with call None)

    def keep(graph: str, inputs: Mapping[str, np.ndarray], call: Any) -> None:
        if graph == flow_name:
            if len(flow_pairs) < 2 * settings.flow_pairs:
                flow_pairs.append(dict(inputs))
            return
        if graph not in wanted:
            return
        if graph == "decode":
            if len(samples["decode"]) < settings.max_decode:
                samples["decode"].append(dict(inputs))
        elif graph == "decode_stats" and call is None:  # the final decode's statistics
            if final_stats[0] < settings.max_decode:
                final_stats[0] += 1
                samples[graph].append(dict(inputs))
        elif call.step in wanted_steps:
            if call.uses_tcm and tcm_taken.get(call.step, 0) >= settings.tcm_calls_per_step:
                return
            if graph == "denoise":
                timesteps[call.step] = int(inputs["timestep"][0])
                if call.uses_tcm:
                    tcm_taken[call.step] = tcm_taken.get(call.step, 0) + 1
            samples[graph].append(dict(inputs))

    reference.upscale(frames, num_inference_steps=settings.num_inference_steps, noise=NumpyNoise(settings.seed), progress=progress, observer=keep)
    for scale, name in FLOW_GRAPH_NAMES.items():
        if name in wanted:
            samples[name] = [{k: _upscaled(v, 4 // scale) for k, v in pair.items()} for pair in flow_pairs]

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
        "timesteps": [timesteps[s] for s in sorted(wanted_steps) if s in timesteps],
    }
    return CalibrationData(arrays, counts, info)
