"""The one output rule (issue 22): where an output goes, in one table, and audio dropped only with --no-audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from svsr.cli import run_main
from svsr.contract.errors import InputError
from svsr.contract.video_options import VideoOptions
from svsr.runtime.video import output_rule
from tests.support.media import make_video

API = VideoOptions()
CLI = VideoOptions.spelled(VideoOptions.cli_spelling)
REFUSED = "refused"

# input (kind) x -o form -> (output, kind) or a refusal whose sentence holds the words given.
# -o forms: none, a file with an extension, an existing folder, a missing path, a trailing slash, and
# the same folder given to many inputs (a glob, or several paths).
RULE = [
    # a video gives a video
    ("in/clip.mp4", "video", None, False, False, ("in/clip_x4.mp4", "video")),
    ("in/clip.mkv", "video", "out.mkv", False, False, ("out.mkv", "video")),
    ("in/clip.mp4", "video", "out", True, False, ("out/clip_x4.mp4", "video")),  # an existing folder
    ("in/clip.mp4", "video", "out/", False, False, ("out/clip_x4.mp4", "video")),  # a trailing slash
    ("in/clip.mp4", "video", "out", False, True, ("out/clip_x4.mp4", "video")),  # one of many, or a glob matching one
    ("in/cut.gif", "video", None, False, False, ("in/cut_x4.mp4", "video")),  # the codec's container when the input's cannot hold it
    ("in/clip.mp4", "video", "cp.gif", False, False, (REFUSED, "-o cp.gif", "a video gives a video", "cp.mp4")),
    ("in/clip.mp4", "video", "out", False, False, (REFUSED, "-o out", "out.mp4", "out/")),  # a missing path without a suffix
    ("in/clip.mp4", "video", "out.webm", False, False, (REFUSED, "cannot hold h264", "--codec vp9")),
    # a single image gives a single image
    ("in/img.png", "image", None, False, False, ("in/img_x4.png", "image")),
    ("in/img.jpg", "image", "s.png", False, False, ("s.png", "image")),
    ("in/img.png", "image", "out", True, False, ("out/img_x4.png", "image")),
    ("in/img.png", "image", "out/", False, False, ("out/img_x4.png", "image")),
    ("in/img.png", "image", "out", False, True, ("out/img_x4.png", "image")),
    ("in/img.png", "image", "s.jpg", False, False, (REFUSED, "-o s.jpg", "s.png")),
    ("in/img.png", "image", "out", False, False, (REFUSED, "-o out", "out.png", "out/")),
    ("in/img.png", "image", "s.mp4", False, False, ("s.mp4", "video")),  # -o naming a video asks for one
    # a frame folder gives a frame folder
    ("in/frames", "frames", None, False, False, ("in/frames_x4", "frames")),
    ("in/frames", "frames", "out", False, False, ("out", "frames")),  # a missing path is the folder itself
    ("in/frames", "frames", "out", True, False, ("out/frames_x4", "frames")),
    ("in/frames", "frames", "out/", False, False, ("out/frames_x4", "frames")),
    ("in/frames", "frames", "out", False, True, ("out/frames_x4", "frames")),
    ("in/frames", "frames", "f.mkv", False, False, ("f.mkv", "video")),
    ("in/frames", "frames", "f.png", False, False, (REFUSED, "-o f.png", "a frame folder gives a frame folder")),
]


@pytest.mark.parametrize("source, kind, output, exists_as_folder, many, want", RULE,
                         ids=[f"{r[1]}:{r[2]}{':folder' if r[3] else ''}{':many' if r[4] else ''}" for r in RULE])  # fmt: skip
def test_the_output_rule(source, kind, output, exists_as_folder, many, want):
    if want[0] == REFUSED:
        with pytest.raises(InputError) as refused:
            output_rule(source, kind, output, many=many, output_is_folder=exists_as_folder, options=CLI)
        sentence = str(refused.value)
        assert all(words in sentence for words in want[1:]), sentence
        assert sentence.count(".") >= 1 and "\n" not in sentence
        with pytest.raises(InputError, match=r"output='|codec="):  # the API's user reads the keyword instead
            output_rule(source, kind, output, many=many, output_is_folder=exists_as_folder, options=API)
        return
    target = output_rule(source, kind, output, many=many, output_is_folder=exists_as_folder, options=CLI)
    assert (target.path, target.kind) == (Path(want[0]), want[1])


def test_many_inputs_without_an_output_folder_are_refused():
    with pytest.raises(InputError, match=r"several inputs need an output folder; add -o DIR/"):
        output_rule("a.mp4", "video", None, many=True, output_is_folder=False, options=CLI)


# -- end to end: the rule as svsr-run applies it, and audio ------------------------------------
def _clip(path: Path, audio: str | None = None) -> Path:
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(2)]
    return make_video(path, frames, fps=12, audio=audio)


def test_one_input_written_either_way_gives_the_same_output(tiny_build, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    source = _clip(tmp_path / "in" / "cut2.mp4")
    args = ["--model", str(tiny_build), "--steps", "1", "--quiet", "--no-scene-split"]
    assert run_main([str(source), "-o", f"{tmp_path / 'single'}/", *args]) == 0
    assert run_main([str(tmp_path / "in" / "*.mp4"), "-o", str(tmp_path / "glob"), *args]) == 0
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == ["cut2_x4.mp4"]
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == ["cut2_x4.mp4"]


def test_a_single_image_gives_a_single_image(tiny_build, tmp_path):
    from PIL import Image

    source = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 36, 3), dtype=np.uint8)).save(source)
    assert run_main([str(source), "-o", str(tmp_path / "s.png"), "--model", str(tiny_build), "--steps", "1", "--quiet"]) == 0
    assert (tmp_path / "s.png").is_file() and Image.open(tmp_path / "s.png").size == (144, 128)
    assert run_main([str(source), "--model", str(tiny_build), "--steps", "1", "--quiet"]) == 0
    assert (tmp_path / "img_x4.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "img_x4.png", "s.png"]  # no work folder left


def test_audio_the_output_cannot_hold_is_refused_unless_no_audio(tiny_build, tmp_path, capsys):
    source = _clip(tmp_path / "talk.mp4", audio="aac")
    base = [str(source), "--model", str(tiny_build), "--steps", "1", "--codec", "vp9"]
    code = run_main([*base, "-o", str(tmp_path / "out.webm"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert ".webm files cannot hold the aac audio" in err and "--no-audio" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]  # refused at the door: no work folder, no output
    assert run_main([*base, "-o", str(tmp_path / "out.webm"), "--no-audio"]) == 0
    said = capsys.readouterr().err
    assert "audio is not copied (--no-audio)" in said
    import av

    with av.open(str(tmp_path / "out.webm")) as container:
        assert not container.streams.audio and len(container.streams.video) == 1


def test_the_api_names_its_keyword_for_dropped_audio(tiny_build, tmp_path):
    import svsr

    source = _clip(tmp_path / "talk.mp4", audio="aac")
    with svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        with pytest.raises(InputError, match=r"cannot hold the aac audio .* or add no_audio=True to drop it"):
            upscaler.upscale_video(source, tmp_path / "out.webm", num_inference_steps=1, codec="vp9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]
