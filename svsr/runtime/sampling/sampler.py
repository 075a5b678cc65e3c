"""StableVSR's frame-wise bidirectional sampling over the exported graphs, streamed (torch-free).

One implementation for every backend. Per-frame state lives in a host :class:`ClipStore` (RAM up to
a budget, then files); the backend holds only a fixed set of slot buffers, so device memory does
not depend on the number of frames and the output of an N-frame clip is the whole-clip result for
every N (no chunks, no seams).

Per frame-step (frame ``k`` at position ``j`` of the sweep of timestep index ``s``)::

    upload  z[k] (plane s % 2), lr[k], flow of k onto the previous frame (j > 0), noise(s, k)  -> slot set j % 2
    guide   (x0 of the previous frame, flow)                  -> guidance      (j > 0)
    denoise (z, lr, guidance | zeros, tcm on | off, t, coeffs, noise) -> z_out, x0
    download z_out -> z[k] (plane (s+1) % 2)

Frame k+1 is uploaded into the other slot set while frame k computes (backends with a copy stream
overlap the two) and launched before frame k's new latent is downloaded (``z_out`` is
double-buffered), so the device never idles while the host stores a latent; the flows are
pipelined the same way. ``x0`` stays on the device between frames. Every graph call binds the same slot
buffers every time, so backends can bind each execution context once and capture each frame-step
program (per slot set and TCM on/off) once for every frame, step, clip and video of that size.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from svsr.contract.frames import pad_frame, validate_clip
from svsr.contract.graphs import GRAPHS, concrete_shape
from svsr.contract.errors import ManifestError
from svsr.contract.noise import NoiseSource, PhiloxNoise
from svsr.contract.scheduler import Step, step_coefficients
from svsr.contract.sizes import PaddingPlan
from svsr.contract.sweeps import sweep_direction, sweep_order
from svsr.runtime.sampling.backend import Backend, Buffer
from svsr.runtime.sampling.clip_store import ClipStore, StoreLayout, default_host_memory

Emit = Callable[[int, np.ndarray], None]  # (frame index, 4Hx4Wx3 float32 RGB in [0, 1])
LATENT_TENSORS = ("z", "noise", "z_prev", "x0")  # graph tensors with the VAE's latent channels


def latent_channels(manifest: Mapping[str, Any]) -> int:
    """The VAE's latent channels: the manifest's ``latent_channels``, else the denoise graph's ``z`` input as exported."""
    if "latent_channels" in manifest:
        return int(manifest["latent_channels"])
    z = next((t for t in manifest["graphs"]["denoise"]["inputs"] if t["name"] == "z"), None)
    if z is None or len(z["shape"]) != 4 or not isinstance(z["shape"][1], int):
        raise ManifestError("the manifest names no latent channel count; re-run svsr-export --force.")
    return int(z["shape"][1])


def tensor_shape(manifest: Mapping[str, Any], graph: str, tensor: str, height: int, width: int) -> tuple[int, ...]:
    """The shape of ``graph``'s ``tensor`` for padded LR frames of ``height`` x ``width`` (batch 1; latents from the manifest)."""
    spec = next(t for t in GRAPHS[graph].inputs + GRAPHS[graph].outputs if t.name == tensor)
    shape = concrete_shape(spec, 1, height, width)
    return (shape[0], latent_channels(manifest), *shape[2:]) if tensor in LATENT_TENSORS else shape


def to_model_input(frame: np.ndarray, plan: PaddingPlan) -> np.ndarray:
    """uint8 HxWx3 -> (1, 3, H', W') float32 in [-1, 1], edge-padded: the graphs' LR input convention."""
    padded = pad_frame(frame, plan)
    return (padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)) * np.float32(2.0) - np.float32(1.0)


def to_output_frame(rgb: np.ndarray, plan: PaddingPlan) -> np.ndarray:
    """(1, 3, 4H', 4W') decode output -> 4Hx4Wx3 float32, cropped back to the unpadded size."""
    out_h, out_w = plan.output_size
    return np.ascontiguousarray(rgb[0, :, :out_h, :out_w].transpose(1, 2, 0), dtype=np.float32)


@dataclass(eq=False)
class SlotSet:
    """Device buffers one frame-step reads and writes; two sets alternate (double buffering)."""

    index: int
    z: Buffer
    lr: Buffer
    lr_previous: Buffer  # the previous frame's LR, when flows are computed per frame-step
    flow: Buffer
    noise: Buffer
    guidance: Buffer
    z_out: Buffer


@dataclass(eq=False)
class DeviceSlots:
    """Every device buffer the sampler uses for one LR size: constant in the number of frames."""

    height: int
    width: int
    sets: tuple[SlotSet, SlotSet]
    x0: Buffer
    zero_guidance: Buffer
    tcm_off: Buffer
    tcm_on: Buffer
    timestep: Buffer
    coeffs: Buffer
    decode_z: tuple[Buffer, Buffer]
    rgb: tuple[Buffer, Buffer]
    extras: dict[str, Any] = field(default_factory=dict)


def frame_step_key(slot_set: int, uses_tcm: bool, flow_per_step: bool) -> str:
    """The frame-step program a backend may capture once and replay: one per slot set and TCM use."""
    return f"step{slot_set}-{'tcm' if uses_tcm else 'first'}{'-flow' if flow_per_step and uses_tcm else ''}"


class Sampler:
    """Runs the schedule on a backend, reading the scheduler tables from the manifest."""

    def __init__(self, backend: Backend, manifest: Mapping[str, Any]) -> None:
        self.backend = backend
        self.manifest = manifest
        scheduler = manifest["scheduler"]
        self._scheduler_config = scheduler["config"]
        self._alphas_cumprod = np.asarray(scheduler["alphas_cumprod"], dtype=np.float32)
        self.init_sigma = np.float32(scheduler.get("init_noise_sigma", 1.0))
        self.latent_channels = latent_channels(manifest)
        self._slots: DeviceSlots | None = None

    def close(self) -> None:
        """Release the backend (sessions, buffers, device memory)."""
        self._slots = None
        self.backend.close()

    def steps(self, num_inference_steps: int) -> list[Step]:
        return step_coefficients(self._scheduler_config, self._alphas_cumprod, num_inference_steps)

    def store_layout(self, num_frames: int, plan: PaddingPlan) -> StoreLayout:
        """The clip store's layout for ``num_frames`` frames padded as ``plan`` says (latent channels from the manifest)."""
        return StoreLayout(num_frames, plan.padded_height, plan.padded_width, latent_channels=self.latent_channels)

    # -- device slots -----------------------------------------------------------------------------
    def slots(self, height: int, width: int) -> DeviceSlots:
        """The slot buffers for padded LR frames of ``height`` x ``width``; allocated once per size."""
        if self._slots is not None and (self._slots.height, self._slots.width) == (height, width):
            return self._slots
        b = self.backend
        b.prepare(self.manifest, height, width)  # e.g. TensorRT: the size against engine profiles and free memory

        def alloc(label: str, graph: str, tensor: str, host_io: bool = True) -> Buffer:
            spec = next(t for t in GRAPHS[graph].inputs + GRAPHS[graph].outputs if t.name == tensor)
            shape = tensor_shape(self.manifest, graph, tensor, height, width)
            # device-only buffers tell the backend so (no pinned staging for what never crosses to the host)
            return b.allocate(label, shape, spec.dtype) if host_io else b.allocate(label, shape, spec.dtype, host_io=False)

        def slot_set(i: int) -> SlotSet:
            return SlotSet(
                i,
                z=alloc(f"z{i}", "denoise", "z"),
                lr=alloc(f"lr{i}", "denoise", "lr"),
                lr_previous=alloc(f"lr_previous{i}", "flow", "previous"),
                flow=alloc(f"flow{i}", "flow", "flow"),
                noise=alloc(f"noise{i}", "denoise", "noise"),
                guidance=alloc(f"guidance{i}", "denoise", "guidance", host_io=False),
                z_out=alloc(f"z_out{i}", "denoise", "z_prev"),
            )

        slots = DeviceSlots(
            height,
            width,
            sets=(slot_set(0), slot_set(1)),
            x0=alloc("x0", "denoise", "x0", host_io=False),
            zero_guidance=alloc("zero_guidance", "denoise", "guidance", host_io=False),
            tcm_off=alloc("tcm_off", "denoise", "tcm_scale"),
            tcm_on=alloc("tcm_on", "denoise", "tcm_scale"),
            timestep=alloc("timestep", "denoise", "timestep"),
            coeffs=alloc("step_coeffs", "denoise", "step_coeffs"),
            decode_z=(alloc("decode_z0", "decode", "z"), alloc("decode_z1", "decode", "z")),
            rgb=(alloc("rgb0", "decode", "rgb"), alloc("rgb1", "decode", "rgb")),
        )
        b.upload(slots.tcm_on, np.ones(1, np.float32))  # allocations are zero-filled: tcm_off and zero_guidance stay 0
        self._slots = slots
        return slots

    # -- the phases of a clip -----------------------------------------------------------------------
    def load_frames(self, store: ClipStore, frames: Sequence[np.ndarray], plan: PaddingPlan, start: int = 0) -> None:
        """LR frames (uint8 HxWx3) into the store, converted to the graphs' input convention."""
        for offset, frame in enumerate(frames):
            store.lr.write(start + offset, to_model_input(frame, plan))

    def compute_flows(self, store: ClipStore, slots: DeviceSlots, progress: Any = None) -> None:
        """fwd[i-1] = flow(frame i -> i-1); bwd = reversed(bwd_pair), bwd_pair[i-1] = flow(frame i-1 -> i).

        Each flow is one job on slot set ``job % 2`` (inputs ``lr``/``lr_previous``, output ``flow``:
        the bindings the per-step flow recompute uses too); job j+1 is launched before job j's flow
        is downloaded, so the device computes while the host stores.
        """
        if not store.store_flows:
            return
        b, n = self.backend, store.layout.num_frames
        jobs = [(i, forward) for i in range(1, n) for forward in (True, False)]

        def launch_job(j: int) -> None:
            i, forward = jobs[j]
            s = slots.sets[j % 2]
            frame, previous = (i, i - 1) if forward else (i - 1, i)
            b.upload(s.lr, store.lr.read(frame))
            b.upload(s.lr_previous, store.lr.read(previous))
            b.run("flow", {"frame": s.lr, "previous": s.lr_previous}, {"flow": s.flow})

        if jobs:
            launch_job(0)
        for j, (i, forward) in enumerate(jobs):
            if j + 1 < len(jobs):
                launch_job(j + 1)  # queued behind this job before its result is fetched
            flow = b.download(slots.sets[j % 2].flow)
            if forward:
                store.fwd.write(i - 1, flow)
            else:
                store.bwd.write(n - 1 - i, flow)
                if progress is not None:
                    progress(i, n - 1)

    def initial_latents(self, store: ClipStore, noise: NoiseSource) -> None:
        """Plane 0 gets every frame's initial latent, drawn in frame order (the official draw order)."""
        shape = store.layout.latent_shape
        for k in range(store.layout.num_frames):
            initial = noise.initial_latent(k, shape)
            store.latents[0].write(k, initial if self.init_sigma == 1 else initial * self.init_sigma)

    def run_step(self, store: ClipStore, slots: DeviceSlots, step: Step, noise: NoiseSource, on_frame: Callable[[], None] | None = None) -> None:
        """One sweep (timestep ``step``): reads latent plane ``s % 2``, writes plane ``(s + 1) % 2``."""
        b, n = self.backend, store.layout.num_frames
        read, write = store.latents[step.index % 2], store.latents[(step.index + 1) % 2]
        direction = sweep_direction(step.index)
        order = sweep_order(n, step.index)
        shape = store.layout.latent_shape
        b.upload(slots.timestep, np.array([step.timestep], np.float32))
        b.upload(slots.coeffs, step.coeffs)
        zeros = np.zeros(shape, np.float32)

        def stage(position: int) -> None:
            """Upload frame ``order[position]``'s state into its slot set (noise drawn in sweep order)."""
            k, s = order[position], slots.sets[position % 2]
            b.upload(s.z, read.read(k))
            b.upload(s.lr, store.lr.read(k))
            b.upload(s.noise, noise.step_noise(step.index, k, shape) if step.has_noise else zeros)
            if position > 0:
                if store.store_flows:
                    b.upload(s.flow, store.flows(direction).read(position - 1))
                else:
                    b.upload(s.lr_previous, store.lr.read(order[position - 1]))

        flow_per_step = not store.store_flows

        def launch_frame(position: int) -> None:
            s, uses_tcm = slots.sets[position % 2], position > 0
            b.launch(frame_step_key(s.index, uses_tcm, flow_per_step), lambda: self.enqueue_frame_step(slots, s, uses_tcm, flow_per_step))

        stage(0)
        launch_frame(0)
        for position, k in enumerate(order):
            if position + 1 < n:
                stage(position + 1)  # overlaps this frame's compute on backends with a copy stream
                launch_frame(position + 1)  # queued before this frame's latent is fetched: the device keeps busy
            write.write(k, b.download(slots.sets[position % 2].z_out))
            if on_frame is not None:
                on_frame()

    def enqueue_frame_step(self, slots: DeviceSlots, s: SlotSet, uses_tcm: bool, flow_per_step: bool) -> None:
        """The graph launches of one frame-step, on fixed buffers: no host work, so it can be captured."""
        b = self.backend
        if uses_tcm:
            if flow_per_step:
                b.run("flow", {"frame": s.lr, "previous": s.lr_previous}, {"flow": s.flow})
            b.run("guide", {"x0": slots.x0, "flow": s.flow}, {"guidance": s.guidance})
        b.run(
            "denoise",
            {
                "z": s.z,
                "lr": s.lr,
                "guidance": s.guidance if uses_tcm else slots.zero_guidance,
                "tcm_scale": slots.tcm_on if uses_tcm else slots.tcm_off,
                "timestep": slots.timestep,
                "step_coeffs": slots.coeffs,
                "noise": s.noise,
            },
            {"z_prev": s.z_out, "x0": slots.x0},
        )

    def decode(self, store: ClipStore, slots: DeviceSlots, num_steps: int, plan: PaddingPlan, emit: Emit, start: int = 0) -> None:
        """Final frames ``start..N-1`` in order to ``emit``; decoding frame k+1 is enqueued before frame k is fetched."""
        b, n = self.backend, store.layout.num_frames
        final = store.latents[num_steps % 2]
        pending: tuple[int, Buffer] | None = None
        for position, k in enumerate(range(start, n)):
            z, rgb = slots.decode_z[position % 2], slots.rgb[position % 2]
            b.upload(z, final.read(k))
            b.run("decode", {"z": z}, {"rgb": rgb})
            if pending is not None:
                emit(pending[0], to_output_frame(b.download(pending[1]), plan))
            pending = (k, rgb)
        if pending is not None:
            emit(pending[0], to_output_frame(b.download(pending[1]), plan))
        b.synchronize()

    # -- one clip in memory -------------------------------------------------------------------------
    def upscale(
        self,
        frames: Sequence[np.ndarray],
        num_inference_steps: int = 50,
        noise: NoiseSource | None = None,
        progress: bool | Any = False,
        *,
        host_memory: int | None = None,
        work_dir: str | Path | None = None,
    ) -> list[np.ndarray]:
        """Upscale one clip 4x: HxWx3 uint8 frames -> 4Hx4Wx3 float32 in [0, 1].

        The clip state is streamed through the store (``host_memory`` bytes of RAM, default half of
        what is available; latents in a temporary work folder, or ``work_dir``); the returned list
        holds every output frame, so for long videos use the video job, which encodes as it decodes.
        """
        plan = validate_clip(frames)
        steps = self.steps(num_inference_steps)
        noise = noise if noise is not None else PhiloxNoise(0)
        layout = self.store_layout(len(frames), plan)
        budget = default_host_memory() if host_memory is None else host_memory
        with tempfile.TemporaryDirectory(prefix="svsr-clip-", dir=work_dir) as folder:
            store = ClipStore(layout, Path(folder), budget)
            try:
                slots = self.slots(layout.height, layout.width)
                self.load_frames(store, frames, plan)
                self.compute_flows(store, slots)
                self.initial_latents(store, noise)
                own_bar = not hasattr(progress, "update")
                bar = tqdm(total=layout.num_frames * len(steps), desc=self.backend.name, unit="frame-step", disable=not progress) if own_bar else progress
                try:
                    for step in steps:
                        self.run_step(store, slots, step, noise, on_frame=lambda: bar.update(1))
                finally:
                    if own_bar:
                        bar.close()
                results: list[np.ndarray] = [None] * layout.num_frames  # type: ignore[list-item]

                def keep(k: int, frame: np.ndarray) -> None:
                    results[k] = frame

                self.decode(store, slots, len(steps), plan, keep)
                return results
            finally:
                store.close()

