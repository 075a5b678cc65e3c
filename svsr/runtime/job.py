"""Upscale one whole video or frame folder exactly, resumably: the video job (torch-free).

The whole input is one clip (StableVSR is defined on a whole clip; no chunks, no seams):

1. decode: LR frames stream from the reader's thread into a file of the work folder, with their times;
2. flows: the flow graph for every neighbour pair, into the clip store (RAM up to the budget, then files);
3. steps: initial latents, then one sweep per timestep; a checkpoint after each completed timestep;
4. decode + encode: final frames are decoded in order and handed to the encoder's thread with their
   input frame's presentation time; the output is renamed into place only when complete.

Interrupted at any point (crash, SIGKILL, Ctrl-C, reboot), the same command resumes from the last
completed timestep and gives bit-identical output; the work folder is removed after success.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from svsr.contract.errors import InputError, SvsrError
from svsr.contract.frames import validate_clip
from svsr.contract.noise import NoiseSource
from svsr.contract.sizes import padding_plan
from svsr.runtime.clip_store import ClipStore, FileFrameArray, StoreLayout, default_host_memory
from svsr.runtime.resume import (
    Checkpoint,
    build_fingerprint,
    default_work_dir,
    input_fingerprint,
    load_checkpoint,
    options_of,
    prepare_work_dir,
    remove_work_dir,
    save_checkpoint,
)
from svsr.runtime.sampler import Sampler, to_model_input
from svsr.runtime.video_probe import VideoInfo, output_path_for, probe
from svsr.runtime.video_read import FrameReader
from svsr.runtime.video_write import FrameWriter

Report = Callable[[str], None]
# upscale a whole clip at once (the PyTorch reference): LR uint8 frames -> [0, 1] float frames
WholeClip = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]
CRASH_VARIABLE = "SVSR_TEST_CRASH_AT"  # test hook: SIGKILL this process at a named point (see _crash_point)


class Interrupted(SvsrError):
    """Ctrl-C: the work folder keeps the last completed timestep."""

    exit_code = 130


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """[0, 1] float RGB -> uint8, rounding to nearest."""
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resolve_output(input_path: Path, output_path: str | os.PathLike[str] | None) -> Path:
    """The output path (default derived from the input); refuses to overwrite the input."""
    output = Path(output_path) if output_path is not None else output_path_for(input_path)
    if output.resolve() == input_path.resolve():
        raise InputError(f"the output path {output} is the input; choose another output path with -o.")
    return output


def _crash_point(tag: str) -> None:
    """Test hook: ``SVSR_TEST_CRASH_AT=flows:2`` (or ``step:1:3``, ``decode:2``) kills the process there."""
    if os.environ.get(CRASH_VARIABLE) == tag:
        os.kill(os.getpid(), signal.SIGKILL)


class _ThreadedWriter:
    """Feeds a FrameWriter from a bounded queue in its own thread; errors surface in the caller."""

    def __init__(self, writer: FrameWriter, queue_size: int = 8) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="svsr-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._writer.write(*item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = exc

    def write(self, frame: np.ndarray, time: Fraction | None) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((frame, time))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass
class JobOptions:
    """How a video job runs (what changes the result is fingerprinted; memory and folders are not)."""

    num_inference_steps: int = 50
    codec: str = "h264"
    crf: int = 18
    host_memory: int | None = None  # bytes of RAM for the clip store; default half of what is available
    work_dir: Path | None = None  # default: beside the output, named after it
    restart: bool = False  # discard a checkpoint instead of resuming
    store_flows: bool = True  # False: recompute each flow per frame-step instead of storing it
    fps: Fraction | None = None  # frame rate of a frame-folder input (default 24)


class VideoJob:
    """One input -> one output, through a Sampler with a clip store and checkpoints."""

    def __init__(
        self,
        sampler: Sampler,
        input_path: Path,
        output_path: Path,
        noise: NoiseSource,
        options: JobOptions,
        *,
        build_dir: Path | None,
        label: str,
        report: Report = lambda _m: None,
        progress: Any = None,
    ) -> None:
        self.sampler, self.input, self.output = sampler, input_path, output_path
        self.noise, self.options, self.label = noise, options, label
        self.build_dir = build_dir
        self.report, self.progress = report, progress
        self.work = options.work_dir or default_work_dir(output_path)

    def fingerprint(self, info: VideoInfo, num_frames: int, height: int, width: int) -> Checkpoint:
        o = self.options
        return Checkpoint(
            input=input_fingerprint(self.input),
            build=build_fingerprint(self.build_dir, self.label.split("-")[0]),
            options=options_of({"steps": o.num_inference_steps, "noise": self.noise.kind, "fps": o.fps,
                                "noise seed": _digest(self.noise.state())}),
            num_frames=num_frames,
            height=height,
            width=width,
        )

    def run(self) -> Path:
        o = self.options
        steps = self.sampler.steps(o.num_inference_steps)
        info = probe(self.input, fps=o.fps)
        # the writer checks output folder, container and codec on creation (nothing is written yet)
        FrameWriter(self.output, info.fps, codec=o.codec, crf=o.crf, audio_from=None if info.is_image_sequence else self.input)
        fresh = not self.work.exists()
        prepare_work_dir(self.work, o.restart)
        _remove_stale_partials(self.output)
        try:
            return self._run(steps)
        except SvsrError:
            if fresh and load_checkpoint(self.work) is None:  # refused before any work worth keeping
                remove_work_dir(self.work)
            raise
        except KeyboardInterrupt:
            done = load_checkpoint(self.work)
            where = f"step {done.steps_done} of {len(steps)}" if done else "the start"
            raise Interrupted(f"interrupted; {self.work} keeps the work up to {where}: rerun the same command to resume.") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InputError(
                    f"the disk of {self.work} or {self.output.parent} is full ({exc.strerror}); free space there "
                    "(the clip store needs about the size of its latent and flow files) or choose --work-dir elsewhere; rerun to resume."
                ) from None
            raise

    def _run(self, steps: list) -> Path:
        o = self.options
        lr_file, times, info = self._read_input()
        n = lr_file.count
        plan = padding_plan(info.height, info.width)
        layout = StoreLayout(n, plan.padded_height, plan.padded_width)
        wanted = self.fingerprint(info, n, layout.height, layout.width)
        checkpoint = load_checkpoint(self.work)
        if checkpoint is not None:
            differences = checkpoint.differences(wanted)
            if differences:
                raise InputError(
                    f"{self.work} holds an interrupted run of another job (different {', '.join(differences)}); "
                    "rerun with --restart to discard it, or choose another --work-dir."
                )
            self.report(f"svsr-run: resuming from step {checkpoint.steps_done} of {len(steps)}")
        budget = default_host_memory() if o.host_memory is None else o.host_memory
        store = ClipStore(layout, self.work, budget, resume=checkpoint is not None, store_flows=o.store_flows, lr=lr_file)
        try:
            if store.spilled:
                self.report(f"svsr-run: clip state beyond --host-memory goes to {self.work} ({', '.join(store.spilled)})")
            slots = self.sampler.slots(layout.height, layout.width)
            flows_kept = checkpoint is not None and checkpoint.flows_done and store.fwd is not None and store.fwd.in_file and store.bwd.in_file
            if not flows_kept:
                self.sampler.compute_flows(store, slots, progress=lambda i, total: _crash_point(f"flows:{i}"))
                store.flush()
            state = checkpoint or wanted
            state.flows_done = bool(store.store_flows and store.fwd is not None and store.fwd.in_file and store.bwd.in_file)
            if checkpoint is None:
                self.sampler.initial_latents(store, self.noise)
                store.flush()
                state.steps_done, state.noise_state = 0, self.noise.state()
                save_checkpoint(self.work, state)
            else:
                self.noise.restore(checkpoint.noise_state)
            self._steps(store, slots, steps, state)
            self._decode(store, slots, len(steps), plan, times, info)
        finally:
            store.close()
        remove_work_dir(self.work)
        return self.output

    def _read_input(self) -> tuple[FileFrameArray, list[Fraction], VideoInfo]:
        """Stream the input's frames into ``lr.f32`` of the work folder; their times into a list."""
        times: list[Fraction] = []
        with FrameReader(self.input, fps=self.options.fps) as reader:
            info = reader.info
            plan = padding_plan(info.height, info.width)
            lr = FileFrameArray(self.work / "lr.f32", 0, (1, 3, plan.padded_height, plan.padded_width))
            try:
                for index, (frame, time) in enumerate(reader.timed()):
                    if index == 0:
                        validate_clip([frame])
                    lr.count = index + 1
                    lr.write(index, to_model_input(frame, plan))
                    times.append(time)
            except BaseException:
                lr.close()
                raise
        if not times:
            lr.close()
            raise InputError(f"{self.input} has no frames; give a video or folder with at least one frame.")
        return lr, times, info

    def _steps(self, store: ClipStore, slots: Any, steps: list, state: Checkpoint) -> None:
        n = store.layout.num_frames
        bar = self.progress
        if bar is not None and hasattr(bar, "reset"):
            bar.reset(total=n * len(steps))
            bar.update(state.steps_done * n)
        for step in steps[state.steps_done:]:
            counter = {"frames": 0}

            def one_frame(step_index: int = step.index) -> None:
                counter["frames"] += 1
                _crash_point(f"step:{step_index}:{counter['frames']}")
                if bar is not None:
                    bar.update(1)

            self.sampler.run_step(store, slots, step, self.noise, on_frame=one_frame)
            store.latents[(step.index + 1) % 2].flush()
            state.steps_done, state.noise_state = step.index + 1, self.noise.state()
            save_checkpoint(self.work, state)

    def _decode(self, store: ClipStore, slots: Any, num_steps: int, plan: Any, times: list[Fraction], info: VideoInfo) -> None:
        o = self.options
        audio = self.input if not info.is_image_sequence else None
        with FrameWriter(self.output, info.fps, codec=o.codec, crf=o.crf, audio_from=audio, time_base=info.time_base) as writer:
            threaded = _ThreadedWriter(writer)
            try:
                def emit(k: int, frame: np.ndarray) -> None:
                    threaded.write(to_uint8(frame), times[k])
                    _crash_point(f"decode:{k + 1}")

                self.sampler.decode(store, slots, num_steps, plan, emit)
            finally:
                threaded.finish()


def _digest(state: Any) -> str:
    """A short, stable identity of a noise source's starting state (its seed, in effect)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _remove_stale_partials(output: Path) -> None:
    """Hidden partial outputs a killed run left beside the output (FrameWriter's temporary names)."""
    for stale in output.parent.glob(f".{output.name}.partial-*"):
        if stale.is_dir():
            import shutil

            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def upscale_whole_clip(input_path: Path, output_path: Path, process: WholeClip, *, codec: str = "h264", crf: int = 18, fps: Fraction | None = None) -> Path:
    """Read every frame, upscale them as one clip with ``process``, write them (the PyTorch reference)."""
    with FrameReader(input_path, fps=fps) as reader:
        info = reader.info
        timed = list(reader.timed())
    frames = [f for f, _ in timed]
    audio = input_path if not info.is_image_sequence else None
    with FrameWriter(output_path, info.fps, codec=codec, crf=crf, audio_from=audio, time_base=info.time_base) as writer:
        for frame, (_, time) in zip(process(frames), timed):
            writer.write(to_uint8(frame), time)
    return output_path


def check_input(input_path: Path, fps: Fraction | None = None) -> VideoInfo:
    """Probe the input before any model is loaded: bad input fails here, in one sentence."""
    return probe(input_path, fps=fps)
