"""Hostile inputs: a bounded, seeded fuzzer over small valid videos and frame folders.

Each case flips, zeroes, duplicates or truncates bytes in the headers and first packets of a small
valid MP4 (H.264 + AAC), MOV (H.264, rotated), WebM (VP9 + Opus), MKV (FFV1), AVI (MPEG-4) file, or
of one frame in a folder of three PNG or JPEG frames. Every case must either decode or be refused
with one sentence:

1. the cheap door, in this process: ``probe`` and a full ``FrameReader`` decode, in a thread with a
   time limit; anything but success or an ``InputError`` (one line, ending with ".") fails;
2. for a budgeted subset, the real ``svsr-run`` in a subprocess with a timeout: exit 0 with a 4x
   output, or exit non-zero with exactly one ``svsr: error: ...`` line on stderr and nothing new in
   the output folder (no output, no hidden partial, no ``.svsr-work`` folder).

``benchmarks/fuzz_containers.py`` runs the same fuzzer (these functions) for longer. Cases are
reproducible one by one: case ``i`` of seed ``s`` depends only on ``(s, i)``.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import threading
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from svsr.contract.errors import InputError
from svsr.runtime.video import FrameReader, probe
from tests.conftest import svsr_run
from tests.support.media import encode_sine

VIDEO_FORMATS = ("mp4", "mov", "webm", "mkv", "avi")
IMAGE_FORMATS = ("png", "jpeg")
FORMATS = VIDEO_FORMATS + IMAGE_FORMATS
NUM_SEED_FRAMES = 6
NUM_FOLDER_FRAMES = 3
WINDOW = 4096
"""Bytes at the start (and, for files with their index at the end, like MP4/MOV, at the end) that
mutations hit: the headers and first packets."""

DOOR_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0

DECODED, REFUSED, FAILED = "decoded", "refused", "FAILED"


# --- seeds -------------------------------------------------------------------------------------
def _frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """A moving gradient with some texture, so every codec spends a few bytes on each frame."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.stack([(5 * x + 9 * i) % 256, (6 * y + 3 * i) % 256, (x * y + 20 * i) % 256], -1).astype(np.uint8)
        for i in range(n)
    ]


def _make_video(
    path: Path,
    codec: str,
    pix_fmt: str,
    size: tuple[int, int],
    *,
    audio: str | None = None,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    width, height = size
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream(audio, rate=48000)
            audio_stream.layout = "mono"
        for i, array in enumerate(_frames(NUM_SEED_FRAMES, width, height)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            encode_sine(container, audio_stream, NUM_SEED_FRAMES / 24)
    return path


def _make_folder(folder: Path, suffix: str) -> Path:
    """Three frames; the middle one carries an EXIF orientation (1 = upright) for the parser to chew on."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(_frames(NUM_FOLDER_FRAMES, 48, 40)):
        exif = Image.Exif()
        exif[0x0112] = 1
        Image.fromarray(array).save(folder / f"frame_{i:04d}{suffix}", exif=exif.tobytes() if i == 1 else b"")
    return folder


def make_seeds(folder: Path) -> dict[str, Path]:
    """Small valid inputs, one per format (about 2-8 KB each): the fuzzer mutates copies of them."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        # moov first (faststart), so its boxes are inside the first window
        "mp4": _make_video(folder / "seed.mp4", "libx264", "yuv420p", (48, 40), audio="aac",
                           options={"movflags": "+faststart"}),
        # moov last, and a display matrix: mutations at the end hit the index and the rotation
        "mov": _make_video(folder / "seed.mov", "libx264", "yuv420p", (64, 48), rotation=90),
        "webm": _make_video(folder / "seed.webm", "libvpx-vp9", "yuv420p", (48, 40), audio="libopus"),
        "mkv": _make_video(folder / "seed.mkv", "ffv1", "bgr0", (48, 40)),
        "avi": _make_video(folder / "seed.avi", "mpeg4", "yuv420p", (48, 40)),
        "png": _make_folder(folder / "png", ".png"),
        "jpeg": _make_folder(folder / "jpeg", ".jpg"),
    }


# --- mutations ---------------------------------------------------------------------------------
_BOUNDARY = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
MUTATIONS = ("flip-bytes", "flip-bits", "boundary", "truncate", "zero", "duplicate", "stack")


def _position(rng: random.Random, size: int) -> int:
    """A byte in the first WINDOW bytes or, one time in four, in the last WINDOW bytes."""
    if size <= WINDOW or rng.random() < 0.75:
        return rng.randrange(min(size, WINDOW))
    return rng.randrange(size - WINDOW, size)


def mutate(data: bytes, rng: random.Random, kind: str | None = None) -> tuple[bytes, str]:
    """One mutation of ``data`` (``kind`` or a random one); returns the new bytes and the kind."""
    kind = kind or rng.choice(MUTATIONS)
    out = bytearray(data)
    if not out:
        return b"\0", kind
    size = len(out)
    if kind == "flip-bytes":
        for _ in range(rng.randint(1, 8)):
            out[_position(rng, size)] = rng.randrange(256)
    elif kind == "flip-bits":
        for _ in range(rng.randint(1, 8)):
            out[_position(rng, size)] ^= 1 << rng.randrange(8)
    elif kind == "boundary":  # sizes, counts, rates and dimensions set to 0, 1 or their limits
        width = rng.choice((1, 2, 4))
        value = rng.choice(_BOUNDARY) & ((1 << (8 * width)) - 1)
        at = _position(rng, size)
        out[at : at + width] = value.to_bytes(width, rng.choice(("big", "little")))[: size - at]
    elif kind == "truncate":  # anywhere, but mostly inside the headers and first packets
        limit = size if rng.random() < 0.3 else min(size, WINDOW)
        out = out[: rng.randrange(limit)]
    elif kind == "zero":
        at = _position(rng, size)
        length = min(rng.randint(1, 256), size - at)
        out[at : at + length] = bytes(length)
    elif kind == "duplicate":
        at, length = _position(rng, size), rng.randint(1, 512)
        out[_position(rng, size) : _position(rng, size)] = out[at : at + length]
    elif kind == "stack":
        for _ in range(rng.randint(2, 4)):
            out = bytearray(mutate(bytes(out), rng, rng.choice(MUTATIONS[:-1]))[0])
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return bytes(out), kind


@dataclass
class Case:
    """One mutated input: a file, or a folder of frames with one mutated frame."""

    seed: int
    index: int
    fmt: str
    mutation: str
    path: Path
    victim: str = ""
    """For folders: the name of the mutated frame."""

    @property
    def name(self) -> str:
        where = f" ({self.victim})" if self.victim else ""
        return f"seed {self.seed} case {self.index}: {self.fmt} {self.mutation}{where}"


def make_case(seeds: dict[str, Path], work: Path, seed: int, index: int, fmt: str | None = None) -> Case:
    """Case ``index`` of ``seed``: formats take turns, everything else comes from ``Random((seed, index))``."""
    rng = random.Random(f"svsr-fuzz:{seed}:{index}")
    fmt = fmt or FORMATS[index % len(FORMATS)]
    source = seeds[fmt]
    if source.is_dir():
        path = work / f"case{index:06d}_{fmt}"
        shutil.copytree(source, path)
        victim = sorted(path.iterdir())[rng.randrange(NUM_FOLDER_FRAMES)]
        data, kind = mutate(victim.read_bytes(), rng)
        victim.write_bytes(data)
        return Case(seed, index, fmt, kind, path, victim.name)
    data, kind = mutate(source.read_bytes(), rng)
    path = work / f"case{index:06d}{source.suffix}"
    path.write_bytes(data)
    return Case(seed, index, fmt, kind, path)


def remove_case(case: Case) -> None:
    if case.path.is_dir():
        shutil.rmtree(case.path, ignore_errors=True)
    else:
        case.path.unlink(missing_ok=True)


# --- outcomes ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str
    """DECODED (or upscaled), REFUSED (one sentence) or FAILED."""
    detail: str = ""
    stage: str = ""
    """Where it ended: probe / decode (cheap door), cli; or hang, crash, message, leftover."""
    frames: int = 0
    size: tuple[int, int] | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def sentence_problem(text: str) -> str | None:
    """Why ``text`` is not one user-facing sentence (None when it is)."""
    if not text.strip():
        return "it is empty"
    if "\n" in text.strip():
        return "it spans several lines"
    if "Traceback" in text:
        return "it contains a traceback"
    if not text.rstrip().endswith("."):
        return "it does not end with '.'"
    return None


def _door(path: Path, result: list[Outcome]) -> None:
    stage = "probe"
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for hidden in (ResourceWarning, DeprecationWarning, PendingDeprecationWarning, ImportWarning):
                warnings.simplefilter("ignore", hidden)  # Python hides these from users by default too
            info = probe(path)
            stage = "decode"
            count = 0
            with FrameReader(path) as reader:
                for frame in reader:
                    count += 1
                    if frame.shape != (info.height, info.width, 3) or frame.dtype != np.uint8:
                        raise AssertionError(
                            f"frame {count} is {frame.dtype} {frame.shape} but probe said {info.width}x{info.height}"
                        )
        texts = [str(w.message) for w in caught]
        bad = [t for t in texts if sentence_problem(t)]
        if bad:
            problem = sentence_problem(bad[0])
            result.append(Outcome(FAILED, f"warning is not one sentence ({problem}): {bad[0]!r}", "message"))
            return
        if count == 0:
            result.append(Outcome(FAILED, "decoded no frames without an InputError", stage))
            return
        result.append(Outcome(DECODED, stage=stage, frames=count, size=(info.width, info.height), warnings=texts))
    except InputError as exc:
        problem = sentence_problem(str(exc))
        if problem:
            result.append(Outcome(FAILED, f"InputError is not one sentence ({problem}): {str(exc)!r}", "message"))
        elif caught:  # svsr-run would print them before its one sentence
            texts = [str(w.message) for w in caught]
            result.append(Outcome(FAILED, f"refused ({exc}) after warnings: {texts}", "message"))
        else:
            result.append(Outcome(REFUSED, str(exc), stage))
    except BaseException as exc:  # noqa: BLE001 - anything else would be a traceback for the user
        result.append(Outcome(FAILED, "".join(traceback.format_exception(exc)).strip(), stage))


def check_in_process(path: Path, timeout: float = DOOR_TIMEOUT_S) -> Outcome:
    """The cheap door: ``probe`` and a full ``FrameReader`` decode, in a thread, within ``timeout``.

    A thread that is still running at the timeout is left behind (daemon): it is reported as a hang.
    """
    result: list[Outcome] = []
    start = time.perf_counter()
    thread = threading.Thread(target=_door, args=(path, result), name=f"fuzz-door({path.name})", daemon=True)
    thread.start()
    thread.join(timeout)
    seconds = time.perf_counter() - start
    if thread.is_alive() or not result:
        return Outcome(FAILED, f"probe + decode did not finish within {timeout:.0f} s", "hang", seconds=seconds)
    result[0].seconds = seconds
    return result[0]


_CLI_ENV = {"SVSR_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # two runs at a time share the cores


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def _debug_traceback(args: list[str], timeout: float) -> str:
    """The traceback behind an internal error: the same command again with ``--debug``."""
    try:
        return "\n" + svsr_run(*args, "--debug", env=_CLI_ENV, timeout=timeout).stderr.strip()
    except subprocess.TimeoutExpired:
        return ""


def check_cli(
    path: Path,
    build: Path,
    out_dir: Path,
    *,
    timeout: float = CLI_TIMEOUT_S,
    expected_size: tuple[int, int] | None = None,
) -> Outcome:
    """Run ``svsr-run PATH -o OUT_DIR/out.mkv`` in a subprocess and judge what it left behind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    before = _snapshot(out_dir)
    output = out_dir / "out.mkv"
    args = [str(path), "-o", str(output), "--model", str(build), "--steps", "1", "--quiet", "--codec", "ffv1"]
    start = time.perf_counter()
    try:
        done = svsr_run(*args, env=_CLI_ENV, timeout=timeout)
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - start
        return Outcome(FAILED, f"svsr-run did not finish within {timeout:.0f} s", "hang", seconds=seconds)
    seconds = time.perf_counter() - start
    new = sorted(_snapshot(out_dir) - before)
    stderr = done.stderr.strip()
    if done.returncode == 0:
        if "Traceback" in stderr:
            return Outcome(FAILED, f"exit 0 but stderr has a traceback:\n{stderr}", "crash", seconds=seconds)
        if new != [output.name]:
            return Outcome(FAILED, f"exit 0 but the output folder gained {new}", "leftover", seconds=seconds)
        try:
            info = probe(output)
        except InputError as exc:
            return Outcome(FAILED, f"exit 0 but the output is unreadable: {exc}", "cli", seconds=seconds)
        size = (info.width, info.height)
        if expected_size is not None and size != (4 * expected_size[0], 4 * expected_size[1]):
            return Outcome(FAILED, f"exit 0 but the output is {size[0]}x{size[1]}, not 4x {expected_size}", "cli",
                           seconds=seconds)
        return Outcome(DECODED, "upscaled", "cli", frames=info.num_frames or 0, size=size, seconds=seconds)
    lines = stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith("svsr: error: ") or "Traceback" in stderr:
        return Outcome(FAILED, f"exit {done.returncode} with stderr:\n{stderr}", "crash", seconds=seconds)
    if "internal error" in lines[0]:  # svsr-run's last line of defence caught something unexpected
        return Outcome(FAILED, f"exit {done.returncode}: {lines[0]}{_debug_traceback(args, timeout)}", "crash",
                       seconds=seconds)
    problem = sentence_problem(lines[0])
    if problem:
        return Outcome(FAILED, f"error line is not one sentence ({problem}): {lines[0]!r}", "message",
                       seconds=seconds)
    if new:
        return Outcome(FAILED, f"refused ({lines[0]}) but left {new} in the output folder", "leftover", seconds=seconds)
    return Outcome(REFUSED, lines[0], "cli", seconds=seconds)


# --- running many cases ------------------------------------------------------------------------
@dataclass
class Result:
    case: Case
    door: Outcome
    cli: Outcome | None = None

    @property
    def failed(self) -> bool:
        return self.door.kind == FAILED or (self.cli is not None and self.cli.kind == FAILED)

    def report(self) -> str:
        parts = [f"{self.case.name}: door {self.door.kind} ({self.door.stage}) {self.door.detail}"]
        if self.cli is not None:
            parts.append(f"  svsr-run {self.cli.kind} ({self.cli.stage}) {self.cli.detail}")
        return "\n".join(parts)


def run_door_cases(
    seeds: dict[str, Path],
    work: Path,
    seed: int,
    indices: Iterable[int],
    *,
    keep: Callable[[Result], bool] = lambda r: r.failed,
    deadline: float | None = None,
    timeout: float = DOOR_TIMEOUT_S,
) -> list[Result]:
    """The cheap door for each case; a case's input is deleted unless ``keep(result)``."""
    results = []
    for index in indices:
        if deadline is not None and time.monotonic() > deadline:
            break
        case = make_case(seeds, work, seed, index)
        result = Result(case, check_in_process(case.path, timeout))
        results.append(result)
        if not keep(result):
            remove_case(case)
    return results


def run_cli_cases(
    results: Sequence[Result],
    build: Path,
    work: Path,
    *,
    workers: int = 2,
    timeout: float = CLI_TIMEOUT_S,
    deadline: float | None = None,
) -> None:
    """svsr-run for each result (its input must still exist), ``workers`` at a time; fills ``result.cli``."""

    def one(result: Result) -> None:
        if deadline is not None and time.monotonic() > deadline:
            return
        out_dir = work / f"out{result.case.index:06d}"
        size = result.door.size if result.door.kind == DECODED else None
        result.cli = check_cli(result.case.path, build, out_dir, timeout=timeout, expected_size=size)
        if result.cli.kind != FAILED:
            shutil.rmtree(out_dir, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, results))


def pick_for_cli(results: Sequence[Result], decoded: int, refused_late: int, refused_early: int) -> list[Result]:
    """A spread of cases for svsr-run: those the door decoded (one format after another), those refused
    only by the full decode (after probe accepted them), and some refused by probe itself."""

    def spread(pool: list[Result], n: int) -> list[Result]:
        by_fmt: dict[str, list[Result]] = {}
        for r in pool:
            by_fmt.setdefault(r.case.fmt, []).append(r)
        picked: list[Result] = []
        while len(picked) < n and any(by_fmt.values()):
            for fmt in list(by_fmt):
                if by_fmt[fmt] and len(picked) < n:
                    picked.append(by_fmt[fmt].pop(0))
        return picked

    ok = [r for r in results if r.door.kind == DECODED]
    late = [r for r in results if r.door.kind == REFUSED and r.door.stage == "decode"]
    early = [r for r in results if r.door.kind == REFUSED and r.door.stage == "probe"]
    return spread(ok, decoded) + spread(late, refused_late) + spread(early, refused_early)


# --- the test ----------------------------------------------------------------------------------
FUZZ_SEED = 20261125
DOOR_CASES = 350
CLI_DECODED, CLI_REFUSED_LATE, CLI_REFUSED_EARLY = 5, 6, 8


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


def test_seeds_are_valid(seeds: dict[str, Path]) -> None:
    for fmt, path in seeds.items():
        outcome = check_in_process(path)
        assert outcome.kind == DECODED and not outcome.warnings, f"{fmt}: {outcome}"
        assert outcome.frames == (NUM_FOLDER_FRAMES if fmt in IMAGE_FORMATS else NUM_SEED_FRAMES), fmt


def _contents(path: Path) -> list[bytes]:
    return [f.read_bytes() for f in sorted(path.iterdir())] if path.is_dir() else [path.read_bytes()]


def test_mutations_are_deterministic(seeds: dict[str, Path], tmp_path: Path) -> None:
    made = []
    for name in ("first", "again"):
        (tmp_path / name).mkdir()
        cases = [make_case(seeds, tmp_path / name, 7, index) for index in range(2 * len(FORMATS))]
        made.append([(c.fmt, c.mutation, c.victim, _contents(c.path)) for c in cases])
    assert made[0] == made[1]
    assert {fmt for fmt, *_ in made[0]} == set(FORMATS)
    assert len({kind for _, kind, *_ in made[0]}) > 3


def test_fuzzed_inputs_decode_or_are_refused_in_one_sentence(
    seeds: dict[str, Path], tiny_build: Path, tmp_path: Path
) -> None:
    start = time.monotonic()
    results = run_door_cases(seeds, tmp_path, FUZZ_SEED, range(DOOR_CASES), keep=lambda r: True)
    door_seconds = time.monotonic() - start
    failures = [r for r in results if r.failed]
    assert not failures, f"{len(failures)} of {len(results)} cases failed the cheap door:\n" + "\n\n".join(
        r.report() for r in failures[:5]
    )
    # Every format must reach both outcomes, or the mutations are too weak (or too strong) to test anything.
    for fmt in FORMATS:
        kinds = {r.door.kind for r in results if r.case.fmt == fmt}
        assert kinds == {DECODED, REFUSED}, f"{fmt}: only {kinds}"

    chosen = pick_for_cli(results, CLI_DECODED, CLI_REFUSED_LATE, CLI_REFUSED_EARLY)
    start = time.monotonic()
    run_cli_cases(chosen, tiny_build, tmp_path / "cli")
    cli_seconds = time.monotonic() - start
    failures = [r for r in chosen if r.failed]
    assert not failures, f"{len(failures)} of {len(chosen)} svsr-run cases failed:\n" + "\n\n".join(
        r.report() for r in failures[:5]
    )
    print(f"\nfuzz: {len(results)} cases through probe + FrameReader in {door_seconds:.1f} s, "
          f"{len(chosen)} through svsr-run in {cli_seconds:.1f} s")


# --- regressions: what the fuzzer found, each as a hand-made input ------------------------------
def _folder(path: Path, suffix: str = ".png") -> Path:
    path.mkdir(parents=True)
    for i, array in enumerate(_frames(NUM_FOLDER_FRAMES, 48, 40)):
        Image.fromarray(array).save(path / f"f{i}{suffix}")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _exif_orientation_tag(type_: int, count: int, value: bytes) -> bytes:
    """A little-endian TIFF block holding one orientation tag (0x0112) as given."""
    return b"II*\0" + struct.pack("<IHHHI", 8, 1, 0x0112, type_, count) + value + struct.pack("<I", 0)


def _patch_jpeg_size(path: Path, width: int, height: int) -> None:
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


def _video_with_metadata(path: Path, where: str) -> Path:
    """FFV1 in Matroska with a title whose bytes are then made invalid UTF-8."""
    marker = "svsr-fuzz-title"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 48, 40, "bgr0"
        (container if where == "container" else stream).metadata["title"] = marker
        for i, array in enumerate(_frames(NUM_FOLDER_FRAMES, 48, 40)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    assert data.count(marker.encode()) == 1
    path.write_bytes(data.replace(marker.encode(), b"\xff\xfe" * 7 + b"\xff"))
    return path


def _spliced_h264(path: Path) -> Path:
    """Two raw H.264 streams of different sizes, one after the other (a second sequence header)."""
    parts = []
    for width, height in ((48, 40), (64, 48)):
        raw = path.with_name(f"{path.stem}_{width}x{height}.h264")
        with av.open(str(raw), "w", format="h264") as container:
            stream = container.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i, array in enumerate(_frames(3, width, height)):
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        parts.append(raw.read_bytes())
        raw.unlink()
    path.write_bytes(b"".join(parts))
    return path


def _png_short_ihdr(tmp: Path) -> Path:
    folder = _folder(tmp / "frames")
    header = _png_chunk(b"IHDR", b"\0\0\0\x30")  # 4 of its 13 bytes
    (folder / "f1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IEND", b""))
    return folder


def _png_broken_chunk(tmp: Path) -> Path:
    """The image data split in two IDAT chunks, the second with a zeroed header: the header reads fine."""
    folder = _folder(tmp / "frames")
    data = (folder / "f1.png").read_bytes()
    at = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    pixels, rest = data[at + 4 : at + 4 + length], data[at + 8 + length :]
    half = length // 2
    broken = _png_chunk(b"IDAT", pixels[:half]) + bytes(8) + pixels[half:] + bytes(4)
    (folder / "f1.png").write_bytes(data[: at - 4] + broken + rest)
    return folder


def _bad_exif(tmp: Path, suffix: str, tiff: bytes) -> Path:
    folder = _folder(tmp / "frames", suffix)
    prefix = b"Exif\0\0" if suffix == ".jpg" else b""
    for path in folder.iterdir():
        with Image.open(path) as image:
            image.load()
        image.save(path, exif=prefix + tiff)
    return folder


def _jpeg_size(tmp: Path, victim: str, width: int, height: int) -> Path:
    folder = _folder(tmp / "frames", ".jpg")
    _patch_jpeg_size(folder / victim, width, height)
    return folder


# name -> (make the input in a folder, what the door must say: "decoded" or a phrase of the refusal)
REGRESSIONS: dict[str, tuple[Callable[[Path], Path], str]] = {
    # av.open raised UnicodeDecodeError while reading container or stream metadata
    "non-utf8-container-metadata": (lambda t: _video_with_metadata(t / "v.mkv", "container"), DECODED),
    "non-utf8-stream-metadata": (lambda t: _video_with_metadata(t / "v.mkv", "stream"), DECODED),
    # Pillow raised ValueError ("Truncated IHDR chunk") in probe, SyntaxError ("broken PNG file") in FrameReader
    "png-truncated-ihdr": (_png_short_ihdr, "f1.png is not a readable PNG/JPEG image"),
    "png-broken-chunk-after-header": (_png_broken_chunk, "f1.png is not a readable PNG/JPEG image"),
    # int() of an EXIF orientation stored as text raised ValueError; a tag pointing past the end warned
    "png-exif-orientation-text": (lambda t: _bad_exif(t, ".png", _exif_orientation_tag(2, 2, b"x\0\0\0")), DECODED),
    "jpeg-exif-orientation-text": (lambda t: _bad_exif(t, ".jpg", _exif_orientation_tag(2, 2, b"x\0\0\0")), DECODED),
    "jpeg-exif-orientation-past-end": (
        lambda t: _bad_exif(t, ".jpg", _exif_orientation_tag(3, 16, struct.pack("<I", 65536))), DECODED),
    # DecompressionBombError (not an OSError) escaped; a size past the warning limit printed Pillow's warning
    "jpeg-bomb-first-frame": (lambda t: _jpeg_size(t, "f0.jpg", 65000, 65000), "decompression bomb"),
    "jpeg-bomb-second-frame": (lambda t: _jpeg_size(t, "f1.jpg", 65000, 65000), "decompression bomb"),
    "jpeg-past-warning-limit": (lambda t: _jpeg_size(t, "f1.jpg", 10000, 10000), "is 10000x10000 but the first frame"),
    # frames of two sizes reached the scene detector (internal error) or the job (work folder left behind)
    "h264-size-change-mid-stream": (lambda t: _spliced_h264(t / "spliced.mp4"), "changes frame size at frame 4"),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression_inputs_decode_or_are_refused_in_one_sentence(name: str, tmp_path: Path) -> None:
    make, expected = REGRESSIONS[name]
    outcome = check_in_process(make(tmp_path))  # warnings fail it too: more lines on the user's stderr
    if expected == DECODED:
        assert outcome.kind == DECODED and not outcome.warnings, outcome
        assert outcome.size == (48, 40) and outcome.frames == NUM_FOLDER_FRAMES
    else:
        assert outcome.kind == REFUSED and expected in outcome.detail, outcome


def test_refused_regressions_leave_nothing_behind_svsr_run(tiny_build: Path, tmp_path: Path) -> None:
    refused = [name for name, (_, expected) in REGRESSIONS.items() if expected != DECODED]
    results = []
    for index, name in enumerate(refused):
        (tmp_path / name).mkdir()
        path = REGRESSIONS[name][0](tmp_path / name)
        results.append(Result(Case(0, index, name, "regression", path), check_in_process(path)))
    run_cli_cases(results, tiny_build, tmp_path / "cli")
    for result in results:
        assert result.cli is not None and result.cli.kind == REFUSED, result.report()


def _mp4_audio_damage(seed: Path, path: Path, kind: str) -> Path:
    data = seed.read_bytes()
    if kind == "unknown-audio-codec":  # the audio track's 'minf' box renamed: no sample description left
        at = data.index(b"minf", data.index(b"minf") + 1)
        data = data[:at] + b"minh" + data[at + 4 :]
    else:  # 'esds' renamed: AAC without its AudioSpecificConfig
        data = data.replace(b"esds", b"esdS")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["unknown-audio-codec", "aac-without-config"])
def test_damaged_audio_is_dropped_or_refused_by_svsr_run(
    kind: str, seeds: dict[str, Path], tiny_build: Path, tmp_path: Path
) -> None:
    path = _mp4_audio_damage(seeds["mp4"], tmp_path / f"{kind}.mp4", kind)
    door = check_in_process(path)
    assert door.kind == DECODED, door  # the video itself is intact
    result = Result(Case(0, 0, "mp4", kind, path), door)
    run_cli_cases([result], tiny_build, tmp_path / "cli")
    assert result.cli is not None and result.cli.kind != FAILED, result.report()
