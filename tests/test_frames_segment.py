"""``svsr-run --frames START:END`` / ``frames="START:END"``: a part of the input upscaled as its own exact clip."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import svsr
from svsr import cli
from svsr.contract.errors import InputError
from svsr.contract.video_options import FrameRange, VideoOptions
from tests.conftest import read_png_folder, svsr_run, write_png_folder
from tests.support.media import VFR_TIMES, gradient_frames, make_video, make_vfr_video

STEPS = 1
SIDE = 32  # the smallest frames svsr takes: the tiny preset runs them in well under a second per frame


def stored_times(path) -> list[Fraction]:
    """Each frame's stored presentation time in seconds (pts x time base: no origin taken off), in display order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(frame.pts * stream.time_base for frame in container.decode(stream))


def same_times(got: list[Fraction], wanted: list[Fraction]) -> bool:
    """Frame for frame within 1 ms: .mkv stores milliseconds, and .mp4 keeps a part's start in its edit list, in milliseconds."""
    return len(got) == len(wanted) and all(abs(a - b) <= Fraction(1, 1000) for a, b in zip(got, wanted))


def reader_times(path) -> list[Fraction]:
    from svsr.runtime.video import FrameReader

    with FrameReader(path) as reader:
        return [time for _, time in reader.timed()]


@pytest.fixture(scope="module")
def upscaler(tiny_build):
    with svsr.Upscaler.open(tiny_build, backend="ort") as opened:
        yield opened


@pytest.fixture(scope="module")
def cfr_clip(tmp_path_factory):
    """12 frames at 24 fps, 32x32, no sound."""
    return make_video(tmp_path_factory.mktemp("cfr") / "cfr.mp4", gradient_frames(12, SIDE, SIDE), fps=24)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """20 frames at irregular times (tests.support.media.VFR_TIMES), with AAC sound."""
    from pathlib import Path

    path = Path(tmp_path_factory.mktemp("vfr")) / "vfr.mp4"
    return make_vfr_video(path, "libx264", "yuv420p", Fraction(1, 90000), "aac", frames=gradient_frames(20, SIDE, SIDE))


# -- the range itself --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, start, end, in_seconds", [
    ("10:50", 10, 50, False), (":50", None, 50, False), ("100:", 100, None, False),
    ("10s:14s", Fraction(10), Fraction(14), True), ("1.5s:3s", Fraction(3, 2), Fraction(3), True), (":2.5s", None, Fraction(5, 2), True),
])  # fmt: skip
def test_ranges_parse_as_indices_or_seconds(text, start, end, in_seconds):
    assert FrameRange.parse(text) == FrameRange(start, end, in_seconds)
    assert VideoOptions(frames=text).frame_range == FrameRange(start, end, in_seconds)


@pytest.mark.parametrize("text, why", [
    ("5:2", "ends before it starts"), ("4:4", "selects no frame"), ("-1:3", "cannot be negative"), ("-1s:3s", "cannot be negative"),
    ("abc", "is not START:END"), ("a:b", "neither a frame index nor a time"), ("1.5:3", "neither a frame index nor a time"),
    ("1:3s", "mixes a frame index with a time"), (":", "neither START nor END"), ("1:2:3", "is not START:END"), ("xs:2s", "not a time"),
])  # fmt: skip
def test_bad_ranges_are_one_sentence_spelled_as_each_door_writes_them(text, why):
    with pytest.raises(InputError) as from_python:
        VideoOptions(frames=text)
    with pytest.raises(InputError) as from_cli:
        VideoOptions.spelled(VideoOptions.cli_spelling, frames=text)
    assert str(from_python.value).startswith(f"frames={text!r} ") and why in str(from_python.value)
    assert str(from_cli.value) == str(from_python.value).replace(f"frames={text!r}", f"--frames {text}")
    for sentence in (str(from_python.value), str(from_cli.value)):
        assert sentence.endswith(".") and sentence.count(". ") == 0 and "\n" not in sentence


def test_a_range_that_is_not_a_string_is_refused():
    with pytest.raises(InputError, match=r"^frames=\(1, 5\) is not a frame range; write it as a string"):
        VideoOptions(frames=(1, 5))


# -- exactly the frames of the part, at their original times ------------------------------------------
def test_an_index_range_gives_exactly_those_frames_at_their_times_and_says_so(upscaler, cfr_clip, tmp_path):
    messages: list[str] = []
    out = upscaler.upscale_video(cfr_clip, tmp_path / "part.mp4", num_inference_steps=STEPS, frames="3:7", report=messages.append)
    assert stored_times(cfr_clip)[3:7] == [Fraction(k, 24) for k in range(3, 7)]
    assert same_times(stored_times(out), [Fraction(k, 24) for k in range(3, 7)])
    assert same_times(reader_times(out), [Fraction(k, 24) for k in range(4)])  # the reader measures from the output's own first frame
    assert "cfr.mp4: upscaling frames 3-6 of 12 (0.12 s-0.29 s) as their own clip" in "\n".join(messages)


def test_open_ended_ranges_reach_the_input_start_or_end(upscaler, cfr_clip, tmp_path):
    head = upscaler.upscale_video(cfr_clip, tmp_path / "head.mp4", num_inference_steps=STEPS, frames=":2")
    tail = upscaler.upscale_video(cfr_clip, tmp_path / "tail.mp4", num_inference_steps=STEPS, frames="9:")
    assert same_times(stored_times(head), [Fraction(0), Fraction(1, 24)])
    assert same_times(stored_times(tail), [Fraction(k, 24) for k in (9, 10, 11)])


def test_a_time_range_selects_the_frames_shown_in_it_on_a_vfr_clip(upscaler, vfr_clip, tmp_path):
    messages: list[str] = []
    out = upscaler.upscale_video(vfr_clip, tmp_path / "part.mkv", num_inference_steps=STEPS, frames="0.1s:0.3s", no_audio=True,
                                 report=messages.append)  # fmt: skip
    wanted = [t for t in VFR_TIMES if Fraction(1, 10) <= t < Fraction(3, 10)]
    assert len(wanted) == 5 and stored_times(out) == wanted  # whole milliseconds: exact in .mkv
    first = VFR_TIMES.index(wanted[0])
    shown_until = VFR_TIMES[first + 5]  # the last frame is shown until the next one
    assert f"upscaling frames {first}-{first + 4} of 20 ({float(wanted[0]):.2f} s-{float(shown_until):.2f} s) as their own clip" in "\n".join(messages)
    with av.open(str(out)) as container:
        assert not container.streams.audio


def test_the_part_is_upscaled_as_its_own_exact_clip(upscaler, tmp_path):
    """Frames 2..5 of a frame folder give exactly what upscaling those four frames alone gives."""
    frames = gradient_frames(8, SIDE, SIDE)
    folder = tmp_path / "frames"
    write_png_folder(folder, frames)
    out = upscaler.upscale_video(folder, tmp_path / "out", num_inference_steps=STEPS, seed=3, frames="2:6")
    alone = upscaler.upscale(frames[2:6], num_inference_steps=STEPS, seed=3)
    from svsr.runtime.jobs import to_uint8

    written = read_png_folder(out)
    assert len(written) == 4
    for got, expected in zip(written, alone):
        np.testing.assert_array_equal(got, to_uint8(expected))


# -- refused in one sentence, before any work --------------------------------------------------------
@pytest.mark.parametrize("frames, sentence", [
    ("10:20", "--frames 10:20 reaches past the end of the input: cfr.mp4 has 12 frames (0 to 11, 0.50 s); end it at 12 or leave END out."),
    ("12:", "--frames 12: starts past the end of the input: cfr.mp4 has 12 frames (0 to 11, 0.50 s); start it earlier."),
    ("0.25s:1s", "--frames 0.25s:1s reaches past the end of the input: cfr.mp4 has 12 frames (0 to 11, 0.50 s); end it at 0.5s or leave END out."),
    ("0.01s:0.02s", "--frames 0.01s:0.02s selects no frame: cfr.mp4 has 12 frames (0 to 11, 0.50 s) and none is shown in that span; widen it."),
])  # fmt: skip
def test_a_range_beyond_the_input_is_one_sentence_naming_its_length(frames, sentence, tiny_build, cfr_clip, tmp_path, capsys):
    code = cli.run_main([str(cfr_clip), "-o", str(tmp_path / "out.mp4"), "--model", str(tiny_build), "--quiet", "--frames", frames])
    assert code == 2
    assert capsys.readouterr().err == f"svsr: error: {sentence}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_part_of_an_input_with_sound_needs_no_audio(upscaler, vfr_clip, tmp_path):
    with pytest.raises(InputError) as refused:
        upscaler.upscale_video(vfr_clip, tmp_path / "part.mkv", num_inference_steps=STEPS, frames="0s:0.2s")
    assert str(refused.value) == ("frames='0s:0.2s' upscales a part of vfr.mp4, whose audio is copied only whole; "
                                  "add no_audio=True to upscale that part without sound.")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_the_default_output_is_named_after_the_part(cfr_clip):
    assert svsr.api.resolve_output(cfr_clip, None, VideoOptions(frames="3:7")).name == "cfr_x4_frames3-7.mp4"
    assert svsr.api.resolve_output(cfr_clip, None, VideoOptions(frames="1.5s:3s")).name == "cfr_x4_frames1_5s-3s.mp4"


# -- resume ------------------------------------------------------------------------------------------
def test_an_interrupted_part_resumes_and_another_range_is_refused(tiny_build, cfr_clip, tmp_path):
    out = tmp_path / "part.mkv"
    argv = [str(cfr_clip), "-o", str(out), "--model", str(tiny_build), "--backend", "ort", "--steps", "2", "--quiet"]
    crashed = svsr_run(*argv, "--frames", "2:8", crash_at="step:1:3")
    assert crashed.returncode != 0 and not out.exists()
    other = svsr_run(*argv, "--frames", "2:9")
    assert other.returncode == 2 and "holds an interrupted run of another job" in other.stderr and "--restart" in other.stderr
    assert other.stderr.count("\n") == 1, other.stderr
    resumed = svsr_run(*argv[:-1], "--frames", "2:8")  # not quiet: it says where it resumes
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 1 of 2" in resumed.stderr
    assert same_times(stored_times(out), [Fraction(k, 24) for k in range(2, 8)])
