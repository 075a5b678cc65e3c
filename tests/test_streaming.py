"""Exact StableVSR on clips of any length: the clip store, spills, flow recomputation, resume after interruption."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import svsr
from svsr.contract.errors import InputError
from svsr.contract.noise import PhiloxNoise
from svsr.device.noise import TorchNoise
from svsr.runtime.sampling.clip_store import ClipStore, StoreLayout, parse_memory_size
from svsr.runtime.jobs.resume import CHECKPOINT_NAME
from tests.conftest import random_frames, svsr_run, write_png_folder, read_png_folder

REPO = Path(__file__).resolve().parents[1]




@pytest.fixture(scope="module")
def ort_upscaler(tiny_build):
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        yield upscaler


# -- the clip store -------------------------------------------------------------------------------
def test_memory_sizes_parse_and_bad_ones_are_one_sentence():
    assert parse_memory_size("512M") == 512 * 2**20
    assert parse_memory_size("8G") == 8 * 2**30
    assert parse_memory_size("1.5g") == int(1.5 * 2**30)
    assert parse_memory_size("64KiB") == 64 * 2**10
    assert parse_memory_size("4096") == 4096
    for bad in ("", "lots", "-1G", "0", "nanG", "1X"):
        with pytest.raises(InputError, match="is not a memory size; write it like 512M"):
            parse_memory_size(bad)


def test_store_keeps_what_fits_in_ram_and_spills_the_rest(tmp_path):
    layout = StoreLayout(10, 32, 48)
    roomy = ClipStore(layout, tmp_path / "a", budget=1 << 30)
    assert roomy.spilled == [] and roomy.in_ram_bytes == layout.bytes_of("lr") + layout.bytes_of("flows")
    tight = ClipStore(layout, tmp_path / "b", budget=layout.bytes_of("lr") + 1000)
    assert tight.spilled == ["flows_fwd", "flows_bwd"] and tight.in_ram_bytes == layout.bytes_of("lr")
    flow = np.arange(np.prod(layout.flow_shape), dtype=np.float32).reshape(layout.flow_shape)
    tight.fwd.write(3, flow)
    assert np.array_equal(tight.fwd.read(3), flow)
    assert (tmp_path / "b" / "flows_fwd.f32").stat().st_size == 9 * flow.nbytes
    for store in (roomy, tight):
        store.close()


def test_a_full_disk_is_one_sentence_naming_the_folder(tmp_path, monkeypatch):
    def no_space(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)  # test double for a full disk
    with pytest.raises(InputError, match=r"the work folder .* has no room for .* MiB .*--work-dir"):
        ClipStore(StoreLayout(10, 32, 48), tmp_path / "w", budget=0)


# -- exact for any length -------------------------------------------------------------------------
def test_a_300_frame_clip_spilled_to_disk_equals_the_reference_and_the_ram_run(ort_upscaler, tiny_build):
    """300 frames of 32x48 with 16 MiB of host memory: the store spills its flows to files."""
    frames = random_frames(300, 32, 48, seed=11)
    sampler = ort_upscaler.pipeline
    spilled = sampler.upscale(frames, 1, noise=TorchNoise(5), host_memory=16 * 2**20)
    in_ram = sampler.upscale(frames, 1, noise=TorchNoise(5), host_memory=1 << 30)
    assert all(np.array_equal(a, b) for a, b in zip(spilled, in_ram))
    with svsr.Upscaler.open(backend="reference", weights=tiny_build / "checkpoint") as reference:
        want = reference.upscale(frames, 1, seed=5, noise="torch")
    worst = max(float(np.abs(a - b).max()) for a, b in zip(spilled, want))
    print(f"300 frames, spilled store vs whole-clip reference: max abs {worst:.2e}")
    assert worst < 1e-4


def test_recomputing_flows_per_frame_step_gives_the_stored_flow_result(ort_upscaler, tmp_path):
    source = write_png_folder(tmp_path / "in", random_frames(5, 32, 40, seed=3))
    stored = ort_upscaler.upscale_video(source, tmp_path / "stored", num_inference_steps=2, flows="store")
    again = ort_upscaler.upscale_video(source, tmp_path / "recomputed", num_inference_steps=2, flows="recompute")
    a, b = read_png_folder(stored), read_png_folder(again)
    assert len(a) == 5 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_philox_noise_makes_runs_reproducible(ort_upscaler):
    frames = random_frames(3, 32, 32, seed=2)
    a = ort_upscaler.upscale(frames, 2, seed=7)
    b = ort_upscaler.upscale(frames, 2, seed=7, noise=PhiloxNoise(7))
    c = ort_upscaler.upscale(frames, 2, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert max(float(np.abs(x - z).max()) for x, z in zip(a, c)) > 1e-3


# -- resume -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resume_input(tmp_path_factory):
    return write_png_folder(tmp_path_factory.mktemp("resume") / "in", random_frames(6, 32, 36, seed=21))


@pytest.fixture(scope="module")
def uninterrupted(tiny_build, resume_input, tmp_path_factory):
    results = {}
    for noise in ("philox", "torch"):
        out = tmp_path_factory.mktemp(f"plain-{noise}") / "out"
        done = svsr_run(str(resume_input), "-o", str(out), "--model", str(tiny_build), "--steps", "3", "--noise", noise, "--seed", "3", "--quiet")
        assert done.returncode == 0, done.stderr
        results[noise] = read_png_folder(out)
    return results


@pytest.mark.parametrize("noise", ["philox", "torch"])
@pytest.mark.parametrize("crash_at", ["flows:2", "step:1:4", "decode:3"])
def test_sigkill_then_rerun_resumes_bit_identically(tiny_build, resume_input, uninterrupted, tmp_path, noise, crash_at):
    out = tmp_path / "out"
    args = [str(resume_input), "-o", str(out), "--model", str(tiny_build), "--steps", "3", "--noise", noise, "--seed", "3",
            "--host-memory", "1M"]  # fmt: skip
    killed = svsr_run(*args, crash_at=crash_at)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()
    work = tmp_path / ".out.svsr-work"
    assert work.is_dir()
    resumed = svsr_run(*args)
    assert resumed.returncode == 0, resumed.stderr
    if crash_at != "flows:2":  # a checkpoint exists once the initial latents are drawn
        expected = {"step:1:4": "resuming from step 1 of 3", "decode:3": "resuming from step 3 of 3"}[crash_at]
        assert expected in resumed.stderr
    got = read_png_folder(out)
    assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(got, uninterrupted[noise]))
    assert not work.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ctrl_c_keeps_the_checkpoint_exits_130_and_a_rerun_resumes(tiny_build, resume_input, tmp_path):
    out = tmp_path / "out"
    args = [str(resume_input), "-o", str(out), "--model", str(tiny_build), "--steps", "40", "--seed", "3"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from svsr.cli import run_main; sys.exit(run_main())", *args, "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        # a terminal starts svsr-run with SIGINT at its default; a test process may have come to ignore it (an ignored
        # signal is inherited across exec, and Python then installs no KeyboardInterrupt handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    checkpoint = tmp_path / ".out.svsr-work" / "shot00000" / CHECKPOINT_NAME  # one shot: the whole input
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if checkpoint.exists() and json.loads(checkpoint.read_text())["steps_done"] >= 2:
            break
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted" in err and "rerun the same command to resume" in err and err.count("\n") == 1
    steps_done = json.loads(checkpoint.read_text())["steps_done"]
    assert 2 <= steps_done < 40
    resumed = svsr_run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {steps_done} of 40" in resumed.stderr
    plain = svsr_run(str(resume_input), "-o", str(tmp_path / "plain"), "--model", str(tiny_build), "--steps", "40", "--seed", "3", "--quiet")
    assert plain.returncode == 0, plain.stderr
    assert all(np.array_equal(a, b) for a, b in zip(read_png_folder(out), read_png_folder(tmp_path / "plain")))


def test_a_checkpoint_of_another_job_is_named_and_restart_discards_it(tiny_build, resume_input, tmp_path):
    out = tmp_path / "out"
    base = [str(resume_input), "-o", str(out), "--model", str(tiny_build), "--steps", "3", "--quiet"]
    assert svsr_run(*base, "--seed", "1", crash_at="step:1:2").returncode == -signal.SIGKILL
    other = svsr_run(*base, "--seed", "2")
    assert other.returncode == 2
    assert "another job" in other.stderr and "noise seed" in other.stderr and "--restart" in other.stderr
    assert other.stderr.count("\n") == 1 and not out.exists()
    fresh = svsr_run(*base, "--seed", "2", "--restart")
    assert fresh.returncode == 0, fresh.stderr
    assert len(read_png_folder(out)) == 6


def test_an_unwritable_work_folder_is_one_sentence(tiny_build, resume_input, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = svsr_run(str(resume_input), "-o", str(tmp_path / "out"), "--model", str(tiny_build), "--steps", "1", "--quiet",
                    "--work-dir", str(blocker / "work"))  # fmt: skip
    assert done.returncode == 2
    assert "cannot create the work folder" in done.stderr and "--work-dir" in done.stderr and done.stderr.count("\n") == 1


def test_a_disk_that_fills_up_mid_run_is_one_sentence_with_the_space_needed(ort_upscaler, tmp_path, monkeypatch):
    source = write_png_folder(tmp_path / "in", random_frames(3, 32, 32, seed=4))
    real_pwrite = os.pwrite
    calls = {"n": 0}

    def filling_disk(fd, data, offset):  # test double: the disk fills up after a few writes
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", filling_disk)
    with pytest.raises(InputError, match=r"is full .* needs up to \d+ MiB there: free space or choose work_dir='DIR'"):  # the API's spelling
        ort_upscaler.upscale_video(source, tmp_path / "out", num_inference_steps=1, host_memory="1M")
    assert not (tmp_path / "out").exists()


def test_dpmpp_with_tiles_resumes_bit_identically_after_sigkill(tiny_build, resume_input, tmp_path):
    """DPM-Solver++ 2M keeps one x0 history per frame: its planes are part of the checkpoint, tiles or not."""
    args = [str(resume_input), "--model", str(tiny_build), "--steps", "3", "--scheduler", "dpmpp-2m", "--seed", "3",
            "--tile", "32x32", "--tile-overlap", "8", "--host-memory", "1M"]  # fmt: skip
    plain = svsr_run(*args, "-o", str(tmp_path / "plain"), "--quiet")
    assert plain.returncode == 0, plain.stderr
    out = tmp_path / "out"
    assert svsr_run(*args, "-o", str(out), "--quiet", crash_at="step:2:3").returncode == -signal.SIGKILL
    assert (tmp_path / ".out.svsr-work" / "shot00000" / "history0.f32").exists()
    resumed = svsr_run(*args, "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 2 of 3" in resumed.stderr
    got, want = read_png_folder(out), read_png_folder(tmp_path / "plain")
    assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(got, want))
