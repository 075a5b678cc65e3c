"""Work folders are trusted only when verified, and written by one run at a time (issue 21, points 3 and 4)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from svsr.runtime.jobs import lock
from tests.conftest import REPO, random_frames, read_png_folder, svsr_run, write_png_folder

STEPS = ["--steps", "3", "--seed", "5", "--host-memory", "1M", "--no-scene-split"]  # 1M: flows spill to files of the work folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_png_folder(tmp_path_factory.mktemp("trust") / "in", random_frames(4, 48, 64, seed=11))


@pytest.fixture(scope="module")
def plain(tiny_build, clip, tmp_path_factory):
    """The uninterrupted run's frames."""
    out = tmp_path_factory.mktemp("plain") / "out"
    done = svsr_run(str(clip), "-o", str(out), "--model", str(tiny_build), *STEPS, "--quiet")
    assert done.returncode == 0, done.stderr
    return read_png_folder(out)


def _args(clip: Path, out: Path, build: Path) -> list[str]:
    return [str(clip), "-o", str(out), "--model", str(build), *STEPS]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _same_frames(got: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    return len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


# -- one writer per output and work folder -----------------------------------------------------------

def test_a_second_run_on_the_same_output_names_the_holder_and_touches_nothing(tiny_build, clip, plain, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVSR_TEST_")}
    first = subprocess.Popen([sys.executable, "-c", "import sys; from svsr.cli import run_main; sys.exit(run_main())", *_args(clip, out, tiny_build),
                              "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)  # fmt: skip
    lock_file = tmp_path / ".out.svsr-work" / lock.LOCK_NAME
    deadline = time.monotonic() + 240
    while not (lock_file.exists() and f"pid={first.pid}" in lock_file.read_text()):
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() is not None else "timed out"
        time.sleep(0.005)
    os.kill(first.pid, signal.SIGSTOP)  # the first run holds the lock, frozen mid-work: its files cannot change under us
    try:
        before = _snapshot(tmp_path)
        second = svsr_run(*_args(clip, out, tiny_build), "--restart", "--quiet")  # --restart would discard the first run's work
        assert second.returncode == 2
        assert f"is in use by process {first.pid} on {socket.gethostname()} (since " in second.stderr
        assert str(out) in second.stderr and second.stderr.count("\n") == 1
        assert _snapshot(tmp_path) == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err
    assert _same_frames(read_png_folder(out), plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_runs_lock_is_taken_over_with_one_line(tiny_build, clip, plain, tmp_path):
    out = tmp_path / "out"
    killed = svsr_run(*_args(clip, out, tiny_build), "--quiet", crash_at="step:1:2")
    assert killed.returncode == -signal.SIGKILL
    holder = lock.Holder.parse((tmp_path / ".out.svsr-work" / lock.LOCK_NAME).read_text())
    assert holder is not None and holder.host == socket.gethostname()
    resumed = svsr_run(*_args(clip, out, tiny_build))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count(f"took over the lock of process {holder.pid} on {holder.host}") == 1
    assert _same_frames(read_png_folder(out), plain)


def test_a_custom_work_folder_also_locks_the_output(tiny_build, clip, tmp_path):
    out = tmp_path / "out"
    holder = tmp_path / f".{out.name}.svsr-lock"
    lock.acquire(holder, "test", "test")  # this process stands in for a live run writing the same output elsewhere
    try:
        refused = svsr_run(*_args(clip, out, tiny_build), "--work-dir", str(tmp_path / "elsewhere"), "--quiet")
    finally:
        lock.release(holder)
    assert refused.returncode == 2
    assert f"the output {out} is in use by process {os.getpid()}" in refused.stderr and "choose another -o PATH" in refused.stderr
    assert not holder.exists() and not (tmp_path / "elsewhere").exists() and not out.exists()


def test_a_waiting_lock_is_taken_when_its_holder_ends(tmp_path):
    """A retried Ray shot waits for the first worker's shot lock instead of writing beside it."""
    path = tmp_path / "shot" / lock.LOCK_NAME
    path.parent.mkdir()
    code = ("import sys, time; from pathlib import Path; from svsr.runtime.jobs import lock; p = Path(sys.argv[1]); "
            "lock.acquire(p, 'x', 'y'); print('held', flush=True); time.sleep(1.0); lock.release(p)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(lock.LockedByAnotherRun, match=rf"shot is in use by process {holder.pid} on .*; wait for that run to end"):
        lock.acquire(path, "shot", "wait")
    start = time.monotonic()
    lock.acquire(path, "shot", "wait", wait=True, poll=0.05)
    try:
        assert holder.wait(timeout=30) == 0 and time.monotonic() - start > 0.2
        assert lock.Holder.parse(path.read_text()).pid == os.getpid()
        lock.acquire(path, "shot", "wait")  # re-entrant within one process (the shot code inside a Ray worker)
        lock.release(path)
        assert path.exists()
    finally:
        lock.release(path)
    assert not path.exists() and not lock.holds(path)


# -- work folders verified before they are trusted ---------------------------------------------------

def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 100)


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 + 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("name", "damage", "said"), [
    ("latents1.f32", _flip_a_bit, "latents1.f32 is damaged (frame record 2 differs from the checksum written with it); upscaling it again from step 0"),
    ("flows_fwd.f32", _truncate, "flows_fwd.f32 is damaged (it is 1179548 bytes, 1179648 were written); computing the flows again"),
])  # fmt: skip
def test_a_damaged_spill_file_after_sigkill_is_named_and_redone_not_used(tiny_build, clip, plain, tmp_path, name, damage, said):
    out = tmp_path / "out"
    assert svsr_run(*_args(clip, out, tiny_build), "--quiet", crash_at="step:1:3").returncode == -signal.SIGKILL
    damage(tmp_path / ".out.svsr-work" / "shot00000" / name)
    resumed = svsr_run(*_args(clip, out, tiny_build))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count(said) == 1
    assert ("resuming from step 1 of 3" in resumed.stderr) == name.startswith("flows")
    assert _same_frames(read_png_folder(out), plain)


def test_a_damaged_finished_segment_is_named_and_made_again(tiny_build, clip, tmp_path):
    import svsr
    from svsr.runtime.jobs import ShotJob, discard_if_nothing_done, noise_factory, plan_input
    from svsr.runtime.video import FrameReader

    def decoded(path: Path) -> list[np.ndarray]:
        with FrameReader(path) as reader:
            return list(reader)

    options = svsr.VideoOptions(num_inference_steps=1, scene_split=False, seed=5, tile="off")  # off: no tile line among what is said
    said: list[str] = []
    plan = plan_input(clip, tmp_path / "out.mkv", options)
    try:
        with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
            def job() -> ShotJob:
                return ShotJob(upscaler.pipeline, plan, plan.shots[0], noise_factory(options), options, build_dir=tiny_build, report=said.append)

            segment = job().run()
            first, first_frames = segment.read_bytes(), decoded(segment)
            assert job().run() == segment and said == [] and segment.read_bytes() == first  # verified: kept as it is
            _flip_a_bit(segment)
            job().run()
            assert said == [f"svsr-run: {segment} is damaged (its contents differ from the checksum written with it); upscaling it again"]
            assert _same_frames(decoded(segment), first_frames)
            size = segment.stat().st_size
            os.truncate(segment, size - 10)
            job().run()
            assert said[-1] == f"svsr-run: {segment} is damaged (it is {size - 10} bytes, {size} were written); upscaling it again"
            assert _same_frames(decoded(segment), first_frames)
    finally:
        discard_if_nothing_done(plan)


# -- a checkpoint of other sampling options --------------------------------------------------------------
class CtrlCAfter:
    """Test double of a progress bar that stands in for Ctrl-C after ``frames`` frame-steps."""

    def __init__(self, frames: int) -> None:
        self.frames, self.seen = frames, 0

    def update(self, count: int) -> None:
        self.seen += count
        if self.seen > self.frames:
            raise KeyboardInterrupt


def test_a_checkpoint_of_another_scheduler_or_tile_is_named_and_the_same_options_resume(tiny_build, clip, tmp_path):
    import svsr
    from svsr.contract.errors import InputError
    from svsr.runtime.jobs import Interrupted, ShotJob, discard_if_nothing_done, noise_factory, plan_input

    options = svsr.VideoOptions(num_inference_steps=2, scene_split=False, seed=5, tile="off")
    said: list[str] = []
    plan = plan_input(clip, tmp_path / "out", options)
    try:
        with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
            def job(chosen: svsr.VideoOptions, progress=None) -> ShotJob:
                return ShotJob(upscaler.pipeline, plan, plan.shots[0], noise_factory(chosen), chosen, build_dir=tiny_build, report=said.append,
                               progress=progress)  # fmt: skip

            with pytest.raises(Interrupted, match="keeps the work up to step 1 of 2"):
                job(options, CtrlCAfter(4)).run()  # the first timestep (4 frames) is checkpointed
            for overrides, named in [({"scheduler": "ddim"}, "scheduler ddpm -> ddim"), ({"eta": 0.5, "scheduler": "ddim"}, "eta 0.0 -> 0.5"),
                                     ({"tile": (32, 32), "tile_overlap": 8}, "tile off -> 32x32")]:  # fmt: skip
                with pytest.raises(InputError) as refused:
                    job(options.with_overrides(**overrides)).run()
                assert named in str(refused.value) and "holds an interrupted run of another job" in str(refused.value)
            job(options).run()
    finally:
        discard_if_nothing_done(plan)
    assert "svsr-run: resuming from step 1 of 2" in said


def test_an_interrupted_dpmpp_run_keeps_its_history_in_the_checkpoint_and_resumes_bit_identically(tiny_build, clip, tmp_path):
    import svsr
    from svsr.runtime.jobs import Interrupted, ShotJob, discard_if_nothing_done, noise_factory, plan_input
    from svsr.runtime.jobs.resume import load_checkpoint

    options = svsr.VideoOptions(num_inference_steps=3, scheduler="dpmpp-2m", scene_split=False, seed=5, tile="off")
    plans = [plan_input(clip, tmp_path / name, options) for name in ("whole", "resumed")]
    try:
        with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
            def job(plan, progress=None) -> ShotJob:
                return ShotJob(upscaler.pipeline, plan, plan.shots[0], noise_factory(options), options, build_dir=tiny_build, progress=progress)

            whole = read_png_folder(job(plans[0]).run())
            with pytest.raises(Interrupted, match="keeps the work up to step 2 of 3"):
                job(plans[1], CtrlCAfter(8)).run()  # two timesteps of 4 frames, the second one reading the first one's history
            checkpoint = load_checkpoint(plans[1].shot_work(plans[1].shots[0]))
            assert {"latents0.f32", "history0.f32"} <= set(checkpoint.files) and checkpoint.options["scheduler"] == "dpmpp-2m"
            resumed = read_png_folder(job(plans[1]).run())
    finally:
        for plan in plans:
            discard_if_nothing_done(plan)
    assert _same_frames(resumed, whole)
