"""Every option of every CLI is bounded at the door, and no user-reachable failure is a traceback."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from svsr import cli

PARSERS = {
    "svsr-export": (cli.export_parser, cli.export_main),
    "svsr-run": (cli.run_parser, cli.run_main),
    "svsr-bench": (cli.bench_parser, cli.bench_main),
    "svsr-doctor": (cli.doctor_parser, cli.doctor_main),
}

# per option: malformed and out-of-range values, each refused in one sentence before any work
BAD_VALUES = {
    "svsr-export": {
        "--seed": ["-1", "x", "4294967296", "1.5"],
        "--opset": ["16", "99", "seventeen"],
        "--precision": ["fp8", ""],
        "--vae-precision": ["int8"],
        "--flow-precision": ["auto"],
        "--preset": ["huge"],
        "--resolution": ["320", "16x16", "axb", "-320x180"],
        "--min": ["0x0"],
        "--opt": ["320x"],
        "--max": ["1e3x2"],
        "--batch": ["0", "4:2:1", "a:b:c"],
        "--trt-version": ["9", "eleven", "12.0"],
        "--calibration-frames": ["/no/such/folder"],
        "--tile": ["8x8", "66x66", "big", "auto", "1024x1024"],
    },
    "svsr-run": {
        "--steps": ["0", "-3", "many", "10001", "1e3"],
        "--scheduler": ["euler", "DDIM", ""],
        "--eta": ["-0.1", "1.5", "nan", "x"],
        "--tile": ["8x8", "30x64", "66x66", "big", "0", "64x"],
        "--tile-overlap": ["-1", "x", "1.5"],
        "--flow-scale": ["3", "8", "0", "-2", "x", "2.0", "autox"],
        "--seed": ["-1", "18446744073709551616", "0x10"],
        "--noise": ["gauss"],
        "--backend": ["cuda"],
        "--precision": ["int4"],
        "--vae-precision": ["auto"],
        "--flow-precision": ["fp64"],
        "--host-memory": ["0", "lots", "-1G", "512K", "nanG"],
        "--flows": ["cache"],
        "--fps": ["0", "-24", "abc", "1/0", "5000"],
        "--scene-threshold": ["0", "-5", "nan", "300", "inf"],
        "--min-shot": ["0", "-1", "1.5", "100001"],
        "--frames": ["5:2", "4:4", "abc", "1:3s", ":", "1.5:3", "xs:2s"],
        "--ray": ["somewhere", "10.0.0.1"],
        "--ray-workers": ["0", "-2", "two"],
        "--codec": ["av1", "H264"],
        "--crf": ["-1", "64", "best"],
        "--chunk": ["8"],
    },
    "svsr-bench": {
        "--backend": ["onnx"],
        "--precision": ["fp8"],
        "--resolution": ["big", "8x8"],
        "--frames": ["0", "x"],
        "--steps": ["0", "100000"],
        "--long-clip": ["-1", "lots"],
        "--host-memory": ["1K", "x"],
        "--warmup": ["-1", "y"],
        "--repeats": ["0", "z"],
    },
    "svsr-doctor": {},  # paths only: checked by svsr.doctor (test below)
}
# options whose values are free text or paths checked where they are used (covered by other tests)
FREE = {
    "svsr-export": {"--weights", "--out", "--prompt"},
    "svsr-run": {"--output", "--model", "--weights", "--work-dir", "--report"},
    "svsr-bench": {"--model", "--weights", "--json", "--markdown", "--plot"},
    "svsr-doctor": {"--model", "--json", "--work-dir"},
}


def value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Long option strings of every option that takes a value (flags and --help excluded)."""
    found = set()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue
        found.add(max(action.option_strings, key=len))
    return found


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_value_option_has_bad_values_listed(prog):
    make, _ = PARSERS[prog]
    options = value_options(make())
    assert options == set(BAD_VALUES[prog]) | FREE[prog], "add the new option's bad values to BAD_VALUES (or to FREE)"


@pytest.fixture(scope="module")
def small_input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("options") / "frames"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def base_argv(prog: str, tiny_build, small_input, tmp_path) -> list[str]:
    if prog == "svsr-export":
        return ["--preset", "tiny", "--out", str(tmp_path / "build"), "--onnx-only", "--quiet"]
    if prog == "svsr-run":
        return [str(small_input), "-o", str(tmp_path / "out"), "--model", str(tiny_build), "--quiet"]
    if prog == "svsr-doctor":
        return ["--work-dir", str(tmp_path / "doctor")]
    return ["--model", str(tiny_build)]


CASES = [(prog, option, value) for prog, table in sorted(BAD_VALUES.items()) for option, values in table.items() for value in values]


@pytest.mark.parametrize("prog, option, value", CASES, ids=[f"{p}{o}={v}" for p, o, v in CASES])
def test_bad_values_are_refused_in_one_sentence_before_any_work(prog, option, value, tiny_build, small_input, tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started despite a bad option value")

    import svsr.api

    for name in ("export_model", "upscale_videos"):  # test doubles: any call means the door let the value in
        monkeypatch.setattr(svsr.api, name, no_work)
    monkeypatch.setattr("svsr.bench.run_bench", no_work)
    _, main = PARSERS[prog]
    argv = base_argv(prog, tiny_build, small_input, tmp_path)
    if prog == "svsr-export" and option == "--preset":
        argv = argv[2:]
    code = main([*argv, option, value])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("svsr: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert option in err or option.lstrip("-") in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "build").exists()


def test_steps_above_the_schedulers_training_timesteps_name_the_range(tiny_build, small_input, tmp_path, capsys):
    code = cli.run_main([str(small_input), "-o", str(tmp_path / "out"), "--model", str(tiny_build), "--steps", "1001", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--steps 1001 is more than the 1000 training timesteps" in err and "use 1 to 1000" in err


def test_crf_is_bounded_per_codec(tiny_build, small_input, tmp_path, capsys):
    code = cli.run_main([str(small_input), "-o", str(tmp_path / "o.mp4"), "--model", str(tiny_build), "--crf", "60", "--quiet"])
    assert code == 2 and "--crf 60 is outside 0..51 for h264" in capsys.readouterr().err


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_an_internal_error_is_one_sentence_with_a_pointer_to_debug(prog, tiny_build, small_input, tmp_path, capsys, monkeypatch):
    """A test double makes the work fail unexpectedly: the user sees one sentence, --debug shows the traceback."""

    def broken(*args, **kwargs):
        raise KeyError("an unexpected internal failure (test double)")

    import svsr.api

    monkeypatch.setattr(svsr.api, "export_model", broken)
    monkeypatch.setattr(svsr.api, "upscale_videos", broken)
    monkeypatch.setattr("svsr.bench.run_bench", broken)
    monkeypatch.setattr("svsr.doctor.doctor", broken)
    _, main = PARSERS[prog]
    argv = base_argv(prog, tiny_build, small_input, tmp_path)
    assert main(argv) == cli.INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("svsr: error: internal error (KeyError:") and "rerun with --debug" in err
    assert main([*argv, "--debug"]) == cli.INTERNAL_ERROR
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("option, make", [("--model", lambda d: d / "no-such-build"), ("--json", lambda d: d), ("--work-dir", lambda d: (d / "f").write_text("x") and d / "f")])
def test_doctor_paths_are_checked_in_one_sentence(option, make, tmp_path, capsys):
    assert cli.doctor_main([option, str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("svsr: error: ") and err.count("\n") == 1 and option in err


def test_steps_that_the_offset_pushes_past_the_table_are_refused():
    from svsr.contract.errors import InputError
    from svsr.contract.scheduler import step_coefficients
    from svsr.contract.video_options import VideoOptions

    config = {"num_train_timesteps": 1000, "timestep_spacing": "leading", "steps_offset": 1, "prediction_type": "v_prediction"}
    assert VideoOptions(num_inference_steps=999).scheduler_problem(config, "b") is None
    problem = VideoOptions(num_inference_steps=1000).scheduler_problem(config, "b", VideoOptions.cli_spelling)
    assert problem.startswith("--steps 1000 reaches timestep 1000 ") and problem.endswith("use 1 to 999.")
    with pytest.raises(InputError, match="beyond the scheduler's 1000 training timesteps"):
        step_coefficients(config, np.linspace(0.9999, 0.01, 1000), 1000)


# -- svsr-run is generated from VideoOptions -------------------------------------------------------
def test_every_video_option_is_one_run_option_and_back():
    """Each VideoOptions field is exactly one svsr-run option (flag and dest from its metadata), and parsing gives the defaults."""
    from dataclasses import fields

    from svsr.contract.video_options import VideoOptions

    parser = cli.run_parser()
    by_dest = {action.dest: action for action in parser._actions}
    group = next(g for g in parser._action_groups if g.title == "video options")
    assert sorted(a.dest for a in group._group_actions) == sorted(f.name for f in fields(VideoOptions))
    for item in fields(VideoOptions):
        assert by_dest[item.name].option_strings == [item.metadata["cli"].flag]
    args = parser.parse_args(["in.mp4"])
    assert VideoOptions.from_args(args) == VideoOptions()
    args = parser.parse_args(["in.mp4", "--steps", "3", "--no-scene-split", "--host-memory", "1G", "--fps", "30000/1001", "--restart"])
    assert VideoOptions.from_args(args) == VideoOptions(num_inference_steps=3, scene_split=False, host_memory=2**30, fps="30000/1001",
                                                        restart=True)  # fmt: skip
    args = parser.parse_args(["in.mp4", "--scheduler", "ddim", "--eta", "0.5", "--tile", "64x96", "--tile-overlap", "8"])
    assert VideoOptions.from_args(args) == VideoOptions(scheduler="ddim", eta=0.5, tile=(64, 96), tile_overlap=8)
    for text, scale in (("2", 2), ("1", 1), ("4", 4), ("AUTO", "auto"), (" auto ", "auto")):
        assert VideoOptions.from_args(parser.parse_args(["in.mp4", "--flow-scale", text])).flow_scale == scale


def test_flow_scale_is_normalised_from_python_and_bad_values_are_one_sentence():
    from svsr.contract.errors import InputError
    from svsr.contract.video_options import VideoOptions

    assert VideoOptions().flow_scale == "auto"
    assert VideoOptions(flow_scale=2).flow_scale == 2 and VideoOptions(flow_scale="1").flow_scale == 1
    assert VideoOptions(flow_scale="Auto").flow_scale == "auto" and VideoOptions().with_overrides(flow_scale=4).flow_scale == 4
    for bad in (3, 0, True, 2.0, "x", None):
        with pytest.raises(InputError) as refused:
            VideoOptions(flow_scale=bad)
        assert str(refused.value) == f"flow_scale={bad!r} is not a flow scale; use 4 (the original), 2, 1 or auto."


def test_export_tile_is_checked_before_any_work_and_refused_without_engines(tmp_path, capsys, monkeypatch):
    """svsr-export --tile takes the tile sizes svsr-run --tile does; a shape without engines to build is refused."""
    import svsr.api
    from svsr.contract.errors import InputError

    def no_work(*args, **kwargs):  # test double: any call means the door let the value in
        raise AssertionError("work started despite a bad --tile")

    monkeypatch.setattr(svsr.api, "export_model", no_work)
    out = str(tmp_path / "build")
    assert cli.export_main(["--preset", "tiny", "--out", out, "--tile", "30x64"]) == 2
    assert capsys.readouterr().err == "svsr: error: --tile 30x64 is below the smallest tile of 32x32 LR pixels; use 32 or more per side.\n"
    assert cli.export_main(["--preset", "tiny", "--out", out, "--tile", "64x66"]) == 2
    assert "--tile 64x66 has a side that is not a multiple of 4; use 68 instead of 66." in capsys.readouterr().err
    assert cli.export_main(["--preset", "tiny", "--out", out, "--tile", "64x64", "--onnx-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tile" in err and "--onnx-only builds none" in err
    assert cli.export_main(["--preset", "tiny", "--out", out, "--tile", "256x256", "--resolution", "320x180"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("svsr: error: --tile 256x256 is larger than the profile's largest frame 320x180") and err.count("\n") == 1
    assert not (tmp_path / "build").exists()
    assert svsr.api.engine_tile("96x64") == (96, 64) and svsr.api.engine_tile((64, 48)) == (64, 48)
    assert svsr.api.engine_tile(None) is None and svsr.api.engine_tile("off") is None  # engines over frame sizes
    with pytest.raises(InputError, match=r"^tile='auto' names no tile shape for engines; give HxW"):
        svsr.api.engine_tile("auto")


def test_export_tile_reaches_the_engine_builder(tiny_build, tmp_path, monkeypatch):
    """export_model(tile=...) hands the tile to the engine build (a recording double stands in for TensorRT)."""
    import shutil

    import svsr.api
    from svsr.contract.errors import InputError

    asked = {}

    def recording_build_engines(out, manifest, precision, profile, report, **keywords):  # test double of the engine builder
        asked.update(keywords)
        return {}

    monkeypatch.setattr("svsr.engines.builder.tensorrt_build_available", lambda: (True, ""))
    monkeypatch.setattr("svsr.engines.builder.build_engines", recording_build_engines)
    build = tmp_path / "build"
    shutil.copytree(tiny_build, build)
    svsr.api.export_model("preset:tiny", build, engines=True, tile="64x96")
    assert asked["tile"] == (64, 96)
    with pytest.raises(InputError, match="engines=False builds none"):
        svsr.api.export_model("preset:tiny", build, engines=False, tile=(64, 64))


def test_tile_and_scheduler_options_are_normalised_and_steps_default_per_scheduler():
    from svsr.contract.tiles import DEFAULT_OVERLAP
    from svsr.contract.video_options import VideoOptions, default_steps

    options = VideoOptions()
    assert (options.scheduler, options.eta, options.tile, options.tile_overlap) == ("ddpm", 0.0, "auto", DEFAULT_OVERLAP)
    assert options.num_inference_steps == default_steps("ddpm") == 50
    assert VideoOptions(tile="OFF").tile == "off" and VideoOptions(tile="128x64").tile == (128, 64) and VideoOptions(tile=96).tile == (96, 96)
    assert VideoOptions(tile=[64, 48]).tile_size == (64, 48) and VideoOptions(tile="auto").tile_size is None
    # a default step count follows the scheduler through overrides; a given one stays
    ddim = options.with_overrides(scheduler="ddim")
    assert ddim.num_inference_steps == default_steps("ddim")
    assert VideoOptions(num_inference_steps=7).with_overrides(scheduler="dpmpp-2m").num_inference_steps == 7
    assert VideoOptions(scheduler="dpmpp-2m").num_inference_steps == default_steps("dpmpp-2m")


# the same bad value from Python (keyword) and from svsr-run (option), and how each door spells it
SAME_SENTENCE = [
    ({"codec": "av1"}, ["--codec", "av1"], ("codec='av1'", "--codec av1")),
    ({"crf": 60}, ["--crf", "60"], ("crf=60", "--crf 60")),
    ({"codec": "vp9", "crf": 64}, ["--codec", "vp9", "--crf", "64"], ("crf=64", "--crf 64")),
    ({"num_inference_steps": 1001}, ["--steps", "1001"], ("num_inference_steps=1001", "--steps 1001")),
    ({"num_inference_steps": 0}, ["--steps", "0"], ("num_inference_steps=0", "--steps 0")),
    ({"host_memory": "512K"}, ["--host-memory", "512K"], ("host_memory='512K'", "--host-memory 512K")),
    ({"frames": "5:2"}, ["--frames", "5:2"], ("frames='5:2'", "--frames 5:2")),
    ({"frames": "0:99"}, ["--frames", "0:99"], ("frames='0:99'", "--frames 0:99")),  # beyond the input's 2 frames: known only once it is read
    ({"scheduler": "euler"}, ["--scheduler", "euler"], ("scheduler='euler'", "--scheduler euler")),
    ({"eta": 1.5}, ["--eta", "1.5"], ("eta=1.5", "--eta 1.5")),
    ({"tile": "8x8"}, ["--tile", "8x8"], ("tile='8x8'", "--tile 8x8")),
    ({"tile": "66x64"}, ["--tile", "66x64"], ("tile='66x64'", "--tile 66x64")),
    ({"flow_scale": 3}, ["--flow-scale", "3"], ("flow_scale=3", "--flow-scale 3")),
    ({"tile": "64x64", "tile_overlap": 32}, ["--tile", "64x64", "--tile-overlap", "32"],
     ("tile_overlap=32", "--tile-overlap 32", "tile='64x64'", "--tile 64x64")),  # names both options
]


@pytest.mark.parametrize("keywords, argv, spellings", SAME_SENTENCE, ids=[" ".join(c[1]) for c in SAME_SENTENCE])
def test_a_bad_value_is_the_same_sentence_from_python_and_from_the_cli(keywords, argv, spellings, tiny_build, small_input, tmp_path, capsys):
    import svsr
    from svsr.contract.errors import InputError

    with pytest.raises(InputError) as refused, svsr.Upscaler.open(tiny_build, backend="ort") as upscaler:
        upscaler.upscale_video(small_input, tmp_path / "api_out", **keywords)
    from_python = str(refused.value)
    assert not (tmp_path / "api_out").exists()
    code = cli.run_main([str(small_input), "-o", str(tmp_path / "out"), "--model", str(tiny_build), "--quiet", *argv])
    from_cli = capsys.readouterr().err
    assert code == 2 and from_cli.startswith("svsr: error: ") and from_cli.count("\n") == 1
    as_cli = from_python
    for python_spelling, cli_spelling in zip(spellings[::2], spellings[1::2]):  # (python, cli) pairs
        assert python_spelling in from_python
        as_cli = as_cli.replace(python_spelling, cli_spelling)
    assert from_cli.removeprefix("svsr: error: ").rstrip("\n") == as_cli
