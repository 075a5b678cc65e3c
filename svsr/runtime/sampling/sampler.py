"""StableVSR's frame-wise bidirectional sampling over the exported graphs, streamed (torch-free).

One implementation for every backend. Per-frame state lives in a host :class:`ClipStore` (RAM up to
a budget, then files); the backend holds only a fixed set of slot buffers, so device memory does
not depend on the number of frames and the output of an N-frame clip is the whole-clip result for
every N (no chunks, no seams).

Per frame-step (frame ``k`` at position ``j`` of the sweep of timestep index ``s``)::

    upload   z[k] (plane s % 2), lr[k], flow of k onto the previous frame (j > 0), noise(s, k),
             x0 history[k] (plane s % 2; multistep schedulers)                         -> slot set j % 2
    guide    guide_decode(x0 of the previous frame) -> image; warp(image, flow) -> guidance   (j > 0)
    denoise  (z, lr, guidance | zeros, tcm on | off, t, coeffs, noise, history | zeros) -> z_out, x0
    download z_out -> z[k] (plane (s+1) % 2); x0 -> history[k] (plane (s+1) % 2; multistep schedulers)

With tiles the guide decode and the denoise run per tile and are blended into whole-frame buffers,
their GroupNorms fed the whole frame's statistics (svsr/runtime/sampling/frame_step.py); the warp sees
the whole frame. The flows run the flow graph of the run's flow scale (``flow``, ``flow_x2``,
``flow_x1``: RAFT on x4, x2 or x1 frames; :meth:`Sampler.slots`). Frame k+1 is uploaded into the
other slot set while frame k computes (backends with a copy stream overlap the two) and launched
before frame k's new latent is downloaded (``z_out`` and ``x0`` are double-buffered), so the device
never idles while the host stores a latent; the flows are pipelined the same way. Every graph call
binds the same slot buffers every time, so backends can bind each execution context once and capture
each frame-step program (per slot set, TCM use, history use and tile layout) once for every frame,
step, clip and video of that size.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from svsr.contract.errors import InputError
from svsr.contract.frames import pad_frame, validate_clip
from svsr.contract.graphs import DEFAULT_FLOW_SCALE, flow_graph
from svsr.contract.noise import NoiseSource, PhiloxNoise
from svsr.contract.scheduler import DEFAULT_SCHEDULER, Step, needs_history, step_coefficients
from svsr.contract.sizes import PaddingPlan, flow_scale_problem
from svsr.contract.sweeps import sweep_direction, sweep_order
from svsr.contract.tiles import AUTO, DEFAULT_OVERLAP, OFF, TileLayout, TileOption, overlap_problem, parse_tile, plan_tiles
from svsr.runtime.sampling.backend import Backend, Buffer
from svsr.runtime.sampling.clip_store import ClipStore, StoreLayout, default_host_memory
from svsr.runtime.sampling.frame_step import (
    LATENT_TENSORS,
    DeviceSlots,
    SlotSet,
    allocate_slots,
    decode_key,
    enqueue_decode,
    enqueue_frame_step,
    frame_step_key,
    graphs_used,
    latent_channels,
    tensor_shape,
)

__all__ = ["LATENT_TENSORS", "DeviceSlots", "Emit", "Sampler", "SlotSet", "frame_step_key", "latent_channels",
           "tensor_shape", "to_model_input", "to_output_frame"]  # fmt: skip

Emit = Callable[[int, np.ndarray], None]  # (frame index, 4Hx4Wx3 float32 RGB in [0, 1])


def to_model_input(frame: np.ndarray, plan: PaddingPlan) -> np.ndarray:
    """uint8 HxWx3 -> (1, 3, H', W') float32 in [-1, 1], edge-padded: the graphs' LR input convention."""
    padded = pad_frame(frame, plan)
    return (padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)) * np.float32(2.0) - np.float32(1.0)


def to_output_frame(rgb: np.ndarray, plan: PaddingPlan) -> np.ndarray:
    """(1, 3, 4H', 4W') decode output -> 4Hx4Wx3 float32, cropped back to the unpadded size."""
    out_h, out_w = plan.output_size
    return np.ascontiguousarray(rgb[0, :, :out_h, :out_w].transpose(1, 2, 0), dtype=np.float32)


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

    def steps(self, num_inference_steps: int, scheduler: str = DEFAULT_SCHEDULER, eta: float = 0.0) -> list[Step]:
        """The schedule's steps and their coefficients (svsr/contract/scheduler.py): ``ddpm``, ``ddim`` (``eta``) or ``dpmpp-2m``."""
        return step_coefficients(self._scheduler_config, self._alphas_cumprod, num_inference_steps, scheduler=scheduler, eta=eta)

    def store_layout(self, num_frames: int, plan: PaddingPlan, history: bool = False) -> StoreLayout:
        """The clip store's layout for ``num_frames`` frames padded as ``plan`` says (latent channels from the manifest).

        ``history``: keep one x0 per frame (``needs_history(scheduler)``: DPM-Solver++ 2M).
        """
        return StoreLayout(num_frames, plan.padded_height, plan.padded_width, latent_channels=self.latent_channels, history=history)

    def tile_layout(self, height: int, width: int, tile: TileOption | None, overlap: int = DEFAULT_OVERLAP) -> TileLayout | None:
        """The tiles of padded LR frames ``height`` x ``width`` for a tile option; None: whole frames.

        ``None``/``"off"``: whole frames; ``(h, w)`` or ``"HxW"``: tiles of that size (whole frames where
        one tile covers the frame); ``"auto"``: the memory plan's choice where this runtime has one.
        Bad values raise InputError in one sentence.
        """
        return self.choose(height, width, tile, overlap)[0]

    def choose(self, height: int, width: int, tile: TileOption | None, overlap: int = DEFAULT_OVERLAP,
               flow_scale: int | str = DEFAULT_FLOW_SCALE) -> tuple[TileLayout | None, int]:  # fmt: skip
        """The tiles (as :meth:`tile_layout`) and the flow scale of padded LR frames ``height`` x ``width``.

        ``flow_scale`` 4, 2 or 1 (RAFT on x4, x2 or x1 frames), or ``"auto"``: 4 where the memory plan
        of this backend fits, else the largest that fits (chosen with the tile where ``tile`` is
        ``"auto"`` too: svsr/runtime/sampling/memory_plan.py ``choose_flow_scale``). A scale the frame
        is too small for, or a bad tile, raises InputError in one sentence.
        """
        choice = OFF if tile is None else parse_tile(tile)
        if flow_scale == AUTO or choice == AUTO:
            from svsr.runtime.sampling.memory_plan import choose_flow_scale, choose_tile

            if flow_scale == AUTO:
                auto = choose_flow_scale(self.manifest, height, width, backend=self.backend, overlap=overlap,
                                         tile=None if choice == OFF else choice)  # fmt: skip
            else:
                auto = choose_tile(self.manifest, height, width, backend=self.backend, overlap=overlap, flow_scale=int(flow_scale))
            flow_scale = auto.flow_scale
            if choice == AUTO:
                choice = OFF if auto.tile is None else (int(auto.tile[0]), int(auto.tile[1]))
        self.check_flow_scale(int(flow_scale), height, width)
        problem = overlap_problem(choice, overlap)
        if problem:
            raise InputError(problem)
        if choice == OFF:
            return None, int(flow_scale)
        layout = plan_tiles(height, width, choice, overlap)  # type: ignore[arg-type]
        return (None if layout.single else layout), int(flow_scale)

    @staticmethod
    def check_flow_scale(flow_scale: int, height: int, width: int) -> None:
        """InputError (one sentence) unless RAFT runs at ``flow_scale`` on padded LR frames of ``height`` x ``width``."""
        if flow_scale not in (4, 2, 1):
            raise InputError(f"flow scale {flow_scale!r} is not one of 4 (the original), 2 and 1.")
        problem = flow_scale_problem(flow_scale, height, width)
        if problem:
            raise InputError(problem)

    # -- device slots -----------------------------------------------------------------------------
    def slots(self, height: int, width: int, tiles: TileLayout | None = None, flow_scale: int = DEFAULT_FLOW_SCALE) -> DeviceSlots:
        """The slot buffers for padded LR frames of ``height`` x ``width``; allocated once per size, tile layout and flow scale.

        ``tiles`` None (or a layout of one tile): whole frames, bit for bit the untiled path.
        ``flow_scale``: which flow graph :meth:`compute_flows` and per-step flows run (4: ``flow``, RAFT
        on the bicubic x4 frames; 2: ``flow_x2``; 1: ``flow_x1``); InputError (one sentence) where the
        frames are too small for it. The backend is prepared for exactly the graphs this size runs.
        """
        if tiles is not None and (tiles.frame_height, tiles.frame_width) != (height, width):
            raise ValueError(f"a tile layout for {tiles.frame_height}x{tiles.frame_width} frames was given for {height}x{width} slots")
        self.check_flow_scale(flow_scale, height, width)
        layout = None if tiles is None or tiles.single else tiles
        current = self._slots
        if current is not None and (current.height, current.width) == (height, width):
            if (current.tiles.layout if current.tiles is not None else None) == layout and current.flow_graph == flow_graph(flow_scale):
                return current
        self._slots = None
        # e.g. TensorRT: the size against engine profiles and free memory; both backends open the graphs it runs
        self.backend.prepare(self.manifest, height, width, tiles=layout, graphs=graphs_used(layout is not None, flow_scale))
        self._slots = allocate_slots(self.backend, self.manifest, height, width, layout, flow_scale)
        return self._slots

    # -- the phases of a clip -----------------------------------------------------------------------
    def load_frames(self, store: ClipStore, frames: Sequence[np.ndarray], plan: PaddingPlan, start: int = 0) -> None:
        """LR frames (uint8 HxWx3) into the store, converted to the graphs' input convention."""
        for offset, frame in enumerate(frames):
            store.lr.write(start + offset, to_model_input(frame, plan))

    def compute_flows(self, store: ClipStore, slots: DeviceSlots, progress: Any = None) -> None:
        """fwd[i-1] = flow(frame i -> i-1); bwd = reversed(bwd_pair), bwd_pair[i-1] = flow(frame i-1 -> i).

        Each flow is one job on slot set ``job % 2`` (inputs ``lr``/``lr_previous``, output ``flow``:
        the bindings the per-step flow recompute uses too); job j+1 is launched before job j's flow
        is downloaded, so the device computes while the host stores. Flows are whole-frame always.
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
            b.run(slots.flow_graph, {"frame": s.lr, "previous": s.lr_previous}, {"flow": s.flow})

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

    def run_step(self, store: ClipStore, slots: DeviceSlots, step: Step, noise: NoiseSource, on_frame: Callable[[], None] | None = None,
                 *, tcm: bool = True) -> None:  # fmt: skip
        """One sweep (timestep ``step``): reads latent (and history) plane ``s % 2``, writes plane ``(s + 1) % 2``.

        ``tcm`` False (an ablation, not StableVSR) runs every frame as a sweep's first: no guidance, no TCM.
        """
        b, n = self.backend, store.layout.num_frames
        history = store.history is not None
        if step.reads_history and not history:
            raise ValueError("this step reads each frame's previous x0, but the clip store keeps none; "
                             "make its layout with Sampler.store_layout(..., history=needs_history(scheduler))")  # fmt: skip
        read, write = store.latents[step.index % 2], store.latents[(step.index + 1) % 2]
        read_history, write_history = (store.history[step.index % 2], store.history[(step.index + 1) % 2]) if history else (None, None)
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
            if read_history is not None:  # a first-order step ignores it: zeros, whatever the plane holds
                b.upload(s.history, read_history.read(k) if step.reads_history else zeros)
            if position > 0 and tcm:
                if store.store_flows:
                    b.upload(s.flow, store.flows(direction).read(position - 1))
                else:
                    b.upload(s.lr_previous, store.lr.read(order[position - 1]))

        flow_per_step = not store.store_flows

        def launch_frame(position: int) -> None:
            s, uses_tcm = slots.sets[position % 2], tcm and position > 0
            key = frame_step_key(s.index, uses_tcm, flow_per_step, history, slots.layout_key, slots.flow_graph)
            b.launch(key, lambda: enqueue_frame_step(b, slots, s, uses_tcm, flow_per_step, history))

        stage(0)
        launch_frame(0)
        for position, k in enumerate(order):
            if position + 1 < n:
                stage(position + 1)  # overlaps this frame's compute on backends with a copy stream
                launch_frame(position + 1)  # queued before this frame's latent is fetched: the device keeps busy
            done = slots.sets[position % 2]
            write.write(k, b.download(done.z_out))
            if write_history is not None:
                write_history.write(k, b.download(done.x0))  # the next frame-step wrote the other set's x0
            if on_frame is not None:
                on_frame()

    def decode(self, store: ClipStore, slots: DeviceSlots, num_steps: int, plan: PaddingPlan, emit: Emit, start: int = 0) -> None:
        """Final frames ``start..N-1`` in order to ``emit``; decoding frame k+1 is enqueued before frame k is fetched."""
        b, n = self.backend, store.layout.num_frames
        final = store.latents[num_steps % 2]
        pending: tuple[int, Buffer] | None = None
        for position, k in enumerate(range(start, n)):
            parity = position % 2
            b.upload(slots.decode_z[parity], final.read(k))
            if slots.tiles is None:
                enqueue_decode(b, slots, parity)
            else:
                b.launch(decode_key(parity, slots.layout_key), lambda parity=parity: enqueue_decode(b, slots, parity))
            if pending is not None:
                emit(pending[0], to_output_frame(b.download(pending[1]), plan))
            pending = (k, slots.rgb[parity])
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
        scheduler: str = DEFAULT_SCHEDULER,
        eta: float = 0.0,
        tile: TileOption | None = None,
        tile_overlap: int = DEFAULT_OVERLAP,
        tcm: bool = True,
        flow_scale: int | str = DEFAULT_FLOW_SCALE,
    ) -> list[np.ndarray]:
        """Upscale one clip 4x: HxWx3 uint8 frames -> 4Hx4Wx3 float32 in [0, 1].

        The clip state is streamed through the store (``host_memory`` bytes of RAM, default half of
        what is available; latents in a temporary work folder, or ``work_dir``); the returned list
        holds every output frame, so for long videos use the video job, which encodes as it decodes.
        ``scheduler``/``eta``: see :meth:`steps`. ``tile``: None or ``"off"`` whole frames, ``(h, w)``
        tiles of that many LR pixels blended over ``tile_overlap`` (see :meth:`tile_layout`). ``tcm``
        False: the ablation without the temporal conditioning (see :meth:`run_step`). ``flow_scale``: 4
        (RAFT on the bicubic x4 frames, the original), 2 or 1 (on x2 / x1 frames, the flow upsampled to
        4x), or ``"auto"`` (see :meth:`choose`).
        """
        plan = validate_clip(frames)
        tiles, flow_scale = self.choose(plan.padded_height, plan.padded_width, tile, tile_overlap, flow_scale)
        steps = self.steps(num_inference_steps, scheduler=scheduler, eta=eta)
        noise = noise if noise is not None else PhiloxNoise(0)
        layout = self.store_layout(len(frames), plan, history=needs_history(scheduler))
        budget = default_host_memory() if host_memory is None else host_memory
        with tempfile.TemporaryDirectory(prefix="svsr-clip-", dir=work_dir) as folder:
            store = ClipStore(layout, Path(folder), budget)
            try:
                slots = self.slots(layout.height, layout.width, tiles, flow_scale)
                self.load_frames(store, frames, plan)
                self.compute_flows(store, slots)
                self.initial_latents(store, noise)
                own_bar = not hasattr(progress, "update")
                bar = tqdm(total=layout.num_frames * len(steps), desc=self.backend.name, unit="frame-step", disable=not progress) if own_bar else progress
                try:
                    for step in steps:
                        self.run_step(store, slots, step, noise, on_frame=lambda: bar.update(1), tcm=tcm)
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
