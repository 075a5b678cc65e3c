"""Upscale videos or frame folders exactly and resumably: shots, the shot job, the video job (torch-free).

An input is split at scene cuts into shots (``svsr.runtime.jobs.shots``); each shot is one exact clip
(StableVSR is defined on a whole clip: no chunks, no seams inside a shot, no guidance across a cut):

1. plan: one decoding pass counts the frames and finds the cuts (kept in ``plan.json`` of the work folder);
2. per shot (in-process, or on Ray workers: ``svsr.runtime.jobs.farm``; both through
   ``svsr.runtime.jobs.runner.run_shot``), the shot job:
   decode its LR frames (with their times) into the work folder, compute flows into the clip store
   (RAM up to the budget, then files), draw initial latents, one sweep per timestep with a checkpoint
   after each, then decode the final frames in order into an output segment (absolute frame times);
3. stitch: the segments are remuxed in order into the output, audio copied from the input.

Interrupted at any point (crash, SIGKILL, Ctrl-C, reboot, a lost Ray worker), the same command
resumes: finished segments are kept, an unfinished shot continues from its last completed timestep
and gives bit-identical output. The work folder is removed after success.
"""

from __future__ import annotations

import errno
import os
import queue
import shutil
import signal
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svsr.contract.errors import InputError, SvsrError
from svsr.contract.frames import validate_clip
from svsr.contract.noise import NoiseSource
from svsr.contract.scheduler import needs_history
from svsr.contract.sizes import padding_plan
from svsr.contract.video_options import VideoOptions
from svsr.runtime.sampling import ClipStore, FileFrameArray, StoreLayout, default_host_memory
from svsr.runtime.jobs.resume import (
    Checkpoint,
    build_fingerprint,
    default_work_dir,
    input_fingerprint,
    close_work_dir,
    discard_segment,
    load_checkpoint,
    open_work_dir,
    options_of,
    record_segment,
    remove_work_dir,
    save_checkpoint,
    segment_damage,
)
from svsr.runtime.jobs import lock
from svsr.runtime.sampling import Sampler, to_model_input
from svsr.runtime.jobs.selection import Selection, select_and_cut
from svsr.runtime.jobs.shots import CutDetector, Shot, shots_from_cuts
from svsr.runtime.jobs.tiling import FLOW_SCALE_OPTION, TileChoice, choose_tiles, recorded_flow_scale, recorded_tile
from svsr.runtime.video import FrameReader, FrameWriter, VideoInfo, audio_problem, check_output, input_kind, output_kind, output_rule, probe

Report = Callable[[str], None]
CRASH_VARIABLE = "SVSR_TEST_CRASH_AT"  # test hook: SIGKILL this process at a named point (see _crash_point)
CRASH_ONCE_VARIABLE = "SVSR_TEST_CRASH_ONCE"  # with it: a marker file, so a restarted worker does not crash again
SEGMENT_OPTIONS: dict[str, Any] = {"segment": True}  # no audio, starts on a keyframe: joined later without re-encoding


class Interrupted(SvsrError):
    """Ctrl-C: the work folder keeps the last completed timestep."""

    exit_code = 130


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """[0, 1] float RGB -> uint8, rounding to nearest."""
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resolve_output(input_path: Path, output_path: str | os.PathLike[str] | None, options: VideoOptions | None = None, *,
                   many: bool = False) -> Path:  # fmt: skip
    """The output path by the output rule (:func:`svsr.runtime.video.output_rule`); refuses to overwrite the input.

    ``output_path``: the ``-o`` value (a file, a folder, ``DIR/``) or None; ``many``: one of several
    inputs, so ``output_path`` is their folder.
    """
    options = options or VideoOptions()
    raw = os.fspath(output_path) if output_path is not None else None
    target = output_rule(input_path, input_kind(input_path), raw, many=many, output_is_folder=raw is not None and Path(raw).is_dir(),
                         options=options)  # fmt: skip
    if target.path.resolve() == input_path.resolve():
        raise InputError(f"the output path {target.path} is the input; choose another with {options.spell('output', 'PATH')}.")
    return target.path


def _crash_point(tag: str) -> None:
    """Test hook: ``SVSR_TEST_CRASH_AT=flows:2`` (or ``step:1:3``, ``decode:2``) kills the process there.

    With ``SVSR_TEST_CRASH_ONCE=FILE`` it crashes only while FILE does not exist (and creates it), which
    stands in for a worker or node lost once.
    """
    if os.environ.get(CRASH_VARIABLE) != tag:
        return
    marker = os.environ.get(CRASH_ONCE_VARIABLE)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
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


NoiseFactory = Callable[[], NoiseSource]
_ANNOUNCED: set[tuple[Path, str]] = set()  # (work folder, tile or flow-scale sentence) said already: once per input, not per shot


@dataclass(frozen=True)
class InputPlan:
    """One input: its output, work folder, frame count (of the frames upscaled), frame rate and shots."""

    input: Path
    output: Path
    work: Path
    info: VideoInfo
    num_frames: int
    shots: tuple[Shot, ...]
    keep_audio: bool = True  # False with no_audio: the stitch copies no sound
    merged_cuts: tuple[int, ...] = ()  # scene cuts closer than min_shot frames to the previous one, not split at
    selection: Selection | None = None  # the frames a --frames range selects (None: the whole input)

    def segment_path(self, shot: Shot) -> Path:
        """Where the shot's output segment goes: same container as the output (a folder for PNG output)."""
        suffix = self.output.suffix if output_kind(self.output) == "video" else ""
        return self.work / "segments" / f"shot{shot.index:05d}{suffix}"

    def shot_work(self, shot: Shot) -> Path:
        return self.work / f"shot{shot.index:05d}"


def plan_input(input_path: Path, output_path: Path, options: VideoOptions, report: Report = lambda _m: None) -> InputPlan:
    """Probe, check the output and its sound, count frames and find the cuts in one decoding pass (reused from ``plan.json``).

    Everything that can be refused is refused before the work folder exists.
    """
    import json

    info = probe(input_path, fps=options.fps)
    kind = output_kind(output_path)
    keep_audio = not options.no_audio and not info.is_image_sequence
    if keep_audio and info.has_audio and options.frames is not None:  # the audio copy takes a whole input's sound only
        raise InputError(f"{options.spell('frames', options.frames)} upscales a part of {input_path.name}, whose audio is copied only whole; "
                         f"add {options.spell('no_audio', True)} to upscale that part without sound.")  # fmt: skip
    if keep_audio and info.has_audio:
        problem = audio_problem(input_path, output_path, kind == "video")
        if problem:
            keep = f"use a video output such as {output_path.with_suffix('.mkv').name} to keep it" if kind != "video" else "use an .mkv output to keep it"
            raise InputError(f"{problem}; {keep}, or add {options.spell('no_audio', True)} to drop it.")
    if options.no_audio and info.has_audio:
        report(f"svsr-run: {input_path.name}: its audio is not copied ({options.spell('no_audio', True)})")
    if kind == "image":
        check_output(output_path, True, None)
    else:  # the writer checks output folder, container and codec on creation (nothing is written yet)
        FrameWriter(output_path, info.fps, codec=options.codec, crf=options.crf, audio_from=input_path if keep_audio else None)
    work = options.work_dir or default_work_dir(output_path)
    fresh = not work.exists()
    _hold_input(output_path, work, options, report)  # before anything is written, the stale partials' removal included
    _remove_stale_partials(output_path)
    key = {"input": input_fingerprint(input_path), "scene_split": options.scene_split, "threshold": options.scene_threshold,
           "min_shot": options.min_shot, "fps": str(options.fps), "frames": options.frames}
    plan_file = work / "plan.json"
    try:
        cached = json.loads(plan_file.read_text()) if plan_file.exists() else None
    except (OSError, ValueError):
        cached = None
    selection: Selection | None = None
    if cached is not None and cached.get("key") == key:
        num_frames, cuts, merged = int(cached["num_frames"]), [int(c) for c in cached["cuts"]], [int(c) for c in cached.get("merged", [])]
        selection = Selection.from_json(cached["selection"]) if cached.get("selection") else None
    else:
        try:
            if cached is not None and cached.get("key", {}).get("frames") != options.frames:
                _refuse_other_range(work, cached["key"].get("frames"), options)
            if options.frames is not None:
                selection, cuts, merged = select_and_cut(input_path, info, options)
                num_frames = selection.count
            else:
                num_frames, cuts, merged = _count_and_cut(input_path, info, options)
        except BaseException:
            _release_input(output_path, work, remove=fresh)
            raise
        tmp = work / ".plan.json.partial"
        tmp.write_text(json.dumps({"key": key, "num_frames": num_frames, "cuts": cuts, "merged": merged,
                                   **({"selection": selection.to_json()} if selection else {})}) + "\n")  # fmt: skip
        os.replace(tmp, plan_file)
    shots = tuple(selection.shots(input_path, cuts) if selection else shots_from_cuts(input_path, num_frames, cuts))
    if selection is not None:
        report(f"svsr-run: {input_path.name}: {selection.sentence()}")
    if info.is_image_sequence:
        report(f"svsr-run: {input_path.name} is a folder of frames: written at {info.fps} fps ({options.spell('fps', 'RATE')} to change)")
    if len(shots) > 1:
        report(f"svsr-run: {input_path.name}: {len(shots)} shots (scene cuts at frames {', '.join(map(str, cuts))})")
    if merged:
        report(f"svsr-run: {input_path.name}: {merged_sentence(merged, options)}")
    return InputPlan(input_path, output_path, work, info, num_frames, shots, keep_audio=keep_audio, merged_cuts=tuple(merged),
                     selection=selection)  # fmt: skip


def _refuse_other_range(work: Path, planned: str | None, options: VideoOptions) -> None:
    """Finished shots of another ``frames`` range are not this job's: refuse to mix them in (unless nothing was done yet)."""
    if any((work / "segments").glob("*")) or any(work.glob("shot*/checkpoint.json")):
        spell = options.spell
        was = "the whole input" if planned is None else spell("frames", planned)
        raise InputError(f"{work} holds an interrupted run of another job (it upscaled {was}); "
                         f"rerun with {spell('restart', True)} to discard it, or choose another {spell('work_dir', 'DIR')}.")  # fmt: skip


def merged_sentence(merged: list[int] | tuple[int, ...], options: VideoOptions) -> str:
    """What the minimum shot length did: which cuts it merged, and the option that changes it."""
    frames = ", ".join(map(str, merged))
    return (f"{len(merged)} scene cut{'s' if len(merged) > 1 else ''} (at frame{'s' if len(merged) > 1 else ''} {frames}) came less than "
            f"{options.min_shot} frames after the previous one and {'were' if len(merged) > 1 else 'was'} merged; "
            f"lower {options.spell('min_shot', 'N')} to split there")  # fmt: skip


def _count_and_cut(input_path: Path, info: VideoInfo, options: VideoOptions) -> tuple[int, list[int], list[int]]:
    detector = CutDetector(info.fps, options.scene_threshold, options.min_shot) if options.scene_split else None
    count = 0
    with FrameReader(input_path, fps=options.fps) as reader:
        for frame in reader:
            if count == 0:
                validate_clip([frame])
            if detector is not None:
                detector.add(frame)
            count += 1
    if count == 0:
        raise InputError(f"{input_path} has no frames; give a video or folder with at least one frame.")
    if detector is None:
        return count, [], []
    cuts = detector.cuts()
    return count, cuts, detector.merged_cuts()


class ShotJob:
    """One shot -> one output segment, through a Sampler with a clip store and checkpoints."""

    def __init__(
        self,
        sampler: Sampler,
        plan: InputPlan,
        shot: Shot,
        make_noise: NoiseFactory,
        options: VideoOptions,
        *,
        build_dir: Path | None,
        report: Report = lambda _m: None,
        progress: Any = None,
    ) -> None:
        self.sampler, self.plan, self.shot = sampler, plan, shot
        self.noise = make_noise()
        self.options = options
        self.build_dir = build_dir
        self.report, self.progress = report, progress
        self.work = plan.shot_work(shot)
        self.segment = plan.segment_path(shot)
        self.steps = sampler.steps(options.num_inference_steps, scheduler=options.scheduler, eta=options.eta)
        self.history = needs_history(options.scheduler)  # one x0 history per frame (multistep solvers), kept like the latents

    def layout(self, num_frames: int) -> StoreLayout:
        """The clip store's sizes for ``num_frames`` of this input (latent channels from the manifest, history planes by scheduler)."""
        padded = padding_plan(self.plan.info.height, self.plan.info.width)
        return self.sampler.store_layout(num_frames, padded, history=self.history)

    def tiles(self, layout: StoreLayout, checkpoint: Checkpoint | None) -> TileChoice:
        """The tiles and flow scale of this input's frames (an interrupted run's ``auto`` choices are kept); said once per input."""
        o = self.options
        recorded = recorded_tile(checkpoint.options) if checkpoint is not None else None
        recorded_flow = recorded_flow_scale(checkpoint.options) if checkpoint is not None else None
        budget = default_host_memory() if o.host_memory is None else o.host_memory
        store_bytes = min(budget, layout.bytes_of("lr") + layout.bytes_of("flows"))  # what the clip store keeps in RAM
        choice = choose_tiles(self.sampler, o.tile, o.tile_overlap, layout.height, layout.width, spell=o.spell, store_bytes=store_bytes,
                              history=self.history, recorded=recorded, flow_scale=o.flow_scale, recorded_flow=recorded_flow)  # fmt: skip
        said = ([choice.sentence] if o.tile != "off" else []) + ([choice.flow_sentence] if choice.flow_sentence else [])
        for sentence in said:
            if (self.plan.work, sentence) not in _ANNOUNCED:
                _ANNOUNCED.add((self.plan.work, sentence))
                self.report(f"svsr-run: {self.plan.input.name}: {sentence}")
        return choice

    @property
    def done(self) -> bool:
        """The segment is finished and matches its record; a damaged one is removed, with one line, to be made again."""
        damage = segment_damage(self.segment)
        if damage is None:
            return True
        if damage != "missing":
            self.report(f"svsr-run: {self.segment} is damaged ({damage}); upscaling {self._shot_name()} again")
            discard_segment(self.segment)
        return False

    def _shot_name(self) -> str:
        return f"shot {self.shot.index + 1} of {len(self.plan.shots)}" if len(self.plan.shots) > 1 else "it"

    def fingerprint(self, height: int, width: int, tiles: TileChoice) -> Checkpoint:
        o = self.options
        return Checkpoint(
            input=f"{input_fingerprint(self.plan.input)}:{self.shot.first}-{self.shot.last}",
            build=build_fingerprint(self.build_dir, self.sampler.backend.name),
            # named noise: its seed says it all; a NoiseSource object is known by its starting state's digest only
            options=options_of({"steps": o.num_inference_steps, "scheduler": o.scheduler, "eta": o.eta, "noise": self.noise.kind, "fps": o.fps,
                                "tile": tiles.text, **({"tile overlap": tiles.layout.overlap} if tiles.tiled else {}),
                                FLOW_SCALE_OPTION: tiles.flow_scale,
                                **({"noise seed": o.seed} if isinstance(o.noise, str) else {"noise state": _digest(self.noise.state())})}),
            num_frames=self.shot.num_frames,
            height=height,
            width=width,
        )

    def run(self) -> Path:
        """The shot's segment (kept from an earlier run when it exists)."""
        if self.done:
            return self.segment
        self.segment.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.work.exists()
        spell = self.options.spell
        open_work_dir(self.work, self.options.restart, what=f"the work folder {self.work} of shot {self.shot.index + 1} of {self.plan.input.name}",
                      fix=f"choose another {spell('work_dir', 'DIR')}", spell=spell)  # fmt: skip
        try:
            self._run_locked(fresh)
        finally:
            close_work_dir(self.work)
        return self.segment

    def _run_locked(self, fresh: bool) -> None:
        try:
            self._run()
        except SvsrError:
            if fresh and load_checkpoint(self.work) is None:  # refused before any work worth keeping
                remove_work_dir(self.work)
            raise
        except KeyboardInterrupt:
            done = load_checkpoint(self.work)
            shot = f" of shot {self.shot.index + 1} of {len(self.plan.shots)}" if len(self.plan.shots) > 1 else ""
            where = f"step {done.steps_done} of {len(self.steps)}{shot}" if done else "the start"
            raise Interrupted(f"interrupted; {self.plan.work} keeps the work up to {where}: rerun the same command to resume.") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                layout = self.layout(self.shot.num_frames)
                need = sum(layout.bytes_of(part) for part in ("lr", "latents", "flows") + (("history",) if self.history else ())) / 2**20
                raise InputError(
                    f"the disk of {self.work} is full ({exc.strerror}); this shot's clip state needs up to {need:.0f} MiB there: "
                    f"free space or choose {self.options.spell('work_dir', 'DIR')} elsewhere, then rerun to resume."
                ) from None
            raise
        record_segment(self.segment)
        remove_work_dir(self.work)

    def _run(self) -> None:
        o, steps = self.options, self.steps
        lr_file, times = self._read_frames()
        plan = padding_plan(self.plan.info.height, self.plan.info.width)
        layout = self.layout(lr_file.count)
        checkpoint = load_checkpoint(self.work)
        tiles = self.tiles(layout, checkpoint)
        wanted = self.fingerprint(layout.height, layout.width, tiles)
        if checkpoint is not None:
            differences = checkpoint.differences(wanted)
            if differences:
                spell = self.options.spell
                raise InputError(
                    f"{self.plan.work} holds an interrupted run of another job (different {'; '.join(differences)}); "
                    f"rerun with {spell('restart', True)} to discard it, or choose another {spell('work_dir', 'DIR')}."
                )
        budget = default_host_memory() if o.host_memory is None else o.host_memory
        store = ClipStore(layout, self.work, budget, resume=checkpoint is not None, store_flows=o.store_flows, lr=lr_file)
        try:
            if checkpoint is not None:
                checkpoint = self._verified(checkpoint, store)
            if checkpoint is not None:
                shot = f" (shot {self.shot.index + 1} of {len(self.plan.shots)})" if len(self.plan.shots) > 1 else ""
                self.report(f"svsr-run: resuming from step {checkpoint.steps_done} of {len(steps)}{shot}")
            if store.spilled:
                self.report(f"svsr-run: clip state beyond --host-memory goes to {self.work} ({', '.join(store.spilled)})")
            slots = self.sampler.slots(layout.height, layout.width, tiles=tiles.slot_tiles, flow_scale=tiles.flow_scale)
            in_files = store.store_flows and store.fwd is not None and store.fwd.in_file and store.bwd.in_file
            if not (checkpoint is not None and checkpoint.flows_done and in_files):
                self.sampler.compute_flows(store, slots, progress=lambda i, total: _crash_point(f"flows:{i}"))
                store.flush()
            state = checkpoint or wanted
            state.flows_done = bool(in_files)
            if checkpoint is None:
                self.sampler.initial_latents(store, self.noise)
                store.flush()
                state.steps_done, state.noise_state = 0, self.noise.state()
                self._save(store, state)
            else:
                self.noise.restore(checkpoint.noise_state)
                if self.progress is not None:  # done by the interrupted run: counted, but not timed as this run's
                    skip = getattr(self.progress, "skip", self.progress.update)
                    skip(checkpoint.steps_done * layout.num_frames)
            self._steps(store, slots, steps, state)
            self._decode(store, slots, len(steps), plan, times)
        finally:
            store.close()

    def _save(self, store: ClipStore, state: Checkpoint) -> None:
        """The checkpoint, with the checksums of the files it relies on (flushed before): this step's latents and history, stored flows."""
        state.files = store.records(store.step_files(state.steps_done) + (["flows_fwd.f32", "flows_bwd.f32"] if state.flows_done else []))
        save_checkpoint(self.work, state)

    def _verified(self, checkpoint: Checkpoint, store: ClipStore) -> Checkpoint | None:
        """The checkpoint when the files it relies on match their checksums; damaged flows are computed again,
        damaged latents or history start the shot again (None); one line says which file and what was done."""
        records = dict(checkpoint.files)
        damage = store.damage(records)
        for plane in store.step_files(checkpoint.steps_done):
            if plane not in records:
                damage[plane] = "the checkpoint has no checksums for it"
            if plane in damage:
                self.report(f"svsr-run: {self.work / plane} is damaged ({damage[plane]}); upscaling {self._shot_name()} again from step 0")
                return None
        in_files = store.files()
        for name in ("flows_fwd.f32", "flows_bwd.f32"):
            if checkpoint.flows_done and name in in_files and name not in records:
                damage[name] = "the checkpoint has no checksums for it"
        flows = [name for name in ("flows_fwd.f32", "flows_bwd.f32") if name in damage]
        if flows and checkpoint.flows_done:
            self.report(f"svsr-run: {self.work / flows[0]} is damaged ({damage[flows[0]]}); computing the flows again")
            checkpoint.flows_done = False
        return checkpoint

    def _read_frames(self) -> tuple[FileFrameArray, list[Fraction]]:
        """Stream the shot's frames into ``lr.f32`` of its work folder; their times into a list."""
        times: list[Fraction] = []
        info = self.plan.info
        plan = padding_plan(info.height, info.width)
        lr = FileFrameArray(self.work / "lr.f32", 0, (1, 3, plan.padded_height, plan.padded_width))
        try:
            with FrameReader(self.plan.input, start=self.shot.first, count=self.shot.num_frames, fps=self.options.fps) as reader:
                for index, (frame, time) in enumerate(reader.timed()):
                    if frame.shape[:2] != (info.height, info.width):
                        validate_clip([np.zeros((info.height, info.width, 3), np.uint8), frame])
                    lr.count = index + 1
                    lr.write(index, to_model_input(frame, plan))
                    times.append(time)
        except BaseException:
            lr.close()
            raise
        if len(times) != self.shot.num_frames:
            lr.close()
            raise InputError(
                f"{self.plan.input} gave {len(times)} frames for frames {self.shot.first}..{self.shot.last}, "
                f"{self.shot.num_frames} were counted before; it changed or decodes differently each time: rerun with {self.options.spell('restart', True)}."
            )
        return lr, times

    def _steps(self, store: ClipStore, slots: Any, steps: list, state: Checkpoint) -> None:
        for step in steps[state.steps_done:]:
            counter = {"frames": 0}

            def one_frame(step_index: int = step.index) -> None:
                counter["frames"] += 1
                _crash_point(f"step:{step_index}:{counter['frames']}")
                if self.progress is not None:
                    self.progress.update(1)

            self.sampler.run_step(store, slots, step, self.noise, on_frame=one_frame)
            store.flush()  # the plane this step wrote (latents, and the history of multistep solvers) reaches the disk before its checkpoint
            state.steps_done, state.noise_state = step.index + 1, self.noise.state()
            self._save(store, state)

    def _decode(self, store: ClipStore, slots: Any, num_steps: int, plan: Any, times: list[Fraction]) -> None:
        o, info = self.options, self.plan.info
        with FrameWriter(self.segment, info.fps, codec=o.codec, crf=o.crf, time_base=info.time_base, **SEGMENT_OPTIONS) as writer:
            threaded = _ThreadedWriter(writer)
            try:
                def emit(k: int, frame: np.ndarray) -> None:
                    threaded.write(to_uint8(frame), times[k])
                    _crash_point(f"decode:{self.shot.first + k + 1}")

                self.sampler.decode(store, slots, num_steps, plan, emit)
            finally:
                threaded.finish()


def finish_input(plan: InputPlan) -> Path:
    """Stitch the shots' segments in order into the output (audio copied from the input); drop the work folder."""
    from svsr.runtime.video import stitch_segments

    segments = [plan.segment_path(shot) for shot in plan.shots]
    audio = plan.input if plan.keep_audio else None
    if output_kind(plan.output) == "image":  # one frame: stitched as a frame folder in the work folder, its PNG moved into place
        folder = plan.work / "image"
        shutil.rmtree(folder, ignore_errors=True)
        stitch_segments(segments, folder, audio_from=None, fps=plan.info.fps)
        frames = sorted(folder.glob("*.png"))
        if len(frames) != 1:
            raise InputError(f"{plan.input} gave {len(frames)} frames, but {plan.output} holds one image; name a folder or a video output instead.")
        os.replace(frames[0], plan.output)
    else:
        stitch_segments(segments, plan.output, audio_from=audio, fps=plan.info.fps)
    _release_input(plan.output, plan.work, remove=True)
    return plan.output


def discard_if_nothing_done(plan: InputPlan) -> None:
    """A refused input leaves no work folder behind, unless it holds work worth resuming."""
    segments = [plan.segment_path(shot) for shot in plan.shots]
    checkpoints = [plan.shot_work(shot) / "checkpoint.json" for shot in plan.shots]
    _release_input(plan.output, plan.work, remove=not any(p.exists() for p in segments + checkpoints))


def _digest(state: Any) -> str:
    """A short, stable identity of a noise source's starting state (its seed, in effect)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _hold_input(output: Path, work: Path, options: VideoOptions, report: Report) -> None:
    """Lock the output's work folder (and, when it is not beside the output, the output too) before writing anything."""
    spell = options.spell
    beside = work.resolve() == default_work_dir(output).resolve()
    if not beside:
        lock.acquire(lock.output_lock_path(output), f"the output {output}", f"choose another {spell('output', 'PATH')}", report=report)
    try:
        open_work_dir(work, options.restart, what=f"the output {output}" if beside else f"the work folder {work}",
                      fix=f"choose another {spell('output', 'PATH') if beside else spell('work_dir', 'DIR')}", spell=spell, report=report)  # fmt: skip
    except BaseException:
        lock.release(lock.output_lock_path(output))
        raise


def _release_input(output: Path, work: Path, *, remove: bool) -> None:
    """Let go of what :func:`_hold_input` holds (``remove``: the work folder is deleted first)."""
    close_work_dir(work, remove=remove)
    lock.release(lock.output_lock_path(output))


def _remove_stale_partials(output: Path) -> None:
    """Hidden partial outputs a killed run left beside the output (FrameWriter's temporary names)."""
    import shutil

    for stale in output.parent.glob(f".{output.name}.partial-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
